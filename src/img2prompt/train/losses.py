"""Training's losses between predicted and target embeddings, their registry, and the one parser
of `--loss` / `--loss-options`.

Each loss is a small module (sentence-transformers style) taking `(predictions, targets)`, each
(B, D); predictions need not be normalised. A loss is registered by name with
`@register_loss("name")` on its class, whose keyword parameters with defaults are its options
(`--loss-options mnrl.scale=20`). `LossSpec.parse` reads both flags once, when the TrainConfig is
made; `LossSpec.build` makes the `WeightedLoss` that training runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from img2prompt.errors import ConfigError
from img2prompt.registry import Registry, format_options, parse_options

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
    similar prompts apart, which a plain cosine loss does not. The default scale is sqrt(384)
    (the Secu-Layer solution's; sentence-transformers uses 20, nearly the same).
    `symmetric` adds the target -> prediction direction.
    """

    def __init__(self, *, scale: float = math.sqrt(384), symmetric: bool = False) -> None:
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
    """A weighted sum of registered losses (`cosine=1,mnrl=0.2`), each built with its options."""

    def __init__(
        self, weights: Mapping[str, float], options: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        super().__init__()
        self.weights = dict(weights)
        options = options or {}
        self.losses = nn.ModuleDict(
            {name: LOSSES.build(name, options=options.get(name, {})) for name in self.weights}
        )

    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        predictions, targets = predictions.float(), targets.float()
        return sum(w * self.losses[name](predictions, targets) for name, w in self.weights.items())


@dataclass(frozen=True)
class LossSpec:
    """`--loss` and `--loss-options` read: which losses, their weights and their options."""

    weights: dict[str, float]
    """{registered loss: weight >= 0}, one weight positive."""
    options: dict[str, dict[str, Any]]
    """{loss: {option: value}}, each converted to the type the loss declares."""

    @classmethod
    def parse(cls, loss: str, options: str | Mapping[str, Any] = "") -> LossSpec:
        """`cosine`, `mnrl` or `cosine=1,mnrl=0.5`, and `mnrl.scale=20,mnrl.symmetric=true` (a
        recipe may give a mapping: `{mnrl: {scale: 20}}`). A ConfigError names the flag."""
        return cls(_parse_weights(loss), _parse_options(_options_text(options)))

    @property
    def loss_text(self) -> str:
        return format_options(self.weights)

    @property
    def options_text(self) -> str:
        return format_options(
            {f"{name}.{k}": v for name, values in self.options.items() for k, v in values.items()}
        )

    def build(self) -> WeightedLoss:
        return WeightedLoss(self.weights, self.options)


def _parse_weights(text: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = (s.strip() for s in part.partition("="))
        if name not in LOSSES:
            raise ConfigError(f"--loss: unknown loss {name!r}; use {' / '.join(LOSSES.names())}")
        try:
            weights[name] = float(weight) if weight else 1.0
        except ValueError:
            raise ConfigError(f"--loss: weight of {name} is not a number: {weight!r}") from None
        if not weights[name] >= 0:
            raise ConfigError(f"--loss: weight of {name} must be >= 0")
    if not any(weights.values()):
        raise ConfigError(f"--loss: give at least one loss with a positive weight, got {text!r}")
    return weights


def _options_text(options: str | Mapping[str, Any]) -> str:
    """A recipe's mapping (`{mnrl.scale: 20}` or `{mnrl: {scale: 20}}`) as `--loss-options` text."""
    if isinstance(options, str):
        return options
    pairs: dict[str, Any] = {}
    for name, values in options.items():
        if isinstance(values, Mapping):
            pairs |= {f"{name}.{key}": value for key, value in values.items()}
        else:
            pairs[name] = values
    return format_options(pairs)


def _parse_options(text: str) -> dict[str, dict[str, Any]]:
    """Options of a registered loss that --loss does not use are checked and have no effect."""
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
