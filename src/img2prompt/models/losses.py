"""The losses between predicted and target embeddings, as small modules (sentence-transformers
style), and their registry.

Each takes `(predictions, targets)`, each (B, D); predictions need not be normalised. A loss is
registered by name with `@register_loss("name")` on its class, whose keyword parameters with
defaults are its options (`--loss-options mnrl.scale=20`). They live beside the heads' and the
poolings' registries, below `config.py`, so that a TrainConfig checks `--loss-options` when it is
built; `train.losses.WeightedLoss` combines them for training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from img2prompt.errors import ConfigError
from img2prompt.models.registry import Registry, format_options, parse_options

LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss")
register_loss = LOSSES.register


@register_loss("cosine")
class CosineLoss(nn.Module):
    """mean(1 - cos(prediction, target)): exactly what the Kaggle metric rewards.

    Use it always, alone or beside MNRL; it pulls each prediction toward its own target."""

    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (1.0 - F.cosine_similarity(predictions, targets, dim=-1)).mean()


@register_loss("mnrl")
class MNRLoss(nn.Module):
    """Multiple-Negatives-Ranking loss: cross-entropy over `scale * cos(prediction_i, target_j)`,
    where target_i is the positive and the batch's other targets are the negatives.

    Use it when batches are large enough to hold hard negatives; it teaches the model to tell
    similar prompts apart, which a plain cosine loss does not. The default scale is sqrt(384),
    as seed 000 scaled unit vectors (sentence-transformers uses 20, nearly the same).
    `symmetric` adds the target -> prediction direction.
    """

    # Both are options (`--loss-options mnrl.scale=20`); they stay positional for older callers.
    def __init__(self, scale: float = math.sqrt(384), symmetric: bool = False) -> None:
        super().__init__()
        self.scale = scale
        self.symmetric = symmetric

    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.scale * F.normalize(predictions, dim=-1) @ F.normalize(targets, dim=-1).T
        labels = torch.arange(len(logits), device=logits.device)
        loss = F.cross_entropy(logits, labels)
        if self.symmetric:
            loss = (loss + F.cross_entropy(logits.T, labels)) / 2
        return loss


def parse_loss_options(text: str) -> dict[str, dict[str, Any]]:
    """`mnrl.scale=20,mnrl.symmetric=true` -> {"mnrl": {"scale": 20.0, "symmetric": True}}, each
    loss and option checked against the registry (a ConfigError names --loss-options). Options
    of a registered loss that --loss does not use are checked and have no effect."""
    flag = "--loss-options"
    grouped: dict[str, dict[str, str]] = {}
    for key, value in parse_options(text, flag).items():
        name, dot, option = key.partition(".")
        if not dot or not option:
            raise ConfigError(f"{flag}: write LOSS.OPTION=VALUE (e.g. mnrl.scale=20), got {key!r}")
        if name not in LOSSES:
            raise ConfigError(f"{flag}: unknown loss {name!r}; use {' / '.join(LOSSES.names())}")
        grouped.setdefault(name, {})[option] = value
    return {name: LOSSES.resolve(name, values, flag) for name, values in grouped.items()}


def loss_options_text(text: str | Mapping[str, Any]) -> str:
    """`--loss-options` checked (`parse_loss_options`) and written as resolved:
    `mnrl.scale=20` -> `mnrl.scale=20.0`. A recipe may give a mapping instead
    (`{mnrl.scale: 20}` or `{mnrl: {scale: 20}}`)."""
    if isinstance(text, Mapping):
        pairs: dict[str, Any] = {}
        for name, values in text.items():
            if isinstance(values, Mapping):
                pairs |= {f"{name}.{key}": value for key, value in values.items()}
            else:
                pairs[name] = values
        text = format_options(pairs)
    parsed = parse_loss_options(text)
    return format_options(
        {f"{name}.{key}": value for name, values in parsed.items() for key, value in values.items()}
    )
