"""The pooling zoo: the contract every registered pooling keeps, and each method's defining properties."""

from __future__ import annotations

import dataclasses
import doctest
import inspect
import re
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import poolbench.pools as pools
from poolbench.pools import registry
from poolbench.pools._numerics import spatial_std
from poolbench.pools.classic import gem
from poolbench.pools.mixed import mix_max_avg, stochastic_probabilities
from poolbench.pools.smooth import lse, topk_mean
from poolbench.pools.statistics import signed_gem

NAMES = pools.names()
C = 5  # small channel count for most tests; an odd one, so sizes that ignore C show


def declaring(trait: str) -> list[str]:
    """The registered poolings that declare ``trait`` (``registry.Traits``): each is tested for it below."""
    return [name for name in NAMES if getattr(registry.traits(name), trait)]


def _edge_map(kind: str, shape: tuple[int, ...]) -> torch.Tensor:
    if kind == "post_relu":
        return torch.relu(torch.randn(shape)) * 3
    if kind == "dead_channels":
        x = torch.relu(torch.randn(shape)) * 3
        x[:, ::2] = 0
        return x
    if kind == "all_zero":
        return torch.zeros(shape)
    if kind == "constant":
        return torch.full(shape, 2.5)
    if kind == "large":
        return torch.relu(torch.randn(shape)) * 1e3
    if kind == "signed":
        return torch.randn(shape) * 2
    if kind == "negative":
        return -(torch.rand(shape) + 0.1) * 2
    raise ValueError(kind)


