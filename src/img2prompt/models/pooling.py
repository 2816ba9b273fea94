"""Pooling: a backbone and pixels -> one (B, D) feature vector per image, as a registry.

`default` is the backbone's own pooled output (CLS for CLIP, the average for conv nets); `gem`
is generalised-mean (GeM) pooling over the backbone's tokens, as the Secu-Layer solution pooled
CLIP patch tokens. Each is a module registered with `@register_pool("name")`; its keyword
parameters with defaults are its options (`p` of `gem`), set by `--pool-options`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from img2prompt.errors import ConfigError
from img2prompt.registry import Registry

if TYPE_CHECKING:
    from img2prompt.models.backbones import Backbone

POOLS: Registry[Callable[..., nn.Module]] = Registry("pooling")
register_pool = POOLS.register


class GeM(nn.Module):
    """mean(clamp(x, eps)^p)^(1/p) over the token axis: p=1 is the mean, large p nears the max.

    Input (B, N, D) tokens; output (B, D). Values below `eps` are clamped, so GeM sees only the
    positive part of each channel (that is the published recipe; p=1 with a plain mean is the
    alternative when negative activations matter).
    """

    def __init__(self, p: float = 2.0, eps: float = 1e-6, learnable: bool = False) -> None:
        super().__init__()
        if p <= 0:
            raise ConfigError(f"GeM p must be > 0, got {p}")
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learnable)
        self.eps = eps

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        p = self.p.to(tokens.dtype)
        return tokens.clamp(min=self.eps).pow(p).mean(dim=1).pow(1.0 / p)


@register_pool("default")
class BackbonePooling(nn.Module):
    """The backbone's own pooled features (no options, no weights)."""

    def forward(self, backbone: Backbone, pixels: torch.Tensor) -> torch.Tensor:
        return backbone.pooled(pixels)


@register_pool("gem")
class GeMPooling(nn.Module):
    """GeM over the backbone's tokens; `p` is the exponent (the Secu-Layer solution used 2, the
    small-data recipe 3). It is not learned: a frozen backbone's features are then computed once."""

    def __init__(self, *, p: float = 2.0) -> None:
        super().__init__()
        self.gem = GeM(p)

    def forward(self, backbone: Backbone, pixels: torch.Tensor) -> torch.Tensor:
        return self.gem(backbone.tokens(pixels))


def build_pool(name: str, options: str | Mapping[str, Any] = "") -> nn.Module:
    """Pooling `name` with its `options` (`p=3` or {"p": 3.0})."""
    return POOLS.build(name, options=options, flag="--pool-options")
