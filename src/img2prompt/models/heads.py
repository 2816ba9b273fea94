"""Heads: backbone features -> the 384-d target space."""

from __future__ import annotations

from torch import nn

HEAD_TYPES = ("linear", "mlp")


class LinearHead(nn.Sequential):
    """One linear map, Xavier-initialised (the seed-001 head: CLIP 1024 -> MiniLM 384)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        linear = nn.Linear(in_dim, out_dim)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        super().__init__(linear)


class MLPHead(nn.Sequential):
    """Linear -> BatchNorm -> ReLU -> Linear, the first-place head (wide hidden layer)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )


def build_head(kind: str, in_dim: int, out_dim: int, hidden: int) -> nn.Module:
    if kind == "linear":
        return LinearHead(in_dim, out_dim)
    if kind == "mlp":
        return MLPHead(in_dim, out_dim, hidden)
    raise ValueError(f"head must be one of {HEAD_TYPES}, got {kind!r}")
