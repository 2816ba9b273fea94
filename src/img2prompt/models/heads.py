"""Heads: backbone features -> the 384-d target space.

Each head is one factory `(in_dim, out_dim, *, options...) -> nn.Module` registered with
`@register_head("name")`; its keyword parameters with defaults are its options (`hidden` of
`mlp`), set by `--head-options`. `ModelConfig.head` names it and `build_head` builds it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from img2prompt.errors import ConfigError
from img2prompt.registry import Registry

HeadFactory = Callable[..., nn.Module]
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
def linear_head(in_dim: int, out_dim: int) -> nn.Module:
    return LinearHead(in_dim, out_dim)


@register_head("mlp")
def mlp_head(in_dim: int, out_dim: int, *, hidden: int = 16 * 1024) -> nn.Module:
    """`hidden`: the width of the hidden layer (the first-place text: 16 x 1024)."""
    if hidden < 1:
        raise ConfigError(f"head 'mlp': option 'hidden' must be >= 1, got {hidden}")
    return MLPHead(in_dim, out_dim, hidden)


NOT_TRAINABLE = frozenset({"class-mixture"})
"""Heads whose weights are computed, not learned (the packaged default model's zero-shot head)."""


@register_head("class-mixture")
def class_mixture_head(in_dim: int, out_dim: int) -> nn.Module:
    return ClassMixtureHead(in_dim, out_dim)  # the backbone's features are class logits


def build_head(
    kind: str, in_dim: int, out_dim: int, *, options: str | Mapping[str, Any] = ""
) -> nn.Module:
    """Head `kind` from `in_dim` features to `out_dim`, with its `options` (`hidden=4096` or
    {"hidden": 4096})."""
    return HEADS.build(kind, in_dim, out_dim, options=options, flag="--head-options")
