"""The poolings named after the published proposals compute the formulas of
poolbench/reference/mls_bench_agent_proposals.json at their stated initial values.

Each expectation is the formula written out plainly in float64 (the straightforward, numerically
naive way); the modules must agree with it wherever the naive form is finite.
"""

import importlib.resources
import json

import pytest
import torch
import torch.nn.functional as F

from poolbench import pools

PROPOSALS = json.loads(importlib.resources.files("poolbench").joinpath(
    "reference", "mls_bench_agent_proposals.json").read_text())
SHAPES = [(3, 6, 8, 8), (2, 5, 3, 5), (4, 7, 1, 1)]


def _maps(shape, signed=False, seed=0):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2
    return x if signed else x.relu()


def _stats(x):
    flat = x.flatten(2)
    return flat.mean(-1), flat.amax(-1), flat.var(-1, correction=0)


def _close(actual, expected, tol=1e-4):
    torch.testing.assert_close(actual.double(), expected, rtol=tol, atol=tol)


def test_the_shipped_proposals_file_is_the_shared_reference():
    names = [p["name"] for p in PROPOSALS["proposals"]] + [a["name"] for a in PROPOSALS["seed_document_attempts"]]
    assert len(names) == 7 and any("SCAP" in n for n in names) and any("CAP)" in n for n in names)


@pytest.mark.parametrize("shape", SHAPES)
def test_std_residual(shape):
    pool = pools.create("std_residual", channels=shape[1])
    assert pool.alpha.item() == 0.5  # init 0.5
    x = _maps(shape)
    mean, peak, var = _stats(x)
    s = torch.sigmoid(torch.tensor(0.5, dtype=torch.float64))
    expected = mean + s * var.sqrt() + (1 - s) * (peak - mean)
    _close(pool(x.float()), expected, tol=2e-3)  # the std is sqrt(var + 1e-6) - 1e-3: within 1e-3
    if shape[2] * shape[3] == 1:
        _close(pool(x.float()), mean)  # "on a 1x1 map y = mean", exactly


@pytest.mark.parametrize("shape", SHAPES)
def test_channel_gate(shape):
    pool = pools.create("channel_gate", channels=shape[1])
    assert pool.w.shape == (shape[1],) and not pool.w.any() and pool.tau.item() == 1.0
    with torch.no_grad():
        pool.w.copy_(torch.linspace(-2, 2, shape[1]))
        pool.tau.fill_(0.7)
    x = _maps(shape)
    mean, peak, _ = _stats(x)
    g = torch.sigmoid(torch.linspace(-2, 2, shape[1]).double() * 0.7)
    _close(pool(x.float()), g * mean + (1 - g) * peak)


@pytest.mark.parametrize("shape", SHAPES)
def test_var_softmax(shape):
    pool = pools.create("var_softmax", channels=shape[1])
    assert pool.alpha.item() == 1.0 and pool.b.item() == -0.5
    x = _maps(shape, signed=True)
    mean, _, var = _stats(x)
    m = x.mean(dim=1).flatten(1)  # channel mean at each position
    a = torch.softmax(m * F.softplus(torch.tensor(1.0, dtype=torch.float64)), dim=-1)
    s = (x.flatten(2) * a[:, None]).sum(-1)
    g = torch.sigmoid(var / (mean.abs() + var.sqrt() + 1e-6) - 0.5)
    _close(pool(x.float()), mean + g * (s - mean))


@pytest.mark.parametrize("shape", SHAPES)
def test_signed_gem(shape):
    pool = pools.create("signed_gem", channels=shape[1])
    assert pool.p.item() == 3.0 and pool.w.item() == 0.0
    x = _maps(shape, signed=True)
    mean, _, var = _stats(x)
    sign = torch.sign(mean)
    big_g = (x.abs() + 1e-6).pow(3).flatten(2).mean(-1).pow(1 / 3) * sign
    a = 0.1 * torch.sigmoid(torch.tensor(0.0, dtype=torch.float64))
    std_term = a * (var + 1e-6).sqrt() * sign if shape[2] * shape[3] > 1 else 0.0
    _close(pool(x.float()), (1 - a) * big_g + std_term)


def test_signed_gem_clamps_p_to_1_20_and_survives_what_overflows_the_naive_form():
    pool = pools.create("signed_gem", channels=2)
    x = torch.full((1, 2, 2, 2), 100.0)
    with torch.no_grad():
        pool.p.fill_(50.0)  # clamped to 20: 100**20 = 1e40 overflows float32 in the naive form
    y = pool(x)
    assert torch.isfinite(y).all()
    _close(y, torch.full((1, 2), 0.95 * (100 + 1e-6) + 0.05 * 1e-3, dtype=torch.float64))


@pytest.mark.parametrize("shape", SHAPES)
def test_cap(shape):
    pool = pools.create("cap", channels=shape[1])
    assert pool.scale.item() == 1.0 and pool.bias.item() == 0.0
    assert pool.fc1.weight.shape == (16, 3) and pool.fc2.weight.shape == (1, 16) and pool.fc2.bias is None
    x = _maps(shape)
    mean, peak, var = _stats(x)
    stats = torch.stack([mean, peak, var.sqrt()], dim=-1)
    w1, b1, w2 = (t.detach().double() for t in (pool.fc1.weight, pool.fc1.bias, pool.fc2.weight))
    z = (torch.relu(stats @ w1.T + b1) @ w2.T).squeeze(-1)
    g = torch.sigmoid(z * 1.0 + 0.0)
    _close(pool(x.float()), g * mean + (1 - g) * peak)


def test_cap_is_finite_with_finite_gradients_on_1x1_maps():
    pool = pools.create("cap", channels=4)
    x = torch.rand(3, 4, 1, 1, requires_grad=True)
    pool(x).sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in pool.parameters())


@pytest.mark.parametrize("shape", SHAPES[:2])
def test_scap(shape):
    channels = shape[1]
    pool = pools.create("scap", channels=channels).eval()
    hidden = max(channels // 8, 8)
    assert pool.conv1.weight.shape == (hidden, channels, 1, 1) and pool.conv2.weight.shape == (1, hidden, 1, 1)
    assert pool.w.item() == 0.5 and pool.b.item() == 0.0
    x = _maps(shape)
    h = F.conv2d(x, pool.conv1.weight.double(), pool.conv1.bias.double())
    h = F.batch_norm(h, pool.bn.running_mean.double(), pool.bn.running_var.double(), pool.bn.weight.double(),
                     pool.bn.bias.double(), False, 0.0, pool.bn.eps)
    a = torch.sigmoid(F.conv2d(torch.relu(h), pool.conv2.weight.double(), pool.conv2.bias.double()))
    att = (x * a).sum(dim=(2, 3)) / (a.sum(dim=(2, 3)) + 1e-6)
    g = torch.sigmoid(torch.tensor(2 * 0.5 + 0.0, dtype=torch.float64))
    _close(pool(x.float()), g * att + (1 - g) * x.amax(dim=(2, 3)))
    # its layers are built in __init__, so the optimizer sees them
    assert {"conv1.weight", "bn.weight", "conv2.weight", "w", "b"} <= dict(pool.named_parameters()).keys()
