"""Heads: backbone features -> the 384-d target space.

Each head is one factory `(in_dim, out_dim, hidden) -> nn.Module` registered with
`@register_head("name")`; `ModelConfig.head` names it and `build_head` builds it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from img2prompt.models.registry import Registry

HeadFactory = Callable[[int, int, int], nn.Module]
HEADS: Registry[HeadFactory] = Registry("head")
register_head = HEADS.register


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


@register_head("linear")
def linear_head(in_dim: int, out_dim: int, hidden: int) -> nn.Module:
    return LinearHead(in_dim, out_dim)


@register_head("mlp")
def mlp_head(in_dim: int, out_dim: int, hidden: int) -> nn.Module:
    return MLPHead(in_dim, out_dim, hidden)


@register_head("class-mixture")
def class_mixture_head(in_dim: int, out_dim: int, hidden: int) -> nn.Module:
    return ClassMixtureHead(in_dim, out_dim)  # the backbone's features are class logits


def build_head(kind: str, in_dim: int, out_dim: int, hidden: int) -> nn.Module:
    return HEADS.get(kind)(in_dim, out_dim, hidden)


def head_names() -> tuple[str, ...]:
    return HEADS.names()
