"""The numeric contract checks: shape, dtype, finite values, low precision, gradients.

A check takes the :class:`Subject` and returns ``(status, message)``; it may instead raise
:class:`ContractViolation` with the message of a FAIL. Any other exception becomes a FAIL
carrying the exception text (the runner catches it), so a broken pooling never crashes the
checker. Each check builds fresh instances, so one check's forward cannot mask another's problem.
"""

from __future__ import annotations

import torch

from ..core.unique import unique
from .findings import CheckStatus
from .subject import (
    BATCH,
    BATCHNORM_ONE_VALUE,
    Check,
    ContractViolation,
    Subject,
    nonfinite_part,
    one_line,
    shape_text,
    step,
)


def _extra_shapes(zero_argument: bool) -> list[tuple[int, int, int]]:
    """Sizes beyond the benchmark's: the contract says *every* spatial size and any C.

    A ``CustomPool()`` instance must serve any C, so it also meets C=4096, wider than the
    2048-slot buffers users have sliced to C (a pooling sized with ``channels`` need not: at
    C=4096 a C x C layer is large, and the fixed_buffer check covers its slicing).
    """
    return [(16, 3, 5), (16, 2, 2), (16, 4, 4), (16, 1, 1)] + ([(4096, 1, 1)] if zero_argument else [])


