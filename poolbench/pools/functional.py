"""The poolings as functions of the feature map, in one place (as ``torch.nn.functional`` is to
``torch.nn``): ``[B, C, H, W] -> [B, C]``, each with its formula in its docstring.

Each is a function a registered module is computed from, with the module's parameters as
arguments (``GeM`` is ``gem(x, p.clamp(min=p_min), eps)``); a test checks that they agree. This
module writes no list of its own: it exports the functions each pooling names in its
registration (``@register("gem", Traits(functional=(gem,)))``, see
:class:`poolbench.pools.registry.Traits`), so a new functional form is exported where its pooling
is registered. Poolings built from layers (``simpool``, ``spatial_attention``, ``cov``,
``channel_adaptive``, ``lip``, ``pma``, ...) declare none: they have no functional form beyond
their building blocks. The table of which pooling is computed from which function ends this
docstring, made from the registry.

>>> import torch
>>> from poolbench.pools import functional as PF
>>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])  # [B=1, C=1, H=2, W=2]
>>> PF.global_avg(x), PF.global_max(x), PF.avg_max(x)
(tensor([[3.]]), tensor([[6.]]), tensor([[4.5000]]))
>>> PF.gem(x, p=1.0)  # p = 1 is the mean
tensor([[3.]])
>>> PF.topk_mean(x, k=2)  # mean of the 2 largest
tensor([[4.5000]])
>>> PF.lp_pool(x, p=2.0)  # root mean square
tensor([[3.5355]])
>>> bool(PF.global_avg(x) <= PF.lse(x, r=5.0) <= PF.global_max(x))
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import registry

_FORMS = registry.functional_forms()  # the family modules are imported (and registered) before this one
globals().update(_FORMS)
__all__ = list(_FORMS)


def _table() -> str:
    """The reST table of each pooling with a functional form and the functions it is computed from."""
    rows = [(f"``{name}``", ", ".join(f":func:`{f.__name__}`" for f in registry.traits(name).functional))
            for name in registry.names() if registry.traits(name).functional]
    width = max(len(pooling) for pooling, _ in rows)
    rule = f"{'=' * width}  {'=' * max(len(functions) for _, functions in rows)}"
    lines = [rule, f"{'pooling':<{width}}  functions (the main one first)", rule]
    lines += [f"{pooling:<{width}}  {functions}" for pooling, functions in rows]
    return "\n".join(["", "", *lines, rule, ""])


__doc__ = (__doc__ or "") + _table()

if TYPE_CHECKING:  # the names above are made at import: to a type checker, each is a functional form
    def __getattr__(name: str) -> registry.FunctionalForm: ...
