"""A BERT encoder (MiniLM's architecture) in plain torch, read from a transformers folder.

Why by hand: `decode` must start in under 5 s, and importing transformers' BERT code takes ~2.3 s
on a 2-core CPU (it pulls in its model utilities, torch.distributed and scipy) against ~0.1 s for
this file. The forward pass is the textbook one (embeddings, then per layer self-attention and a
GELU feed-forward, each followed by a residual LayerNorm); `tests/test_targets.py` checks its
sentence vectors against sentence-transformers'. Only the configuration MiniLM uses is accepted
(`supports`); anything else goes through transformers.

`forward(..., int8=True)` runs the linear layers with int8 weights (per output channel) and
activations quantized per call (`img2prompt.int8`): the fast path of CPUs without native
bfloat16, for ranking candidates only. The float32 path is untouched by it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from img2prompt.int8 import int8_linear, pack_int8


def supports(folder: Path) -> bool:
    """Whether `folder` holds a BERT this module computes exactly as transformers does."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and (folder / "model.safetensors").is_file()
        and (folder / "tokenizer.json").is_file()
    )


class Bert(torch.nn.Module):
    """Token vectors of a BERT encoder: (batch, length) ids and mask -> (batch, length, hidden)."""

    def __init__(self, folder: Path) -> None:
        from safetensors.torch import load_file

        super().__init__()
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.hidden_size = int(config["hidden_size"])
        weights = load_file(folder / "model.safetensors")
        weights = {k.removeprefix("bert."): v for k, v in weights.items()}
        weights.pop("embeddings.position_ids", None)  # a buffer of 0..511, not a weight
        # Parameters (not plain tensors) so that .to(device) and autocast treat them as
        # transformers' nn.Linear weights; names with dots are not allowed, hence the renaming.
        self.weights = torch.nn.ParameterDict(
            {
                name.replace(".", "/"): torch.nn.Parameter(tensor, requires_grad=False)
                for name, tensor in weights.items()
            }
        )
        self._cast: dict[tuple[torch.dtype, torch.device], dict[str, Tensor]] = {}
        self._packed: dict[str, object] | None = None  # int8 weights, packed on first use

    def forward(self, ids: Tensor, mask: Tensor, int8: bool = False) -> Tensor:
        """Token vectors; `int8` runs the linear layers in int8 (CPU only)."""
        device = ids.device.type
        if int8:
            return self._forward(ids, mask, self.weights, self._int8_linear)
        if torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16:
            # Autocast casts every weight again on every call (it caches the casts of trainable
            # leaves only): running wholly in bfloat16 with the weights cast once is 11-16%
            # faster on decoding's search batches, at cosines within 1e-4 of float32's.
            with torch.autocast(device, enabled=False):
                return self._forward(ids, mask, self._weights_in(torch.bfloat16, ids.device))
        return self._forward(ids, mask, self.weights)

    def _weights_in(self, dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
        """The weights in `dtype` on `device`, cast on first use and kept."""
        key = (dtype, device)
        if key not in self._cast:
            self._cast[key] = {n: w.to(device=device, dtype=dtype) for n, w in self.weights.items()}
        return self._cast[key]

    def _int8_linear(self, x: Tensor, name: str) -> Tensor:
        """The linear layer `name` with int8 weights and dynamically quantized activations."""
        if self._packed is None:
            self._packed = self._pack_int8()
        return int8_linear(x, self._packed[name])

    def _pack_int8(self) -> dict[str, object]:
        """Every encoder linear layer's weight as int8, one scale per output channel
        (`img2prompt.int8.pack_int8`)."""
        packed = {}
        for key, weight in self.weights.items():
            name = key.replace("/", ".").removesuffix(".weight")
            if not name.startswith("encoder.") or weight.ndim != 2:
                continue
            bias = self.weights[f"{key.removesuffix('weight')}bias"]
            packed[name] = pack_int8(weight, bias, per_channel=True)
        return packed

    def _forward(
        self,
        ids: Tensor,
        mask: Tensor,
        weights: Mapping[str, Tensor],
        int8_linear: Callable[[Tensor, str], Tensor] | None = None,
    ) -> Tensor:
        def w(name: str) -> Tensor:
            return weights[name.replace(".", "/")]

        def linear(x: Tensor, name: str) -> Tensor:
            if int8_linear is not None:
                return int8_linear(x, name)
            return F.linear(x, w(f"{name}.weight"), w(f"{name}.bias"))

        def norm(x: Tensor, name: str) -> Tensor:
            return F.layer_norm(x, (x.shape[-1],), w(f"{name}.weight"), w(f"{name}.bias"), self.eps)

        batch, length = ids.shape
        positions = torch.arange(length, device=ids.device)
        x = (
            w("embeddings.word_embeddings.weight")[ids]
            + w("embeddings.position_embeddings.weight")[positions]
            + w("embeddings.token_type_embeddings.weight")[0]
        )
        x = norm(x, "embeddings.LayerNorm")
        keep = mask.bool()[:, None, None, :]  # attend to real tokens only
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q, k, v = (
                linear(x, f"{p}.attention.self.{n}")
                .view(batch, length, self.heads, -1)
                .transpose(1, 2)
                for n in ("query", "key", "value")
            )
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
            attended = attended.transpose(1, 2).reshape(batch, length, -1)
            x = norm(
                x + linear(attended, f"{p}.attention.output.dense"),
                f"{p}.attention.output.LayerNorm",
            )
            hidden = F.gelu(linear(x, f"{p}.intermediate.dense"))
            x = norm(x + linear(hidden, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        return x
