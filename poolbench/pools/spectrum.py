"""GeM spectrum: poolbench's own pooling, designed from the diagnostic suite.

Every channel gets its own generalised mean, with exponents spread from the average to nearly
the maximum, most of them near the average; one shared shift slides the whole spread and one
shared width narrows it into a single GeM or widens it; the classifier reads each channel at a
scale that shrinks with its exponent:

    y_c = p_c^{-1/4} (mean_{h,w} clamp(x_{c,h,w}, eps)^{p_c})^{1/p_c},
    p_c = 1 + (q_c - 1)^w exp(theta_c + phi),   w = 1 + tanh(2 omega),   q_c = 32^{(c / (C - 1))^2},
    theta = phi = omega = 0 at init (w = 1: the spread q itself),

where the features x receive the gradient of the unscaled generalised mean (the read-out scale
p_c^{-1/4} is straight-through; ``readout=0`` drops it). The arguments are
:class:`GeMSpectrum`'s (``p_max``, ``eps``, ``readout``, ``width_rate``).

Weight decay pulls every theta_c, phi and omega to 0, i.e. every exponent back to its place in
the spectrum: never into a dead zone. (GeM's p, clamped to >= 1 in the forward pass, has zero
gradient below the clamp and decay keeps pulling it down: GeM silently becomes GAP.) Here
p_c >= 1 for every theta, phi and omega, so there is no clamp on p and they always have a
gradient (except on the one channel with q = 1, which is the plain average by design). omega's
gradient fades only where tanh saturates, at one GeM (w -> 0) or the squared spread (w -> 2):
sensible poolings both, and decay pulls omega back from there.

On a 1x1 map every generalised mean is the identity, so where pooling cannot matter it changes
nothing but the per-channel read-out scale, which the linear classifier undoes (``readout=0``
makes it the exact identity).

Citation: it builds on GeM (Radenovic, Tolias & Chum, "Fine-tuning CNN image retrieval with no
human annotation", TPAMI 2018) and on the per-channel choice of mixed pooling (Lee, Gallagher &
Tu, "Generalizing pooling functions in convolutional neural networks", AISTATS 2016); the
straight-through read-out follows the straight-through estimator (Bengio et al. 2013). The
max-normalised GeM of :func:`poolbench.pools.classic.gem` keeps large exponents finite on dead
channels. Its design, the measurements behind every part and its limits are in
``docs/spectrum.md``.

>>> import torch
>>> pool = GeMSpectrum(channels=64)
>>> pool(torch.rand(2, 64, 8, 8)).shape
torch.Size([2, 64])
>>> pool.p.detach()[[0, -1]]  # the first channel is the average, the last near the maximum
tensor([ 1., 32.])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._numerics import check_eps, check_value, require_channels
from .classic import gem
from .registry import Traits, register


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


@register("spectrum", Traits(permutation_invariant=True, functional=(gem_spectrum,)))
class GeMSpectrum(nn.Module):
    """GeM spectrum (poolbench): a generalised mean per channel, exponents spread from 1 to
    ``p_max`` as ``p_max^{(c/(C-1))^2}`` (most channels near the average, a few near the maximum)
    and learnable, ``p_c = 1 + (q_c - 1)^w exp(theta_c + phi)``: a theta per channel, one shift
    phi and one width ``w = 1 + tanh(2 omega)`` shared by all; weight decay pulls theta, phi and
    omega back to the spread. Builds on GeM (Radenovic et al. 2018) and mixed pooling (Lee et al.
    2016); the design and its measurements are in docs/spectrum.md.

    Args:
        channels: C, the number of channels it will see (the spread is laid over them).
        p_max: the largest exponent of the spread. 32: GeM at p = 32 is within 13 % of the
            maximum on an 8x8 map with one active position; 64 cost the majority task more
            (docs/spectrum.md), 8 (geometric) the brightest square.
        eps: the clamp of the input (GeM's), keeping powers of zero finite.
        readout: the classifier reads channel c at ``p_c^{-readout}`` of its generalised mean,
            while the features behind it get the gradient of the unscaled mean (a straight-through
            scale, see docs/spectrum.md). 0 gives the plain spectrum with its true gradient.
        width_rate: how fast the shared width learns, ``w = 1 + tanh(width_rate * omega)``: it
            narrows the spread to one GeM (w -> 0) or widens it up to twice (w -> 2). 2 is the
            rate measured on the diagnostics; 0 fixes the width at 1 (the version without it).

    >>> import torch
    >>> GeMSpectrum(channels=3).p.detach()  # the spread at init: 32 ** ((c / 2) ** 2)
    tensor([ 1.0000,  2.3784, 32.0000])
    >>> GeMSpectrum(channels=3, readout=0.0)(torch.full((1, 3, 2, 2), 2.0)).detach()  # every GeM of a constant
    tensor([[2., 2., 2.]])
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
