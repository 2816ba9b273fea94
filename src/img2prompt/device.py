"""One answer to "which device?" and "which precision?" for every command (prediction, the
target encoder, generation, training). Imports nothing else from img2prompt but its errors, and
torch only when called, so importing it costs nothing."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from img2prompt.errors import ConfigError

if TYPE_CHECKING:
    import torch

Device = str
"""`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`... (free text: any torch device)."""

Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
"""The one precision vocabulary. `auto` is each command's own safe choice (generate: fp16 on
CUDA, fp32 on CPU; predict and decoding: bf16 where the hardware computes it natively and it
holds accuracy, else on a CPU int8 where it holds accuracy and the model is no convolutional
network). Prediction and decoding refuse
`fp16` (bf16 keeps float32's range); `int8` (linear layers with int8 weights, activations
quantized per call: the fast path of CPUs without native bf16) is theirs alone
(`refuse_precision`)."""

INT8_COMMANDS = (
    "predict, describe, serve and index tune (--precision) and decode (--search-precision)"
)


NOT_OFFERED = {
    "fp16": "is not offered here: use bf16 (float32's range) or fp32",
    "int8": f"is offered by {INT8_COMMANDS} only (on a CPU): use fp32, bf16, fp16 or auto",
}
"""Precision words some commands refuse, and what to say instead."""


def refuse_precision(word: str, **values: str) -> None:
    """Refuse `word` (`fp16`: prediction and decoding keep float32's range; `int8`: the
    commands without an int8 path) in any of the options given, naming the option."""
    for name, value in values.items():
        if value == word:
            raise ConfigError(f"--{name.replace('_', '-')} {word} {NOT_OFFERED[word]}")


def check_int8_device(device: torch.device, option: str = "--precision") -> None:
    """int8 runs on CPUs only (torch's dynamic int8 kernels are CPU kernels)."""
    if device.type != "cpu":
        raise ConfigError(
            f"{option} int8 runs on a CPU only, not on {device}: use bf16, fp32 or auto there"
        )


def resolve_device(spec: str = "auto") -> torch.device:
    """`auto`: a GPU when CUDA is there, else the CPU. `auto` and a bare `cuda` mean this
    process's GPU, `cuda:$LOCAL_RANK` (0 outside torchrun), so each rank of a multi-GPU run gets
    its own. Anything else (`cpu`, `cuda:1`, `mps`) is taken as written; asking for CUDA where
    there is none is a ConfigError naming the option, not a failure deep inside torch."""
    import torch

    asked = str(spec).strip() or "auto"
    spec = asked
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        spec = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise ConfigError(f"--device {asked!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {asked}: CUDA is not available here")  # as the user wrote it
    return device


NATIVE_BF16_ENV = "IMG2PROMPT_NATIVE_BF16"
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
"""The instruction sets that decide CPU speed here, as /proc/cpuinfo names them."""


def cpu_flags() -> list[str]:
    """Which of `CPU_FLAGS` this CPU has (Linux; [] elsewhere), for figures to name their
    hardware."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return []
    return [flag for flag in CPU_FLAGS if flag in flags]


CPU_LIMIT_VARIABLES = (
    "ONEDNN_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "ATEN_CPU_CAPABILITY",
    "FBGEMM_ENABLE_INSTRUCTIONS",
)
"""Variables that limit torch's CPU kernels to a lesser CPU's instructions (oneDNN, MKL, ATen's
own, fbgemm's int8 ones): how an AVX2 CPU is emulated (docs/predict.md)."""


def cpu_kernels() -> str:
    """What decides this process's CPU arithmetic, as one line: the instruction sets
    (`cpu_flags`), ATen's dispatch level, the int8 engine and any `CPU_LIMIT_VARIABLES`."""
    import torch

    limits = [f"{k}={os.environ[k]}" for k in CPU_LIMIT_VARIABLES if k in os.environ]
    kernels = [torch.backends.cpu.get_cpu_capability(), int8_engine()]
    return " ".join([*cpu_flags(), *kernels, *limits])


def int8_engine() -> str:
    """The engine whose kernels int8 layers run on (`img2prompt.int8`): oneDNN's where torch
    has them (faster than torch's default here, docs/predict.md), else torch's choice."""
    import torch

    engines = torch.backends.quantized.supported_engines
    return "onednn" if "onednn" in engines else torch.backends.quantized.engine


@functools.lru_cache(maxsize=8)
def native_bf16(device: str) -> bool:
    """Whether `device` computes in bfloat16 natively (there it is 2-4x faster than float32;
    elsewhere it is emulated and slower). `IMG2PROMPT_NATIVE_BF16=0` (or 1) overrides the
    answer: with `ONEDNN_MAX_CPU_ISA=AVX2` it makes a bf16 CPU behave as most users' AVX2 CPUs,
    for measuring what they get."""
    import torch

    forced = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind != "cpu":
        return False
    flags = cpu_flags()  # not Linux: no cheap way to tell, and no flags
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextlib.contextmanager
def precision_context(bf16: bool, device: str) -> Iterator[None]:
    """Inference mode, and with `bf16` autocast to bfloat16 on `device`."""
    import torch

    with torch.inference_mode():
        if not bf16:
            yield
            return
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            yield
