"""``--compile``: the model's forward through ``torch.compile``, without leaving the protocol.

Every training image is still seen every epoch and the whole test set is evaluated: the
smaller last batch of an epoch (50,000 = 390 x 128 + 80) runs the same module uncompiled
instead of costing a recompilation (or a slower dynamic-shape graph for every batch). Only
the first batch size seen in each mode (train, eval) is compiled, with static shapes, so
the run compiles two graphs in its first epoch and none after it. On CUDA the graphs are
replayed as CUDA graphs (``mode="reduce-overhead"``): a step launches one graph instead of
hundreds of kernels.

Where compilation cannot work (no C++ compiler for the CPU backend, a Python version that
Dynamo does not support, a pooling Dynamo cannot trace, ...) the run says so in one warning
line and goes on uncompiled: ``--compile`` never fails a run that runs without it.

``POOLBENCH_COMPILE_BACKEND`` names another ``torch.compile`` backend (e.g. ``eager`` or
``aot_eager`` to debug a tracing problem without the code generation of ``inductor``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

BACKEND_ENV = "POOLBENCH_COMPILE_BACKEND"


class CompiledForward:
    """``forward(images) -> logits`` of ``model``: compiled for the first batch size of each mode,
    eager for any other (the last, smaller batch of an epoch) and after a failed compilation.

    ``model`` stays the module that owns the parameters: the optimizer, ``state_dict`` and the
    checkpoints see it unchanged.
    """

    def __init__(self, model: nn.Module, device: torch.device, *, backend: str | Callable | None = None,
                 warn: Callable[[str], None] = print) -> None:
        self.model = model
        self.warn = warn
        self.backend = backend or os.environ.get(BACKEND_ENV) or "inductor"
        # CUDA graphs need static shapes, which the size rule below guarantees.
        self.cudagraphs = device.type == "cuda" and self.backend == "inductor"
        self.compiled_sizes: dict[bool, int] = {}  # model.training -> the batch size compiled for it
        self.calls = {"compiled": 0, "eager": 0}
        self.failure: str | None = None
        self._compiled: Callable[[torch.Tensor], torch.Tensor] | None = None
        try:
            options: dict[str, Any] = {"mode": "reduce-overhead"} if self.cudagraphs else {}
            self._compiled = torch.compile(model, backend=self.backend, dynamic=False, **options)
        except Exception as error:  # e.g. a Python version Dynamo does not support
            self._fall_back(error)

    @property
    def compiled_as(self) -> str:
        """``compiled`` (``+cudagraphs`` on CUDA), or why the run went on uncompiled."""
        if self.failure is not None:
            return f"uncompiled: {self.failure}"
        return "compiled" + ("+cudagraphs" if self.cudagraphs else "")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self._compiled is not None:
            size = self.compiled_sizes.setdefault(self.model.training, images.shape[0])
            if images.shape[0] == size:
                try:
                    if self.cudagraphs:
                        torch.compiler.cudagraph_mark_step_begin()  # last step's outputs are not reused
                    logits = self._compiled(images)
                    self.calls["compiled"] += 1
                    return logits
                except Exception as error:  # compilation happens on the first call
                    self._fall_back(error)
        self.calls["eager"] += 1
        return self.model(images)

    def _fall_back(self, error: BaseException) -> None:
        # A real error of the model raises again in the eager call that follows.
        self._compiled = None
        # Dynamo wraps the backend's error (BackendCompilerFailed): say what the backend said.
        error = getattr(error, "inner_exception", None) or error
        first_line = (str(error).strip().splitlines() or [""])[0]
        if len(first_line) > 200:
            first_line = first_line[:197] + "..."
        self.failure = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
        self.warn(f"warning: --compile: torch.compile cannot compile this model here ({self.failure}); "
                  "training goes on uncompiled")
