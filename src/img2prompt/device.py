"""One answer to "which device?" for every command (prediction, the target encoder, generation,
training). Imports nothing else from img2prompt but its errors, and torch only when called, so
importing it costs nothing."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from img2prompt.errors import ConfigError

if TYPE_CHECKING:
    import torch


def resolve_device(spec: str = "auto") -> torch.device:
    """`auto`: a GPU when CUDA is there, else the CPU. `auto` and a bare `cuda` mean this
    process's GPU, `cuda:$LOCAL_RANK` (0 outside torchrun), so each rank of a multi-GPU run gets
    its own. Anything else (`cpu`, `cuda:1`, `mps`) is taken as written; asking for CUDA where
    there is none is a ConfigError naming the option, not a failure deep inside torch."""
    import torch

    spec = str(spec).strip() or "auto"
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        spec = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise ConfigError(f"--device {spec!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {spec}: CUDA is not available here")
    return device
