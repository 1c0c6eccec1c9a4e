"""poolbench's own pooling, `split`: averages on some channels, maxima on the others."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from poolbench import pools
from poolbench.contract import check_pool
from poolbench.pools.split import split_avg_max

maps = st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**16))


def random_map(shape):
    batch, channels, height, width, seed = shape
    return torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=60, deadline=None)
@given(maps, st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))
def test_split_averages_the_first_channels_and_maxes_the_rest(shape, fraction):
    x = random_map(shape)
    k = round(fraction * x.shape[1])
    y = pools.create(f"split(max_fraction={fraction})")(x)
    assert y.shape == x.shape[:2]
    torch.testing.assert_close(y[:, :x.shape[1] - k], x[:, :x.shape[1] - k].mean(dim=(2, 3)))
    torch.testing.assert_close(y[:, x.shape[1] - k:], x[:, x.shape[1] - k:].amax(dim=(2, 3)))


def test_split_endpoints_are_gap_and_gmp():
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(split_avg_max(x, 0.0), pools.create("gap", channels=8)(x))
    torch.testing.assert_close(split_avg_max(x, 1.0), pools.create("gmp", channels=8)(x))


def test_split_is_the_identity_on_a_1x1_map_and_has_no_parameters():
    x = torch.randn(3, 64, 1, 1)
    pool = pools.create("split", channels=64)
    assert torch.equal(pool(x), x.flatten(1)) and not list(pool.parameters())


def test_split_passes_the_contract_with_no_failure_and_says_it_is_the_identity_on_1x1():
    report = check_pool("split")
    assert report.ok and report.failures() == []
    assert report.result("identity_1x1").message.startswith("identity")


def test_split_refuses_a_fraction_outside_0_1():
    with pytest.raises(ValueError, match="max_fraction must be in"):
        pools.create("split(max_fraction=1.5)")
