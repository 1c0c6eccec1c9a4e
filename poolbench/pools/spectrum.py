"""GeM spectrum: poolbench's own pooling, designed from the diagnostic suite.

The diagnostics show the standard poolings trading off. An average reads counts and proportions
(gap near 100 % on the majority task, gmp near chance); a maximum singles out one position (gmp,
avgmax ahead of gap by 50+ points on the brightest-square task). avg+max mixes both statistics
inside every channel, and GeM learns one exponent for all channels, which weight decay and the
task pull towards one end: neither is best on both sides.

The spectrum gives every channel its own generalised mean, with exponents spread from the
average to nearly the maximum, most of them near the average; one shared shift slides the whole
spread and one shared width narrows it into a single GeM or widens it; the classifier reads each
channel at a scale that shrinks with its exponent:

    y_c = p_c^{-1/4} (mean_{h,w} clamp(x_{c,h,w}, eps)^{p_c})^{1/p_c},
    p_c = 1 + (q_c - 1)^w exp(theta_c + phi),   w = 1 + tanh(2 omega),   q_c = 32^{(c / (C - 1))^2},
    theta = phi = omega = 0 at init (w = 1: the spread q itself),

where the features x receive the gradient of the unscaled generalised mean (the read-out scale
p_c^{-1/4} is straight-through; ``readout=0`` drops it).

With C = 64 channels, 29 have q < 2 (counting channels), 7 have q > 16 (GeM at p = 32 over an
8x8 map is within 13 % of the maximum: detecting channels), the rest lie between. Channels are
interchangeable at initialisation, so the network learns which features to count and which to
detect, and the classifier reads each from the channels that carry it cleanly.

Why the shared shift phi: a per-channel theta gets 1/C of the evidence and barely moves in a
short run (|theta| < 0.3 after 6 epochs on every diagnostic task), while phi's gradient is the
sum of all of them, as GeM's one p is. Without the width (below), on the counting tasks it moved
to about -2 within the run (the top exponent from 32 to about 5, the low ones to about 1); on the
brightest square it stayed near 0 (+0.02 to +0.08), keeping the detecting channels (with the
width, phi settles at about -1 on the mean side and +0.1 to +0.3 on the brightest square). Over
15 seeds this took ``diag-count`` from 2.95 points behind gem to 0.41 ahead, and
``diag-majority`` from 0.48 to 0.18 behind. Letting phi move 4x faster (``exp(theta + 4 phi)``)
lost the brightest square (88.8 against avg+max's 95.0): early in training every task's gradient
points towards the average (4 phi fell to -1.25 within the first epoch of the brightest-square
task before climbing back), so a fast shift gives the detecting channels up before the brightest
square is learnt.

Why the shared width w: the majority task wants every channel at GeM's learnt p of about 1.35
(GeM with p fixed at 1.35 scored 99.91, gem 99.94, gap 99.83), the brightest square wants the
spread kept, and wider. A shift cannot give the first: it scales every (q_c - 1) by the same
factor, so at phi = -2 the exponents still ran from 1 to 5, and the version with the shift and
the read-out scale alone trailed gem by 0.13 on the majority task (p = 0.001, 20 seeds). The
width is the exponent on (q_c - 1): at w = 0 every channel is at 1 + e^phi (one GeM), at w = 2
the spread is squared. Its gradient, sum_c dL/dp_c (p_c - 1) log(q_c - 1), is GeM-like (all
channels' evidence) and tells the two sides apart: on the majority task w went to
0.002-0.02 (every exponent 1.3-1.6), on the brightest square to 1.74-1.88 (top exponent
440-880, nearly the maximum). Rate and bound matter (15 seeds, majority vs gem / brightest vs
avg+max): ``w = exp(omega)`` narrowed too little (w 0.2-0.3; -0.06, p = 0.11 / +0.83);
``w = exp(2 omega)`` narrowed fully (-0.02) but widened without bound on the brightest square
(w 3-11: too few channels left averaging, -2.35); ``w = 1 + tanh(2 omega)``, bounded at 2,
gave -0.03 (p = 0.51) / +0.71; ``1 + tanh(3 omega)`` lost the brightest square on one seed
(49 %). A learnt floor under the exponents instead (p_c = f + ..., f -> 1.3) changed nothing
(-0.15): the exponents above it, not the ones at 1, were what cost the majority task.

Why the read-out scale: a generalised mean grows with p on a peaked map (up to N^{1 - 1/p} times
the average over N positions), so the near-max channels feed the classifier values several times
larger than the counting channels do, and the classifier's steps on them are larger by the square
of that. p_c^{-1/4} (0.42 at p = 32) shrinks what the classifier reads; the features behind the
channel still get the gradient of the unscaled mean, so the detecting features keep learning as
fast as under GeM, which the brightest square needs at lr 0.01. (A layer whose backward pass is
not its forward pass's gradient has precedents: the straight-through estimator, Bengio et al.
2013, and the gradient-reversal layer, Ganin & Lempitsky 2015.) Over 15 seeds it took the
brightest square from 1.38 behind avg+max (p = 0.026) to 0.04 ahead (p = 0.95), majority from
0.18 to 0.13 behind gem, and left counting level with gem (+0.08). p_c^{-1/2} was too strong
(brightest -2.86, majority -0.21); scaling value and gradient together (by the map size, below)
lost the brightest square.

Why this spread (measured on the diagnostics, ResNet-8, CPU; the README has the tables): the
number of near-max channels sets the trade-off. A geometric spread
1..8 (the first version) kept majority and count at gap's level but trailed avg+max on the
brightest square by 4.2 points (p = 0.012); a geometric 1..16 closed most of that (94.9 on
three seeds) and cost counting (73.3 vs gap's 77.0 on the same seeds); half the channels at
p = 1 and half at 8..64 lost majority (94-98); mean + a_c (max - mean) with a_c spread over 0..1
lost majority (82-95), and a softmax-weighted mean with a spread of temperatures lost both
mean-side tasks (majority 62-95, count 43-64). The hard maximum, or many near-max channels, slows
the counting channels at lr 0.05; a few soft near-max channels do so much less, but not
never. With the shift, a spread up to 64, or ``32^{t^1.5}`` (more channels high), trailed gem on
the majority task by 0.4-0.5 points; every exponent at least 3 (GeM's start) with the spread on
top lost it (76-89 %); averaging every channel with the plain mean lost the brightest square
(86-89 %); one shared avg/max weight (mixed pooling) lost majority on some seeds (83-97 %).

What is left (20 seeds, README): no trade-off on the diagnostics. 0.03 behind gem on the majority
task (99.91 against 99.94, p = 0.29; the version without the width: 99.81, p = 0.001), 1.26 behind
gem on counting (p = 0.41; that task's scores swing by 10 points from epoch to epoch for every
pooling), 0.83 ahead of avg+max on the brightest square (96.16, p = 0.23), 48-56 points ahead of
the worst standard pooling on each task. On 10 seeds no design choice saw (17-26) the verdict
holds too (-0.01 vs gem, -3.69 vs gap on counting with p = 0.12, -0.15 vs avg+max). The two
sides still pull the exponents apart at different learning rates (lr 0.05 on the mean side,
0.01 on the max side): a width moving 1.5x faster than this one lost the brightest square on
one seed in 15, ``w = exp(omega)`` (half as fast at the start) left majority at -0.06.

Weight decay pulls every theta_c, phi and omega to 0, i.e. every exponent back to its place in
the spectrum: never into a dead zone. (GeM's p, clamped to >= 1 in the forward pass, has zero
gradient below the clamp and decay keeps pulling it down: GeM silently becomes GAP.) Here
p_c >= 1 for every theta, phi and omega, so there is no clamp on p and they always have a
gradient (except on the one channel with q = 1, which is the plain average by design). omega's
gradient fades only where tanh saturates, at one GeM (w -> 0) or the squared spread (w -> 2):
sensible poolings both, and decay pulls omega back from there.

On a 1x1 map every generalised mean is the identity, so where pooling cannot matter it changes
nothing but the per-channel read-out scale, which the linear classifier undoes (``readout=0``
makes it the exact identity). It builds on GeM (Radenovic, Tolias & Chum, TPAMI 2018) and on
the per-channel choice of mixed pooling (Lee, Gallagher & Tu, AISTATS 2016); the max-normalised
GeM of :func:`poolbench.pools.classic.gem` keeps large exponents finite on dead channels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._numerics import check_eps, check_value, require_channels
from .classic import gem
from .registry import register


def exponent_spectrum(channels: int, p_max: float = 32.0) -> torch.Tensor:
    """``q_c = p_max^{(c / (C - 1))^2}``: exponents from 1 (the average) to ``p_max``, most near 1.

    >>> exponent_spectrum(3, p_max=64.0)
    tensor([ 1.0000,  2.8284, 64.0000])
    """
    if channels == 1:
        return torch.ones(1)
    position = torch.arange(channels, dtype=torch.float64) / (channels - 1)
    return (p_max ** position.square()).to(torch.float32)


def gem_spectrum(x: torch.Tensor, p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-channel GeM ``(mean_{h,w} clamp(x, eps)^{p_c})^{1/p_c}``: ``[B, C, H, W]``, ``p`` of shape ``[C]``.

    >>> x = torch.tensor([[[[1.0, 3.0]], [[1.0, 3.0]]]])  # two channels holding 1 and 3
    >>> gem_spectrum(x, torch.tensor([1.0, 64.0]))  # the mean, and nearly the max
    tensor([[2.0000, 2.9677]])
    """
    return gem(x, p.view(1, -1, 1, 1).to(x.device), eps)


