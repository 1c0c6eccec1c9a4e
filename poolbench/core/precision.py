"""Mixed precision: the ``--amp`` names a run takes and the torch dtype autocast runs in under each.

One map for every user (the run's training loop, the flags of ``run`` and ``sweep``, the memory
estimate, the low-precision checks of a pooling), so a new precision is one entry here.

>>> AMP_DTYPES["bf16"], amp_bytes("fp16"), amp_bytes("none")
(torch.bfloat16, 2, 4)
"""

from __future__ import annotations

import torch

#: ``--amp`` name -> autocast dtype; "none" trains in float32 without autocast
AMP_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def amp_bytes(amp: str) -> int:
    """Bytes per activation element under ``amp`` (float32's 4 without autocast, or for a name not here)."""
    return (AMP_DTYPES.get(amp) or torch.float32).itemsize
