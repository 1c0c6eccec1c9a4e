"""poolbench's own poolings: `spectrum` (a GeM exponent per channel, spread from mean to max) and
`split` (averages on some channels, maxima on the others)."""

import math

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


# --- spectrum: poolbench's own pooling ------------------------------------------------------------

def test_spectrum_is_a_gem_per_channel_with_exponents_spread_from_1_to_p_max_most_near_1():
    pool = pools.create("spectrum(p_max=16, readout=0)", channels=5)
    p = [1.0, 16 ** (1 / 16), 16 ** (1 / 4), 16 ** (9 / 16), 16.0]  # 16^((c/4)^2)
    torch.testing.assert_close(pool.p.detach(), torch.tensor(p))
    x = torch.rand(3, 5, 4, 4) + 0.01
    expected = torch.stack([x[:, c].pow(p[c]).mean(dim=(1, 2)).pow(1 / p[c]) for c in range(5)], dim=1)
    torch.testing.assert_close(pool(x), expected, rtol=1e-5, atol=1e-6)


def test_spectrum_exponents_stay_at_least_1_and_weight_decay_pulls_them_back_to_the_spread():
    pool = pools.create("spectrum", channels=8)
    with torch.no_grad():
        pool.theta.fill_(-30.0)  # far below: p is then ~1, never under it
        pool.phi.fill_(-5.0)
        pool.omega.fill_(3.0)  # the widest spread: every (q - 1) squared
    assert float(pool.p.detach().min()) >= 1.0
    optimizer = torch.optim.SGD(pool.parameters(), lr=0.1, weight_decay=0.5)
    for _ in range(200):  # no loss: only decay acts
        optimizer.zero_grad()
        (pool(torch.rand(2, 8, 4, 4)) * 0).sum().backward()
        optimizer.step()
    assert float(pool.theta.detach().abs().max()) < 1.0  # on its way back to theta = 0, p = the spread
    assert abs(float(pool.phi.detach())) < 1.0
    assert abs(float(pool.omega.detach())) < 0.1 and abs(float(pool.width.detach()) - 1.0) < 0.2
    torch.testing.assert_close(pools.create("spectrum", channels=8).p, pools.create("spectrum", channels=8).q)


def test_spectrum_default_spread_keeps_most_channels_near_the_mean_and_a_few_near_the_max():
    q = pools.create("spectrum", channels=64).q
    assert q[0] == 1.0 and float(q[-1]) == pytest.approx(32.0)
    assert (q < 2).sum() == 29 and (q > 16).sum() == 7  # counting channels, detecting channels
    assert (q[1:] > q[:-1]).all()


def test_spectrum_gets_a_gradient_on_every_exponent_but_the_plain_average():
    pool = pools.create("spectrum", channels=6)
    pool(torch.rand(4, 6, 8, 8) + 0.01).pow(2).sum().backward()
    assert pool.theta.grad[0] == 0 and (pool.theta.grad[1:] != 0).all()
    # the shared shift moves every exponent at once: its gradient is the sum of theirs
    torch.testing.assert_close(pool.phi.grad, pool.theta.grad.sum())
    # the width moves the high exponents most: d p_c / d w = (p_c - 1) log(q_c - 1), 0 on the first
    assert pool.omega.grad != 0 and torch.isfinite(pool.omega.grad)


def test_spectrum_width_narrows_the_spread_to_one_gem_or_widens_it_up_to_twice():
    pool = pools.create("spectrum(readout=0)", channels=64)
    x = torch.rand(3, 64, 8, 8) + 0.01
    with torch.no_grad():
        pool.omega.fill_(-20.0)  # w = 0: every channel at 1 + e^phi, one GeM
        pool.phi.fill_(math.log(0.35))
    assert float(pool.width) == 0.0
    torch.testing.assert_close(pool.p, torch.full((64,), 1.35))
    torch.testing.assert_close(pool(x), pools.create("gem(p=1.35)", channels=64)(x))
    with torch.no_grad():
        pool.omega.fill_(20.0)  # w = 2: p_c - 1 = (q_c - 1)^2 e^phi
        pool.phi.fill_(0.0)
    torch.testing.assert_close(pool.p, 1 + (pool.q - 1) ** 2)


def test_spectrum_width_rate_0_fixes_the_width_and_a_negative_one_is_refused():
    pool = pools.create("spectrum(width_rate=0)", channels=6)
    pool(torch.rand(4, 6, 8, 8) + 0.01).pow(2).sum().backward()
    assert float(pool.width) == 1.0 and float(pool.omega.grad) == 0.0
    torch.testing.assert_close(pool.p.detach(), pool.q)
    with pytest.raises(ValueError, match="width_rate must be >= 0"):
        pools.create("spectrum(width_rate=-1)", channels=6)


def test_spectrum_shared_shift_slides_the_whole_spread_towards_the_mean_or_the_max():
    pool = pools.create("spectrum(readout=0)", channels=64)
    x = torch.rand(3, 64, 8, 8) + 0.01
    with torch.no_grad():
        pool.phi.fill_(-20.0)  # every exponent ~1: the plain average on every channel
    torch.testing.assert_close(pool(x), x.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        pool.phi.fill_(1.0)  # every exponent e times further from 1: closer to the maximum
    assert (pool.p[1:] > pool.q[1:]).all()
    assert float(pool.p.detach()[-1]) == pytest.approx(1 + 31 * math.e, rel=1e-5)


def test_spectrum_reads_out_a_scaled_mean_and_passes_the_features_the_unscaled_gradient():
    pool = pools.create("spectrum", channels=6)  # readout 0.25
    plain = pools.create("spectrum(readout=0)", channels=6)
    x = (torch.rand(4, 6, 8, 8) + 0.01).requires_grad_()
    x_plain = x.detach().clone().requires_grad_()
    y, y_plain = pool(x), plain(x_plain)
    torch.testing.assert_close(y, y_plain * pool.p.detach() ** -0.25)  # the value is scaled...
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    (y_plain * weights).sum().backward()
    torch.testing.assert_close(x.grad, x_plain.grad)  # ...the gradient to the features is not
    torch.testing.assert_close(pool.phi.grad, plain.phi.grad)
    with pytest.raises(ValueError, match="readout must be between 0 and 1"):
        pools.create("spectrum(readout=2)", channels=6)


def test_spectrum_is_a_per_channel_scale_on_a_1x1_map_and_passes_the_contract():
    pool = pools.create("spectrum", channels=64)
    x = torch.rand(3, 64, 1, 1) + 0.01
    torch.testing.assert_close(pool(x), x.flatten(1) * pool.q ** -0.25)  # a scale a linear head undoes
    torch.testing.assert_close(pools.create("spectrum(readout=0)", channels=64)(x), x.flatten(1))
    report = check_pool("spectrum")
    assert report.ok and report.result("identity_1x1").message.startswith("a per-channel scale")
    assert report.result("identity_1x1").status == "PASS"