EDGE_KINDS = ["post_relu", "dead_channels", "all_zero", "constant", "large", "signed", "negative"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _make(name: str, channels: int = C, train: bool = False, perturb: bool = False) -> torch.nn.Module:
    """The pooling ``name`` for ``channels``; ``perturb`` moves every parameter off its init, so a
    property is tested for generic parameters rather than for the (often symmetric) init."""
    pool = pools.create(name, channels=channels).train(train)
    if perturb:
        with torch.no_grad():
            for param in pool.parameters():
                param.add_(torch.randn_like(param) * 0.5)
    return pool


def _assert_finite_backward(pool: torch.nn.Module, x: torch.Tensor,
                            autocast: torch.dtype | None = None) -> torch.Tensor:
    """Forward (under CPU autocast to ``autocast`` if given) and backward of a random projection;
    output, input gradient and every parameter gradient must exist and be finite."""
    x = x.detach().requires_grad_()
    with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        y = pool(x)
    # Backward runs outside autocast, as PyTorch's AMP recipe has it.
    assert y.shape == (x.shape[0], x.shape[1]) and y.dtype == x.dtype
    assert torch.isfinite(y).all(), f"non-finite output {y}"
    (y.float() * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
    assert torch.isfinite(x.grad).all(), "non-finite input gradient"
    for pname, param in pool.named_parameters():
        assert param.grad is not None, f"parameter {pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"non-finite gradient for {pname}"
    return y


# -- the contract, for every registered pooling ----------------------------------------------


def test_registry_is_complete_and_documented():
    assert len(NAMES) >= 20, NAMES
    for name in NAMES:
        factory = registry.get(name)
        doc = inspect.getdoc(factory) or ""
        assert "``" in doc and "=" in doc, f"{name}: docstring gives no formula"
        assert re.search(r"(19|20)\d\d|proposal", doc), f"{name}: docstring gives no citation"
        assert "Args:" in doc, f"{name}: docstring gives no arguments"
        channels = inspect.signature(factory).parameters.get("channels")
        assert channels is not None and channels.default is None, f"{name}: needs `channels=None`"


@pytest.mark.parametrize("name", NAMES)
def test_docstring_example_runs(name):
    """Every registered pooling's own docstring has a ``>>>`` example, and it passes. pytest's
    --doctest-modules runs the examples of whatever modules it collects; this ties them to the
    registry, so no pooling can be registered without one."""
    factory = registry.get(name)
    module = sys.modules[factory.__module__]
    found = doctest.DocTestFinder(recurse=False).find(factory, name, module=module, globs=vars(module).copy())
    examples = [test for test in found if test.examples]
    assert examples, f"{name}: docstring gives no example"
    report: list[str] = []
    runner = doctest.DocTestRunner()
    for test in examples:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_every_trait_is_declared_by_some_pooling():
    for field in dataclasses.fields(registry.Traits):
        assert declaring(field.name), f"no pooling declares {field.name}: its test would test nothing"


@pytest.mark.parametrize("name", NAMES)
def test_a_pooling_declares_batch_norm_exactly_when_it_keeps_one(name):
    keeps = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in _make(name).modules())
    assert registry.traits(name).batch_norm == keeps


def test_unknown_name_lists_close_matches():
    with pytest.raises(pools.PoolSpecError, match="softpool"):
        pools.create("softpol", channels=C)
    with pytest.raises(pools.PoolSpecError, match="signed_gem"):
        registry.get("signed-gem")


@pytest.mark.parametrize("name", NAMES)
def test_without_channels_builds_or_asks_for_them(name):
    try:
        pool = registry.get(name)()
    except TypeError as error:
        assert "channels" in str(error) and "requires" in str(error)
    else:
        assert pool(torch.rand(2, C, 3, 3)).shape == (2, C)


def test_spatial_attention_requires_channels():
    with pytest.raises(TypeError, match="requires `channels`"):
        registry.get("spatial_attention")()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_output_shape_for_any_map_size(name, train):
    pool = _make(name, train=train)
    for batch, height, width in [(2, 8, 8), (2, 3, 5), (2, 2, 2), (2, 1, 1), (1, 1, 1), (1, 5, 3)]:
        if train and registry.traits(name).batch_norm and batch * height * width == 1:
            with pytest.raises(ValueError, match="more than 1 value per channel"):  # BatchNorm's own refusal
                pool(torch.rand(batch, C, height, width))
            continue
        y = pool(torch.relu(torch.randn(batch, C, height, width)))
        assert y.shape == (batch, C) and y.dtype == torch.float32, (batch, height, width)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("mode", ["float32_module", "cast_module", "autocast"])
def test_low_precision_inputs(name, dtype, mode):
    pool = _make(name)
    if mode == "cast_module":
        pool = pool.to(dtype)
    for shape in [(2, C, 4, 4), (1, C, 1, 1)]:
        x = (torch.relu(torch.randn(shape)) * 20).clamp(max=50).to(dtype)
        _assert_finite_backward(pool, x, autocast=dtype if mode == "autocast" else None)


@pytest.mark.parametrize("name", NAMES)
def test_autocast_does_not_lower_the_internal_precision(name):
    pool = _make(name)
    x = _edge_map("post_relu", (2, C, 3, 5))
    with torch.no_grad():
        expected = pool(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual = pool(x)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", EDGE_KINDS)
@pytest.mark.parametrize("shape", [(2, C, 3, 5), (1, C, 1, 1)], ids=["3x5", "1x1"])
def test_finite_output_and_gradients_on_edge_maps(name, kind, shape):
    for train in (True, False):
        if train and registry.traits(name).batch_norm and shape[0] * shape[2] * shape[3] == 1:
            continue  # BatchNorm refuses to train on one value (test_output_shape_for_any_map_size)
        _assert_finite_backward(_make(name, train=train), _edge_map(kind, shape))


@pytest.mark.parametrize("name", NAMES)
def test_large_channel_counts(name):
    for shape in [(2, 1280, 1, 1), (2, 64, 8, 8)]:
        _assert_finite_backward(_make(name, channels=shape[1], train=True), _edge_map("post_relu", shape))


@pytest.mark.parametrize("name", NAMES)
def test_no_parameters_created_in_forward(name):
    pool = _make(name, train=True)
    before = {k: id(v) for k, v in pool.state_dict(keep_vars=True).items()}
    pool(torch.rand(2, C, 4, 4))
    pool.eval()(torch.rand(1, C, 1, 1))
    after = {k: id(v) for k, v in pool.state_dict(keep_vars=True).items()}
    assert before == after


@pytest.mark.parametrize("name", NAMES)
def test_parameters_sized_by_channels(name):
    channels = 16
    pool = _make(name, channels=channels)
    for pname, tensor in pool.state_dict().items():
        assert all(size <= 3 * channels for size in tensor.shape), f"{pname}: {tuple(tensor.shape)}"
    pool(torch.rand(2, channels, 3, 3))


@pytest.mark.parametrize("name", NAMES)
def test_eval_batch_independence_and_determinism(name):
    pool = _make(name)
    x = _edge_map("post_relu", (4, C, 3, 5))
    x[2] *= 100  # an outlier sample must not move the others
    with torch.no_grad():
        y = pool(x)
        torch.testing.assert_close(pool(x[:1]), y[:1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pool(x[1:3]), y[1:3], rtol=1e-5, atol=1e-5)
        assert torch.equal(pool(x), y)


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_equals_contiguous(name):
    pool = _make(name)
    x = _edge_map("post_relu", (2, C, 3, 5))
    with torch.no_grad():
        expected = pool(x)
        actual = pool(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    pool = _make(name)
    with torch.no_grad():
        for param in pool.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    copy = _make(name)
    copy.load_state_dict(pool.state_dict(), strict=True)
    x = _edge_map("post_relu", (2, C, 3, 5))
    with torch.no_grad():
        assert torch.equal(copy(x), pool(x))


@pytest.mark.parametrize("name", NAMES)
def test_to_dtype_moves_everything(name):
    pool = _make(name).to(torch.float64)
    for pname, tensor in pool.state_dict().items():
        counter = pname.endswith("num_batches_tracked") and tensor.dtype == torch.int64  # BatchNorm's step count
        assert tensor.dtype == torch.float64 or counter, pname
    y = pool(torch.rand(2, C, 3, 3, dtype=torch.float64))
    assert y.dtype == torch.float64 and torch.isfinite(y).all()


@pytest.mark.parametrize("name", declaring("permutation_invariant"))
def test_invariant_to_permuting_positions(name):
    pool = _make(name, perturb=True)
    for shape in [(2, C, 3, 5), (2, C, 4, 4)]:
        x = _edge_map("post_relu", shape)
        order = torch.randperm(shape[2] * shape[3])
        shuffled = x.flatten(2)[:, :, order].reshape(x.shape)
        with torch.no_grad():
            torch.testing.assert_close(pool(shuffled), pool(x), rtol=1e-5, atol=1e-5)


# -- defining properties (hypothesis) --------------------------------------------------------

PROPERTY = settings(max_examples=25, deadline=None)


@st.composite
def maps(draw, low: float = 0.0, high: float = 10.0, size: int = 4) -> torch.Tensor:
    """Float32 maps ``[1-2, 1-3, 1-size, 1-size]`` with values in ``[low, high]``."""
    shape = draw(st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, size), st.integers(1, size)))
    elements = st.floats(float(np.float32(low)), float(np.float32(high)), allow_nan=False, width=32)
    return torch.from_numpy(draw(arrays(np.float32, shape, elements=elements)))


def _close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-4) -> None:
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


@PROPERTY
@given(maps())
def test_gem_with_p_1_is_gap(x):
    _close(gem(x, 1.0), x.clamp(min=1e-6).mean(dim=(2, 3)))


@PROPERTY
@given(maps(), st.floats(1.0, 6.0))
def test_gem_equals_the_plain_formula(x, p):
    plain = x.double().clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p).float()
    _close(gem(x, p), plain)


