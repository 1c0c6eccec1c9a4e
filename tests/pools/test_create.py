"""The one public way to get a pooling, ``pools.create``, and the functional forms in
``pools.functional``, which must compute what the registered modules compute."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import poolbench.pools as pools
from poolbench.pools import functional as PF
from poolbench.pools import registry
from poolbench.pools.classic import GeM
from poolbench.pools.smooth import TopKPool

CUSTOM_POOL = """
import torch
from torch import nn

class CustomPool(nn.Module):
    def __init__(self, channels, scale=1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x):
        return self.weight * x.mean(dim=(2, 3))

class NoArgs(nn.Module):
    def forward(self, x):
        return x.amax(dim=(2, 3))
"""


# --- create --------------------------------------------------------------------------------------

def test_create_takes_every_spec_a_user_can_write(tmp_path):
    path = tmp_path / "my_pool.py"
    path.write_text(CUSTOM_POOL)
    assert isinstance(pools.create("gem", channels=8), GeM)
    assert isinstance(pools.create("GeM"), GeM)  # names ignore case; channels are optional
    assert pools.create("topk(k=0.5)", channels=8).k == 0.5
    custom = pools.create(str(path), channels=8)
    assert type(custom).__name__ == "CustomPool" and custom.weight.shape == (8,)
    no_args = pools.create(f"{path}:NoArgs", channels=8)  # channels left out for a constructor without them
    assert type(no_args).__name__ == "NoArgs"
    assert isinstance(pools.create(TopKPool, channels=8, k=3), TopKPool)  # a class is accepted too


def test_keyword_arguments_add_to_the_specs_own(tmp_path):
    path = tmp_path / "scaled.py"
    path.write_text(CUSTOM_POOL)
    x = torch.rand(2, 8, 4, 4) + 0.1
    merged = pools.create("gem(p=4)", 8, learnable=False)
    written = pools.create("gem(p=4, learnable=False)", 8)
    assert list(merged.parameters()) == [] and merged.p.item() == 4.0
    torch.testing.assert_close(merged(x), written(x))
    assert pools.create("topk", 8, k=0.5).k == 0.5
    assert pools.create(str(path), 8, scale=2.0).weight[0].item() == 2.0


@pytest.mark.parametrize("spec, kwargs, problem", [
    ("gem(p=4)", {"p": 5}, "p is given both in the spec and as a keyword argument; give it once"),
    ("gem(p=4)", {"p": 4}, "p is given both in the spec"),  # even with the same value, as in Python
    ("gem", {"q": 2}, "gem has no keyword q; its keywords are p, eps, p_min, learnable"),
    ("topk", {"kk": 2}, "did you mean k?"),
    ("gap", {"k": 1}, "gap has no keyword k; it takes no keywords"),
    ("softpol", {}, "unknown pooling 'softpol': did you mean softpool"),
])
def test_bad_keywords_are_pool_spec_errors_naming_the_fix(spec, kwargs, problem):
    with pytest.raises(pools.PoolSpecError) as caught:
        pools.create(spec, 8, **kwargs)
    assert problem in str(caught.value)


def test_a_spec_that_is_not_a_string_or_class_is_a_type_error():
    with pytest.raises(TypeError, match="must be a string"):
        pools.create(3)  # type: ignore[arg-type]


def test_the_public_names_are_those_of_all_and_no_old_alias_is_left():
    assert sorted(pools.__all__) == ["HyperParameterError", "OWN_POOLING", "PoolSpecError", "attach", "create",
                                     "functional", "names", "register"]
    for old in ("build", "get", "resolve", "instantiate", "load_file", "accepts_channels", "hyper_parameters",
                "is_file_spec", "normalise_spec"):  # aliases of a version never released: pools.create instead
        assert not hasattr(pools, old), old
    with pytest.raises(AttributeError, match="has no attribute 'nonexistent'"):
        pools.nonexistent  # noqa: B018


# --- functional forms ----------------------------------------------------------------------------

def signed_gem_std(m, x):
    """signed_gem's published formula: (1 - a) signed GeM + a sign(mean) std, a = 0.1 sigmoid(w); no std on 1x1."""
    a = 0.1 * torch.sigmoid(m.w)
    y = (1 - a) * PF.signed_gem(x, m.p.clamp(m.p_min, m.p_max), m.eps)
    if x.shape[2] * x.shape[3] > 1:
        y = y + a * (x.var(dim=(2, 3), correction=0) + m.eps).sqrt() * torch.sign(PF.global_avg(x))
    return y