@register("spectrum")
class GeMSpectrum(nn.Module):
    """GeM spectrum (poolbench): a generalised mean per channel, exponents spread from 1 to
    ``p_max`` as ``p_max^{(c/(C-1))^2}`` (most channels near the average, a few near the maximum)
    and learnable, ``p_c = 1 + (q_c - 1)^w exp(theta_c + phi)``: a theta per channel, one shift
    phi and one width ``w = 1 + tanh(2 omega)`` shared by all; weight decay pulls theta, phi and
    omega back to the spread. Builds on GeM (Radenovic et al. 2018) and mixed pooling (Lee et al.
    2016); see the module docstring for the reasoning.

    Args:
        channels: C, the number of channels it will see (the spread is laid over them).
        p_max: the largest exponent of the spread. 32: GeM at p = 32 is within 13 % of the
            maximum on an 8x8 map with one active position; 64 cost the majority task more
            (see the module docstring), 8 (geometric) the brightest square.
        eps: the clamp of the input (GeM's), keeping powers of zero finite.
        readout: the classifier reads channel c at ``p_c^{-readout}`` of its generalised mean,
            while the features behind it get the gradient of the unscaled mean (a straight-through
            scale, see the module docstring). 0 gives the plain spectrum with its true gradient.
        width_rate: how fast the shared width learns, ``w = 1 + tanh(width_rate * omega)``: it
            narrows the spread to one GeM (w -> 0) or widens it up to twice (w -> 2). 2 is the
            rate measured on the diagnostics; 0 fixes the width at 1 (the version without it).
    """

    def __init__(self, channels: int | None = None, p_max: float = 32.0, eps: float = 1e-6,
                 readout: float = 0.25, width_rate: float = 2.0):
        super().__init__()
        channels = require_channels(channels, "spectrum")
        check_value(1.0 <= p_max < math.inf, "spectrum", "p_max", p_max, ">= 1 and finite",
                    "use e.g. spectrum(p_max=32)")
        check_value(0.0 <= readout <= 1.0, "spectrum", "readout", readout, "between 0 and 1",
                    "use e.g. spectrum(readout=0.25)")
        check_value(0.0 <= width_rate < math.inf, "spectrum", "width_rate", width_rate,
                    ">= 0 (0 fixes the width) and finite", "use e.g. spectrum(width_rate=2)")
        check_eps("spectrum", eps, "the clamp keeps powers of zero finite", 1e-6)
        self.q: torch.Tensor  # a buffer: moves with .to() and is saved, never trained
        self.register_buffer("q", exponent_spectrum(channels, p_max))
        self.theta = nn.Parameter(torch.zeros(channels))
        self.phi = nn.Parameter(torch.zeros(()))  # one shift for all channels
        self.omega = nn.Parameter(torch.zeros(()))  # one width for the whole spread
        self.p_max, self.eps, self.readout, self.width_rate = p_max, eps, readout, width_rate

    @property
    def width(self) -> torch.Tensor:
        """The spread's width now, ``w = 1 + tanh(width_rate * omega)`` in (0, 2): 1 at init."""
        return 1.0 + torch.tanh(self.width_rate * self.omega)

    @property
    def p(self) -> torch.Tensor:
        """The exponents now: ``1 + (q - 1)^w exp(theta + phi)``."""
        return 1.0 + (self.q - 1.0).pow(self.width) * (self.theta + self.phi).exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.q.numel():
            raise ValueError(f"spectrum was built for {self.q.numel()} channels, got {x.shape[1]}")
        p = self.p
        pooled = gem_spectrum(x, p, self.eps)
        if self.readout == 0:
            return pooled
        scale = p.detach().pow(-self.readout).to(pooled.dtype)
        # value scale * pooled; gradient that of pooled: the (1 - scale) part carries gradient, no value
        return scale * pooled + (1.0 - scale) * (pooled - pooled.detach())

    def extra_repr(self) -> str:
        return (f"channels={self.q.numel()}, p_max={self.p_max}, eps={self.eps}, readout={self.readout}, "
                f"width_rate={self.width_rate}")