@pytest.mark.parametrize("name", declaring("between_min_and_max"))
@PROPERTY
@given(x=maps())
def test_between_min_and_max(name, x):
    torch.manual_seed(0)
    pool = _make(name, channels=x.shape[1], perturb=True)
    with torch.no_grad():
        y = pool(x)
    low, high = x.amin(dim=(2, 3)), x.amax(dim=(2, 3))
    tol = 1e-4 * (1 + high.abs())  # also covers gem's clamp of x at eps = 1e-6 before averaging
    assert (y >= low - tol).all() and (y <= high + tol).all(), (x, y)


@PROPERTY
@given(maps(-10.0, 10.0))
def test_lse_tends_to_max_as_r_grows(x):
    peak = x.amax(dim=(2, 3))
    gaps = []
    for r in [1.0, 10.0, 100.0, 1000.0]:
        gap = peak - lse(x, r)
        # max - lse lies in [0, log(HW) / r]: the max's own term gives the lower bound on the mean.
        assert (gap >= -1e-4).all() and (gap <= np.log(x.shape[2] * x.shape[3]) / r + 1e-4).all()
        gaps.append(gap)
    assert (gaps[-1] <= 1e-2).all()


@PROPERTY
@given(maps(-10.0, 10.0))
def test_topk_extremes_are_max_and_mean(x):
    num_positions = x.shape[2] * x.shape[3]
    _close(topk_mean(x, 1), x.amax(dim=(2, 3)))
    _close(topk_mean(x, num_positions), x.mean(dim=(2, 3)))
    _close(topk_mean(x, 1.0), x.mean(dim=(2, 3)))
    _close(topk_mean(x, 10 * num_positions), x.mean(dim=(2, 3)))  # clamped to H*W


