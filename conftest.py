"""Configuration shared by the tests and the docstring examples (collected by ``--doctest-modules``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _doctests_leave_the_registry_as_they_found_it(request: pytest.FixtureRequest) -> Iterator[None]:
    """A docstring example that registers a pooling (``@register("my_pool")``) must not add it to
    the registry that the tests see."""
    if not isinstance(request.node, pytest.DoctestItem):
        yield
        return
    from poolbench.pools import registry

    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
