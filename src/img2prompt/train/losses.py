"""Training's loss: `WeightedLoss`, a weighted sum of registered losses (`--loss cosine=1,mnrl=0.2`)
each built with its options (`--loss-options mnrl.scale=20`).

The losses themselves and their registry are `models/losses.py` (re-exported here, their home
before options were checked by the config).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from img2prompt.config import loss_weights
from img2prompt.errors import ConfigError, warn_renamed
from img2prompt.models.losses import (
    LOSSES,
    CosineLoss,
    MNRLoss,
    parse_loss_options,
    register_loss,
)

__all__ = [
    "LOSSES",
    "CosineLoss",
    "MNRLoss",
    "WeightedLoss",
    "parse_loss_options",
    "parse_loss_weights",
    "register_loss",
]


class WeightedLoss(nn.Module):
    """A weighted sum of registered losses, e.g. `cosine=1,mnrl=0.2`, each built with its
    `options` (`mnrl.scale=20` or {"mnrl": {"scale": 20.0}}). `mnrl_scale` is the former way to
    set MNRL's scale, kept one release."""

    def __init__(
        self,
        weights: dict[str, float],
        mnrl_scale: float | None = None,
        *,
        options: str | Mapping[str, Mapping[str, Any]] = "",
    ) -> None:
        super().__init__()
        by_loss = parse_loss_options(options) if isinstance(options, str) else dict(options)
        if mnrl_scale is not None:
            warn_renamed("WeightedLoss(mnrl_scale=...)", "options='mnrl.scale=S'")
            by_loss["mnrl"] = {**by_loss.get("mnrl", {}), "scale": mnrl_scale}
        self.weights = dict(weights)
        self.losses = nn.ModuleDict(
            {
                name: LOSSES.build(name, options=by_loss.get(name, {}), flag="--loss-options")
                for name in weights
            }
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