@PROPERTY
@given(maps(-10.0, 10.0))
def test_mixed_endpoints_are_max_and_avg(x):
    _close(mix_max_avg(x, 1.0), x.amax(dim=(2, 3)))
    _close(mix_max_avg(x, 0.0), x.mean(dim=(2, 3)))
    _close(mix_max_avg(x, 0.5), pools.create("avgmax")(x))


@pytest.mark.parametrize("name", declaring("identity_on_1x1"))
@PROPERTY
@given(x=maps(1e-3, 50.0, size=1))
def test_identity_on_1x1_maps(name, x):
    torch.manual_seed(0)
    pool = _make(name, channels=x.shape[1], train=True, perturb=True)
    with torch.no_grad():
        _close(pool(x), x[:, :, 0, 0], tol=1e-5)  # in training (stochastic draws the one value) and in eval
        _close(pool.eval()(x), x[:, :, 0, 0], tol=1e-5)


@PROPERTY
@given(maps(-5.0, 10.0))
def test_stochastic_eval_is_probability_weighted_mean(x):
    flat = x.flatten(2).double()
    weights = flat.clamp(min=0)
    total = weights.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(flat, 1.0 / flat.shape[-1])
    p = torch.where(total > 0, weights / total.clamp(min=1e-30), uniform)
    expected = (p * flat).sum(dim=-1).float()
    _close(pools.create("stochastic").eval()(x), expected)


@PROPERTY
@given(maps(-5.0, 10.0))
def test_stochastic_training_returns_an_input_value(x):
    y = pools.create("stochastic").train()(x)
    flat = x.flatten(2)
    hits = flat == y.unsqueeze(-1)
    assert hits.any(dim=-1).all()
    # Only positions with positive activation can be drawn, unless there are none.
    has_positive = (flat > 0).any(dim=-1)
    assert (y[has_positive] > 0).all()


def test_stochastic_training_draws_in_proportion_to_activation():
    x = torch.tensor([0.0, 1.0, 3.0, -2.0]).reshape(1, 1, 2, 2).expand(20000, 1, 2, 2)
    y = pools.create("stochastic").train()(x).flatten()
    frequencies = torch.stack([(y == v).float().mean() for v in (0.0, 1.0, 3.0, -2.0)])
    torch.testing.assert_close(frequencies, torch.tensor([0.0, 0.25, 0.75, 0.0]), atol=0.02, rtol=0)
    probs = stochastic_probabilities(torch.zeros(1, 1, 4))
    torch.testing.assert_close(probs, torch.full((1, 1, 4), 0.25))


