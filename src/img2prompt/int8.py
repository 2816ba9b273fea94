"""int8 linear layers: the fast path of CPUs without native bfloat16 (`device.Precision`).

Weights are int8 (one scale per layer, or per output channel); activations are quantized per
call (torch's dynamic int8 kernels, oneDNN's where torch has them). For prediction's networks
(`int8_linears`) and MiniLM's encoder (`targets/bert.py`); inference only.

By hand rather than `torch.ao.quantization.quantize_dynamic`: its modules pack each weight three
times (twice as placeholders of the same size) and its copy clones every float32 weight first:
that cost a ViT-B/32 job 0.6 s of start on a 2-core CPU.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from img2prompt.device import int8_engine


def _quiet_quantization_warnings() -> None:
    """torch marks its quantized tensors as deprecated, which int8 uses on purpose: the
    warning is ignored for good. Not with `warnings.catch_warnings`, whose save and restore of
    the process-wide filters races with other threads (the image decoders': the warning then
    reached predict's users). Attributed to this module, not to torch: matched by its words."""
    warnings.filterwarnings("ignore", message=r"torch\.quantize_per_(tensor|channel)")


def pack_int8(weight: torch.Tensor, bias: torch.Tensor | None, per_channel: bool) -> object:
    """A linear layer's weight as int8, packed for torch's dynamic int8 kernels with its
    float32 bias: one scale per output channel, or one for the whole weight (4x faster to pack:
    torch's per-channel quantize and pack took 0.6 s for a ViT-B/32's 73 layers on 2 cores)."""
    _quiet_quantization_warnings()
    weight = weight.detach().float().cpu()
    if per_channel:
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-8).double()
        zeros = torch.zeros(len(scales), dtype=torch.long)
        quantized = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
    else:
        scale = max(float(weight.abs().max()) / 127, 1e-8)
        quantized = torch.quantize_per_tensor(weight, scale, 0, torch.qint8)
    bias = None if bias is None else bias.detach().float().cpu()
    with _packing_engine():
        return torch.ops.quantized.linear_prepack(quantized, bias)


@contextlib.contextmanager
def _packing_engine() -> Iterator[None]:
    """Packing under `device.int8_engine()`: oneDNN's kernels ran a ViT-B/32's int8 forward
    at 32-36 img/s against 28-30 under torch's default (`x86`, which picks fbgemm here), and
    packed in 0.08-0.14 s against 0.24 s, at the same cosine (AVX2, 2 cores). A packed weight
    keeps its engine, so only packing switches it (torch's choice is process-wide)."""
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = int8_engine()
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


def int8_linear(x: torch.Tensor, packed: object) -> torch.Tensor:
    """x @ weight.T + bias with a `pack_int8` weight. x is quantized per call to 7 bits
    (`reduce_range`, as torch's own dynamic modules do), so that AVX2's 16-bit multiply-add
    cannot saturate."""
    return torch.ops.quantized.linear_dynamic(x, packed, True)


class Int8Linear(nn.Module):
    """An nn.Linear's int8 twin (one weight scale, as torch's own dynamic modules have);
    inference only."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = pack_int8(linear.weight, linear.bias, per_channel=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return int8_linear(x, self.packed)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def int8_linears(module: nn.Module) -> nn.Module:
    """A copy of `module` whose nn.Linear layers are `Int8Linear`s; the other layers
    (convolutions, norms) are copied as they are, in float32."""
    # Given each Linear's replacement, deepcopy never copies their float32 weights.
    replacements = {
        id(layer): Int8Linear(layer) for layer in module.modules() if type(layer) is nn.Linear
    }
    return copy.deepcopy(module, memo=replacements)
