"""Heads: backbone features -> the 384-d target space."""

from __future__ import annotations

from typing import get_args

import torch
from torch import nn

from img2prompt.config import HeadType

HEAD_TYPES = get_args(HeadType)


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


class ClassMixtureHead(nn.Module):
    """Zero-shot through a classifier: `softmax(logits / temperature) @ class_embeddings + alpha *
    prior`, from (B, n_classes) logits to (B, out_dim), unnormalised.

    With `class_embeddings` the target-space vectors of phrases naming each class and `prior` the
    mean prompt vector, this is the expected prompt vector under the classifier's own class
    probabilities (temperature 1 keeps them as calibrated). A vague prediction averages many class
    vectors into a shorter one, so the prior then weighs more by itself. Every value is a
    parameter: the default model ships them built, and a training run may fine-tune them.
    """

    def __init__(self, n_classes: int, out_dim: int) -> None:
        super().__init__()
        self.class_embeddings = nn.Parameter(torch.randn(n_classes, out_dim) / out_dim**0.5)
        self.prior = nn.Parameter(torch.randn(out_dim) / out_dim**0.5)
        self.temperature = nn.Parameter(torch.ones(()))
        self.alpha = nn.Parameter(torch.ones(()))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(logits / self.temperature.clamp_min(1e-4), dim=-1)
        return weights @ self.class_embeddings + self.alpha * self.prior


def build_head(kind: str, in_dim: int, out_dim: int, hidden: int) -> nn.Module:
    if kind == "linear":
        return LinearHead(in_dim, out_dim)
    if kind == "mlp":
        return MLPHead(in_dim, out_dim, hidden)
    if kind == "class-mixture":
        return ClassMixtureHead(in_dim, out_dim)
    raise ValueError(f"head must be one of {HEAD_TYPES}, got {kind!r}")