# name -> the module's output computed from the functional forms and the module's own parameters.
FUNCTIONAL_FORMS = {
    "gap": lambda m, x: PF.global_avg(x),
    "gmp": lambda m, x: PF.global_max(x),
    "avgmax": lambda m, x: PF.avg_max(x),
    "gem": lambda m, x: PF.gem(x, m.p.clamp(min=m.p_min), m.eps),
    "lse": lambda m, x: PF.lse(x, m.r.clamp(min=m.r_min)),
    "softpool": lambda m, x: PF.softpool(x),
    "topk": lambda m, x: PF.topk_mean(x, m.k),
    "rms": lambda m, x: PF.lp_pool(x, m.p),
    "powernorm": lambda m, x: PF.power_normalized_avg(x, m.a, m.eps),
    "mixed": lambda m, x: PF.mix_max_avg(x, torch.sigmoid(m.alpha)),
    "gated": lambda m, x: PF.mix_max_avg(x, torch.sigmoid(PF.global_avg(x) @ m.w)[:, None]),
    "stochastic": lambda m, x: PF.stochastic_pool(x, m.training),
    "meanstd": lambda m, x: PF.global_avg(x) + m.lam * PF.spatial_std(x, m.eps),
    "std_residual": lambda m, x: (PF.global_avg(x) + torch.sigmoid(m.alpha) * PF.spatial_std(x, m.eps)
                                  + (1 - torch.sigmoid(m.alpha)) * (PF.global_max(x) - PF.global_avg(x))),
    "var_softmax": lambda m, x: PF.var_softmax(x, m.alpha, m.b, m.eps),
    "signed_gem": lambda m, x: signed_gem_std(m, x),
    "gwap": lambda m, x: PF.sigmoid_weighted_mean(x, F.conv2d(x, m.score.weight, m.score.bias)),
    "split": lambda m, x: PF.split_avg_max(x, m.max_fraction),
    "spectrum": lambda m, x: PF.gem_spectrum(x, m.p, m.eps) * m.p.detach() ** -m.readout,  # value only
    "gem_channel": lambda m, x: PF.gem(x, m.p.clamp(min=m.p_min)[None, :, None, None], m.eps),
    "median": lambda m, x: PF.quantile_pool(x, 0.5),
    "quantile": lambda m, x: PF.quantile_pool(x, m.q),
    "rank_weighted": lambda m, x: PF.rank_weighted_mean(x, m.logits),
    "csra": lambda m, x: PF.csra(x, m.temperature, m.lam),
    "adapool": lambda m, x: PF.adapool(x, torch.sigmoid(m.b), m.eps),
    "rank1_attention": lambda m, x: PF.attentional_pool(x, m.b),
    "genmax": lambda m, x: PF.generalized_max(x, m.lam),
    "fca": lambda m, x: PF.dct_pool(x, *m.frequencies(*x.shape[1:])),
}


def test_every_pooling_declaring_a_functional_form_has_its_check_here():
    """A pooling registered with ``Traits(functional=...)`` is checked against its functional form
    below, so its entry in FUNCTIONAL_FORMS is required; one built from layers declares none."""
    declared = {name for name in pools.names() if registry.traits(name).functional}
    assert declared == set(FUNCTIONAL_FORMS)


@pytest.mark.parametrize("name", sorted(FUNCTIONAL_FORMS))
def test_the_check_is_written_with_the_functional_forms_the_pooling_declares(name):
    """The declared main form (first) is used by the check, and every form used is declared."""
    check = FUNCTIONAL_FORMS[name]
    names = set(check.__code__.co_names)
    for helper in [globals()[n] for n in names if inspect.isfunction(globals().get(n))]:  # signed_gem_std
        names |= set(helper.__code__.co_names)
    used = names & set(PF.__all__)
    declared = [function.__name__ for function in registry.traits(name).functional]
    assert declared[0] in used and used <= set(declared), (used, declared)


@pytest.mark.parametrize("name", sorted(FUNCTIONAL_FORMS))
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_the_functional_form_computes_what_the_module_computes(name, train):
    torch.manual_seed(0)
    module = pools.create(name, channels=6).train(train)
    with torch.no_grad():  # move every parameter off its initial value (gwap starts as GAP)
        for parameter in module.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x = torch.randn(3, 6, 5, 4)
    torch.manual_seed(1)
    expected = FUNCTIONAL_FORMS[name](module, x)
    torch.manual_seed(1)  # the same draw for stochastic pooling in training
    torch.testing.assert_close(module(x), expected)


def test_functional_exports_the_forms_the_poolings_declare_and_nothing_else():
    assert PF.__all__ == list(registry.functional_forms())
    from poolbench.pools.functional import gem  # importable by name, as a module's own functions

    assert gem is registry.traits("gem").functional[0] and PF.topk_mean is registry.traits("topk").functional[0]
    assert "``topk``" in PF.__doc__ and ":func:`topk_mean`" in PF.__doc__  # its table, made from the registry


def test_every_family_file_is_imported_without_a_line_of_its_own():
    """A pooling in a new file under poolbench/pools/ is registered: pools/__init__ imports every file."""
    folder = Path(pools.__file__).parent
    families = {path.stem for path in folder.glob("*.py") if re.search(r"^@register\(", path.read_text(), re.M)}
    registered_from = {registry.get(name).__module__ for name in pools.names()}
    assert len(families) >= 9 and {f"poolbench.pools.{family}" for family in families} <= registered_from


def test_every_functional_form_gives_its_formula():
    for name in PF.__all__:
        function = getattr(PF, name)
        assert inspect.isfunction(function), name
        assert "``" in (function.__doc__ or ""), f"{name}: no formula in the docstring"