@PROPERTY
@given(maps(-10.0, 10.0))
def test_spatial_std_is_biased_std_and_zero_on_1x1(x):
    expected = x.double().std(dim=(2, 3), correction=0).float()
    torch.testing.assert_close(spatial_std(x, eps=1e-12), expected, rtol=1e-3, atol=1e-4)
    assert torch.equal(spatial_std(x[:, :, :1, :1]), torch.zeros(x.shape[:2]))


@PROPERTY
@given(maps(-10.0, 10.0), st.floats(1.0, 8.0))
def test_signed_gem_is_odd_and_gem_on_non_negative_maps(x, p):
    _close(signed_gem(-x, p), -signed_gem(x, p))
    positive = x.abs()
    _close(signed_gem(positive, p), gem(positive, p) - 1e-6)


def test_gem_family_survives_large_p_on_dead_channels():
    # gem(x) with x <= eps everywhere: eps**p underflows to 0 for p >= 8 in float32, and the root's
    # slope at 0 is infinite; gem's max-normalisation keeps the mean >= 1/(HW).
    x = torch.zeros(2, 3, 4, 4, requires_grad=True)
    p = torch.tensor(12.0, requires_grad=True)
    gem(x, p).sum().backward()
    assert torch.isfinite(p.grad) and torch.isfinite(x.grad).all()
    big = torch.full((1, 1, 2, 2), 100.0)
    _close(gem(big, 30.0), torch.full((1, 1), 100.0))  # 100**30 overflows float32


def test_gem_module_gradient_with_large_p_on_dead_channels():
    pool = pools.create("gem", p=8.0)
    x = torch.cat([torch.zeros(1, 3, 4, 4), torch.rand(1, 3, 4, 4)])
    pool(x).sum().backward()
    p_grad = pool.p.grad
    assert torch.isfinite(p_grad)


def test_powernorm_is_signed_root_of_the_mean():
    pool = pools.create("powernorm", a=0.5)
    x = torch.tensor([4.0, 16.0, -9.0, -25.0, 0.0, 0.0]).reshape(3, 1, 1, 2)
    expected = torch.tensor([[10.0**0.5], [-(17.0**0.5)], [0.0]])
    _close(pool(x), expected, tol=1e-3)


def test_meanstd_adds_lambda_std():
    pool = pools.create("meanstd", lam=2.0, learnable=False)
    x = torch.tensor([1.0, 3.0]).reshape(1, 1, 1, 2)
    _close(pool(x), torch.tensor([[2.0 + 2.0]]), tol=1e-3)


def test_invalid_hyper_parameters_are_rejected():
    with pytest.raises(ValueError):
        pools.create("mixed", a=1.0)
    with pytest.raises(ValueError):
        pools.create("topk", k=0)
    with pytest.raises(ValueError):
        pools.create("simpool", channels=6, num_heads=4)
    with pytest.raises(TypeError, match="channels"):
        pools.create("mixed", per_channel=True)


