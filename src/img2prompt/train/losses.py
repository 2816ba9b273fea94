"""Losses between predicted and target embeddings, as small modules (sentence-transformers style).

Each takes `(predictions, targets)`, each (B, D); predictions need not be normalised. A loss is
registered by name with `@register_loss("name")` on its class; `--loss cosine=1,mnrl=0.2` names
them, and `WeightedLoss` builds them from the registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from img2prompt.config import loss_weights
from img2prompt.errors import ConfigError
from img2prompt.models.registry import Registry

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


class WeightedLoss(nn.Module):
    """A weighted sum of registered losses, e.g. `cosine=1,mnrl=0.2`; `mnrl_scale` is MNRL's."""

    def __init__(self, weights: dict[str, float], mnrl_scale: float = math.sqrt(384)) -> None:
        super().__init__()
        options = {"mnrl": {"scale": mnrl_scale}}
        self.weights = dict(weights)
        self.losses = nn.ModuleDict(
            {name: LOSSES.get(name)(**options.get(name, {})) for name in weights}
        )

    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        predictions, targets = predictions.float(), targets.float()
        return sum(w * self.losses[name](predictions, targets) for name, w in self.weights.items())


def parse_loss_weights(text: str) -> dict[str, float]:
    """`cosine`, `mnrl` or `cosine=1,mnrl=0.5` (registered names) -> {name: weight}; a
    ConfigError otherwise."""
    for name in text.split(","):
        name = name.partition("=")[0].strip()
        if name and name not in LOSSES:
            raise ConfigError(f"--loss: unknown loss {name!r}; use {' / '.join(LOSSES.names())}")
    return loss_weights(text)
