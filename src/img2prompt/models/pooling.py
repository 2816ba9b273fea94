"""Generalised-mean (GeM) pooling over tokens, as the seed-000 solution pooled CLIP patch tokens."""

from __future__ import annotations

import torch
from torch import nn

from img2prompt.errors import ConfigError


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