# Values outside the range where a pooling is what its name says: each was clamped or degenerate
# in silence (topk(k=2.5) was the mean, lse(r=0) trained with r stuck at its floor).
@pytest.mark.parametrize("spec, words", [
    ("topk(k=2.5)", "topk: k must be a fraction in (0, 1]"),
    ("topk(k=2.0)", "write topk(k=2) for a count of 2 positions"),
    ("topk(k=0)", "k must be a count >= 1"),
    ("topk(k=-3)", "k must be a count >= 1"),
    ("lse(r=0)", "lse: r must be > r_min = 0.1"),
    ("lse(r=0.1)", "gets no gradient there"),
    ("lse(r=0.05, learnable=False)", "r must be >= r_min = 0.1"),
    ("lse(r_min=0)", "r_min must be a finite number > 0"),
    ("gem(p=1)", "gem(p=1, learnable=False) for GAP"),
    ("gem(p=0.5, learnable=False)", "p must be >= p_min = 1.0"),
    ("gem(eps=0)", "gem: eps must be a finite number > 0"),
    ("gem(p_min=0, p=2)", "p_min must be a finite number > 0"),
    ("rms(p=0.5)", "rms: p must be >= 1"),
    ("powernorm(a=0)", "powernorm: a must be in (0, 1]"),
    ("powernorm(eps=0)", "powernorm: eps must be"),
    ("mixed(a=1.0)", "mixed: a must be strictly between 0 and 1"),
    ("channel_gate(tau=0)", "at tau = 0 neither tau nor w gets a gradient"),
    ("simpool(num_heads=0)", "simpool: num_heads must be >= 1"),
    ("simpool(num_heads=3)", "num_heads must be a divisor of the 64 channels"),
    ("simpool(eps=0)", "simpool: eps must be"),
    ("spatial_attention(reduction=0)", "reduction must be >= 1"),
    ("spatial_attention(min_hidden=0)", "min_hidden must be >= 1"),
    ("channel_adaptive(reduction=0)", "reduction must be >= 1"),
    ("channel_adaptive(eps=0)", "channel_adaptive: eps must be"),
    ("cov(dim=0)", "cov: dim must be >= 1"),
    ("cov(iterations=-1)", "iterations must be >= 0"),
    ("cov(eps=0)", "cov: eps must be"),
    ("meanstd(eps=0)", "meanstd: eps must be"),
    ("std_residual(eps=0)", "std_residual: eps must be"),
    ("var_softmax(eps=0)", "var_softmax: eps must be"),
    ("signed_gem(p=1)", "signed_gem: p must be strictly between p_min = 1.0 and p_max = 20.0"),
    ("signed_gem(p=20)", "strictly between"),
    ("signed_gem(p_min=0)", "0 < p_min < p_max"),
    ("cap(hidden=0)", "cap: hidden must be >= 1"),
    ("spectrum(p_max=0.5)", "spectrum: p_max must be >= 1"),
    ("spectrum(eps=0)", "spectrum: eps must be"),
    ("split(max_fraction=2)", "split: max_fraction must be in [0, 1]"),
])
def test_a_value_outside_a_poolings_range_is_refused_in_one_line_with_the_fix(spec, words):
    with pytest.raises(pools.HyperParameterError) as caught:
        pools.create(spec, channels=64)
    message = str(caught.value)
    assert words in message and re.search(r", got .+; (use|write) ", message), message
    assert "\n" not in message and len(message) < 400, message


@pytest.mark.parametrize("spec", ["topk(k=1)", "topk(k=1.0)", "topk(k=0.001)", "topk(k=1000)", "lse(r=0.11)",
                                  "lse(r=0.1, learnable=False)", "gem(p=1, learnable=False)", "gem(p=1.01)",
                                  "signed_gem(p=19.9)", "channel_gate(tau=-1)", "simpool(num_heads=64)",
                                  "cov(iterations=0)", "split(max_fraction=0)"])
def test_values_at_the_edges_of_a_range_are_still_accepted(spec):
    pools.create(spec, channels=64)


def test_a_learnable_scalar_at_its_clamp_floor_gets_no_gradient():
    """Why a learnable r (p) must start above r_min (p_min), not at it: clamp passes no gradient
    at the boundary, so only weight decay moves it, further down."""
    r = torch.tensor(0.1, requires_grad=True)
    lse(torch.rand(2, 3, 4, 4), r.clamp(min=0.1)).sum().backward()
    assert r.grad is not None and r.grad.item() == 0.0
    r = torch.tensor(0.11, requires_grad=True)
    lse(torch.rand(2, 3, 4, 4), r.clamp(min=0.1)).sum().backward()
    assert r.grad is not None and r.grad.item() != 0.0


def test_topk_counts_and_fractions_keep_their_meaning():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert pools.create("topk(k=1)")(x).item() == 15.0  # the max
    assert pools.create("topk(k=1.0)")(x).item() == 7.5  # the mean
    assert pools.create("topk(k=2)")(x).item() == 14.5
    assert pools.create("topk(k=0.125)")(x).item() == 14.5  # 2 of 16 positions
    assert pools.create("topk(k=100)")(x).item() == 7.5  # a count above H*W: all positions