def _spread(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The same C on a map with spatial extent (4x4 instead of 1x1), where statistics differ."""
    channels, height, width = shape
    return (channels, height, width) if height * width > 1 else (channels, 4, 4)


def check_shape(subject: Subject) -> tuple[CheckStatus, str]:
    """Output is exactly [B, C] for the pool inputs, odd sizes, batch 1 and 4, train and eval."""
    shapes = unique([*subject.pool_inputs, *_extra_shapes(not subject.takes_channels)])
    shared = None if subject.takes_channels else subject.build(shapes[0][0], materialise=shapes[0][1:])
    first_channels = shapes[0][0]
    widest_input = max(c for c, _, _ in subject.pool_inputs)
    for channels, height, width in shapes:
        if channels > widest_input and shared is not None:
            # A probe wider than every pool input: failing it wastes nothing in these runs, so it warns.
            try:
                _check_output_shapes(shared, subject, channels, height, width)
            except ContractViolation as violation:
                return "WARN", (f"{violation}; only a C wider than the pool inputs here (C up to {widest_input}) "
                                f"fails: the same {subject.call_text()} instance must serve any C, so construct "
                                f"with a `channels` argument")
            continue
        module = shared if shared is not None else subject.build(channels, materialise=(height, width))
        for batch in (1, BATCH):
            for train in (True, False):
                x = subject.maps("relu", (batch, channels, height, width))
                try:
                    output = step(module, x, train=train, backward=False).output
                except ContractViolation as violation:
                    if batch == 1 and train and BATCHNORM_ONE_VALUE in str(violation):
                        continue  # BatchNorm cannot train on one value: the train_batch1 check reports it
                    if shared is not None and channels != first_channels:
                        raise ContractViolation(
                            f"{violation}; the same {subject.call_text()} instance served C={first_channels} "
                            f"first and must handle any C: construct with a `channels` argument"
                        ) from violation
                    raise
                expected = (batch, channels)
                if tuple(output.shape) != expected:
                    raise ContractViolation(
                        f"output {shape_text(output.shape)} for input {shape_text(x.shape)}, expected "
                        f"{shape_text(expected)}: {_shape_hint(output.shape, channels)}"
                    )
    widest = max(c for c, _, _ in shapes)
    return "PASS", f"[B, C] for {len(shapes)} input sizes (1x1 to 8x8, non-square, C up to {widest}), " \
                   f"batch 1 and {BATCH}, train and eval"


def _check_output_shapes(module, subject: Subject, channels: int, height: int, width: int) -> None:
    """ContractViolation unless ``module`` maps ``[B, C, H, W]`` to ``[B, C]`` at batch 1 and 4, train and eval."""
    for batch in (1, BATCH):
        for train in (True, False):
            x = subject.maps("relu", (batch, channels, height, width))
            output = step(module, x, train=train, backward=False).output
            if tuple(output.shape) != (batch, channels):
                hint = _shape_hint(output.shape, channels)
                raise ContractViolation(f"output {shape_text(output.shape)} for input {shape_text(x.shape)}, "
                                        f"expected {shape_text((batch, channels))}: {hint}")


def _shape_hint(shape: torch.Size, channels: int) -> str:
    if len(shape) == 4 and tuple(shape[2:]) == (1, 1):
        return "flatten the pooled map, e.g. return y.flatten(1)"
    if len(shape) == 2 and shape[1] % channels == 0 and shape[1] > channels:
        return (f"the output has {shape[1] // channels}C channels (concatenated statistics, e.g. "
                f"catavgmax): combine them back to C (average them or project to C)")
    return "reduce over H and W only and keep the C channels"


def check_dtype(subject: Subject) -> tuple[CheckStatus, str]:
    """Output dtype equals input dtype (float32, and float64 with the module in float64)."""
    for channels, height, width in subject.pool_inputs:
        for dtype in (torch.float32, torch.float64):
            module = subject.build(channels, materialise=(height, width)).to(dtype)
            x = subject.maps("relu", (BATCH, channels, height, width), dtype=dtype)
            output = step(module, x, train=False).output
            if output.dtype != dtype:
                raise ContractViolation(
                    f"output is {output.dtype} for a {dtype} input {shape_text(x.shape)}: return the "
                    f"pooled tensor in x.dtype (create tensors in forward() with dtype=x.dtype)"
                )
    return "PASS", "output dtype follows the input (float32, float64)"


# What typically causes a non-finite value on each kind of test map: the hint of the FAIL line.
_FINITE_CASES: dict[str, tuple[str, str]] = {
    "relu": ("post-ReLU maps",
             "post-ReLU maps are half zeros and sqrt, log and x**p (p<1) have infinite derivatives at 0: "
             "add eps inside sqrt/log, clamp the input to >= eps, add eps to denominators"),
    "dead_channels": ("maps with all-zero (dead) channels",
                      "a channel with no activation gives 0/0 in x/sum(x) and infinite derivatives in "
                      "sqrt/log/pow at 0: add eps to denominators and inside sqrt/log, or clamp to >= eps"),
    "constant": ("constant maps (zero spatial variance)",
                 "a std/sqrt of a zero variance has an infinite derivative: add eps inside the sqrt"),
    "large": ("large activations (~1e3)",
              "exp of large activations overflows: subtract the max first (use logsumexp or softmax)"),
    "negative": ("negative (pre-ReLU) inputs",
                 "fractional powers, sqrt and log are NaN below 0: clamp to >= eps or use sign(x)*|x|**p"),
}
# The classic 1x1 failure (SPEC section 1): torch.std divides by N-1 = 0 there.
_BESSEL_CAUSE = "e.g. a std with Bessel's correction over one position is NaN"
_ZERO_VARIANCE_CAUSE = "e.g. the sqrt of the zero variance of one position has an infinite derivative"
_BESSEL_FIX = "use correction=0 and add eps inside the sqrt"


def _nonfinite(subject: Subject, kind: str, shape: tuple[int, int, int]) -> tuple[str, str] | None:
    """``(what is non-finite, where)`` in a train step or an eval pass on a ``kind`` map of ``(C, H, W)``."""
    channels, height, width = shape
    module = subject.build(channels, materialise=(height, width))
    x = subject.maps({"dead_channels": "dead"}.get(kind, kind), (BATCH, channels, height, width))
    for train in (True, False):
        problem = nonfinite_part(step(module, x, train=train))
        if problem is not None:
            return problem, f"C={channels}, batch {BATCH}, {'train' if train else 'eval'} mode"
    return None


def finite_check(kind: str) -> Check:
    """The check that ``kind`` maps, with the spatial extent of each pool input (at least 4x4), stay finite.

    A failure that post-ReLU maps already show is left to the ``finite_relu`` line (one root
    cause, one FAIL): this check then only warns that it could not test its own case.
    """
    def check(subject: Subject) -> tuple[CheckStatus, str]:
        for shape in unique(map(_spread, subject.pool_inputs)):
            problem = _nonfinite(subject, kind, shape)
            if problem is None:
                continue
            if kind != "relu" and _nonfinite(subject, "relu", shape) is not None:
                return "WARN", "not tested: already non-finite on post-ReLU maps (see finite_relu)"
            (what, where), (description, hint) = problem, _FINITE_CASES[kind]
            raise ContractViolation(f"{what} on {description} of {shape[1]}x{shape[2]} ({where}): {hint}")
        return "PASS", f"finite output and gradients on {_FINITE_CASES[kind][0]}"

    check.__doc__ = f"Finite output, input gradient and parameter gradients on {_FINITE_CASES[kind][0]}."
    return check


def check_finite_1x1(subject: Subject) -> tuple[CheckStatus, str]:
    """Finite on 1x1 maps, where VGG-16-BN and MobileNetV2 pool and every spatial statistic is trivial.

    A 1x1 map is a constant map, and on a post-ReLU one about half the channels are zero: a
    failure that constant or dead-channel maps with spatial extent also show is left to those
    checks. What remains is specific to a single position, such as Bessel's N-1 = 0.
    """
    channel_counts = unique([*subject.channel_counts, 16])
    explained = []
    for kind in ("relu", "dead_channels", "large", "negative"):
        for channels in channel_counts:
            problem = _nonfinite(subject, kind, (channels, 1, 1))
            if problem is None:
                continue
            spread = _spread((channels, 1, 1))
            by = [other for other in unique((kind, "constant", "dead_channels"))
                  if _nonfinite(subject, other, spread) is not None]
            if by:
                explained.append(f"finite_{by[0]}")
                continue
            (what, where), (description, hint) = problem, _FINITE_CASES[kind]
            if kind in ("relu", "dead_channels"):
                cause = _BESSEL_CAUSE if what.startswith("output") else _ZERO_VARIANCE_CAUSE
                where, hint = f"{where}; {cause}", _BESSEL_FIX
            raise ContractViolation(f"{what} on a 1x1 map ({description}, {where}): {hint}")
    if explained:
        return "WARN", f"non-finite on 1x1 maps too, for the reason {explained[0]} reports " \
                       f"(a 1x1 map is constant, with zero channels)"
    return "PASS", f"finite output and gradients on 1x1 maps (C={', '.join(map(str, channel_counts))})"


def _low_precision(subject: Subject, dtype: torch.dtype) -> tuple[list[str], int]:
    """Problems with ``dtype`` inputs, under autocast (float32 parameters) and fully cast.

    Inputs whose float32 output is already non-finite are skipped (counted): the finite checks
    report those.
    """
    name = str(dtype).removeprefix("torch.")
    problems, skipped = [], 0
    for channels, height, width in subject.pool_inputs:
        x = subject.maps("relu", (BATCH, channels, height, width), dtype=dtype)
        context = f"on {shape_text(x.shape)}"
        try:
            reference = step(subject.build(channels, materialise=(height, width)), x.float(), train=False)
            usable = bool(torch.isfinite(reference.output).all())
        except Exception:
            usable = False
        if not usable:
            skipped += 1
            continue
        try:
            module = subject.build(channels, materialise=(height, width))
            with torch.autocast(subject.device.type, dtype=dtype):
                output = step(module, x, train=True, backward=False).output
            if not torch.isfinite(output).all():
                problems.append(f"non-finite output under {name} autocast {context}")
        except Exception as error:
            problems.append(f"{name} autocast failed {context}: {one_line(error, 150)}")
        try:
            module = subject.build(channels, materialise=(height, width)).to(dtype)
            output = step(module, x, train=False).output
            if not torch.isfinite(output).all():
                problems.append(f"non-finite output with module and input in {name} {context}")
        except Exception as error:
            problems.append(f"pure {name} failed {context}: {one_line(error, 150)}")
    return problems, skipped


def low_precision_check(dtype: torch.dtype) -> Check:
    """The check that ``dtype`` inputs give finite outputs (see the package docstring for the policy)."""
    name = str(dtype).removeprefix("torch.")

    def check(subject: Subject) -> tuple[CheckStatus, str]:
        problems, skipped = _low_precision(subject, dtype)
        note = f" ({skipped} inputs skipped: not finite in float32 either)" if skipped else ""
        if not problems:
            return "PASS", f"finite output in {name} (autocast and fully cast) on post-ReLU maps{note}"
        # bfloat16 has float32's range, so a non-finite value there is a real bug; float16 overflows
        # at 65504 and CPU autocast casts other ops than CUDA's, so there it is a warning on CPU.
        fatal = any("non-finite" in p for p in problems) and (
            dtype == torch.bfloat16 or subject.device.type == "cuda")
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        hint = "compute the pooling in float32 (x.float(), then .to(x.dtype)) if you train in low precision"
        return ("FAIL" if fatal else "WARN"), f"{problems[0]}{more}{note}: {hint}"

    check.__doc__ = f"Finite output for {name} inputs: under autocast, and with module and input cast."
    return check


def check_gradients(subject: Subject) -> tuple[CheckStatus, str]:
    """The input and every learnable parameter get a gradient from a random projection loss."""
    warnings = []
    for channels, height, width in map(_spread, subject.pool_inputs):
        module = subject.build(channels, materialise=(height, width))
        x = subject.maps("relu", (BATCH, channels, height, width))
        result = step(module, x, train=True)
        context = f"on {shape_text(x.shape)}"
        if result.input_grad is None or not result.input_grad.any():
            raise ContractViolation(
                f"no gradient reaches the input {context}: do not detach x or use no_grad/.item() in "
                f"forward()"
            )
        for name, grad in result.param_grads.items():
            if grad is None:
                raise ContractViolation(
                    f"learnable parameter '{name}' gets no gradient {context}: use it in forward(), "
                    f"or remove it / set requires_grad=False"
                )
            if not torch.isfinite(grad).all():
                raise ContractViolation(f"gradient of parameter '{name}' is not finite {context}")
            if not grad.any():
                warnings.append(f"parameter '{name}' gets an all-zero gradient {context}")
    if warnings:
        return "WARN", f"{warnings[0]}: it will not train from this init (check its init and use)"
    count = len(result.param_grads)
    return "PASS", f"gradient reaches the input and all {count} learnable parameter tensors" if count else \
        "gradient reaches the input (no learnable parameters)"


def check_identity_1x1(subject: Subject) -> tuple[CheckStatus, str]:
    """Information, never a failure: what the pooling computes on a 1x1 map at its initial parameters.

    On a 1x1 pool input (VGG-16-BN and MobileNetV2 on 32x32 images) every parameter-free spatial
    statistic is the identity, so such a pooling trains exactly like GAP there and any difference
    between them on those settings is seed noise. Poolings that only rescale each channel differ
    from GAP by a factor the next linear layer can undo. Measured in eval mode on strictly
    positive post-ReLU maps (a GeM clamp or a log must not decide the answer).
    """
    channels = subject.pool_inputs[0][0]
    module = subject.build(channels, materialise=(1, 1))
    x = subject.maps("relu", (BATCH * 4, channels, 1, 1)) + 0.05
    y = step(module, x, train=False).output.float().reshape(x.shape[0], -1)
    x = x.reshape(x.shape[0], -1).float()
    if y.shape != x.shape:
        return "WARN", f"output shape {shape_text(y.shape)} on a 1x1 map: not tested"
    if torch.allclose(y, x, rtol=1e-4, atol=1e-5):
        return "PASS", ("identity on a 1x1 map: on 1x1 settings it computes what gap computes, "
                        "so differences there are seed noise")
    scale = (x * y).sum(0) / (x * x).sum(0)
    if torch.allclose(y, x * scale, rtol=1e-4, atol=1e-5):
        return "PASS", (f"a per-channel scale on a 1x1 map (factor {scale.min():.3g} to {scale.max():.3g}): "
                        "a linear head can undo it, so on 1x1 settings it trains nearly like gap")
    return "PASS", (f"not the identity on a 1x1 map (max |y - x| = {(y - x).abs().max():.3g} at its initial "
                    "parameters): it can differ from gap even where the pool input is 1x1")
