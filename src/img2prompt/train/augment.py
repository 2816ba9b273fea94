"""MixGen (Hao et al., 2023): mix images, concatenate their prompts, embed the concatenation.

This is the faithful version: the new target is the target encoder's embedding of the joined
text, not an average of two target vectors (MiniLM is not linear, and the metric embeds text).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch


def mixgen(
    pixels: torch.Tensor,
    prompts: list[str],
    targets: torch.Tensor,
    share: float,
    encode: Callable[[list[str]], np.ndarray],
    generator: torch.Generator,
    *,
    lam: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Replace the first ceil(share * B) samples by mixes with a random partner from the batch.

    Returns new pixels, targets and prompts (inputs are not modified)."""
    count = min(len(prompts), math.ceil(share * len(prompts)))
    if count == 0 or len(prompts) < 2:
        return pixels, targets, prompts
    partners = torch.randperm(len(prompts), generator=generator)[:count].tolist()
    pixels, targets, prompts = pixels.clone(), targets.clone(), list(prompts)
    mixed_prompts = [f"{prompts[i]} {prompts[j]}" for i, j in enumerate(partners)]
    for i, j in enumerate(partners):
        pixels[i] = lam * pixels[i] + (1 - lam) * pixels[j]
    new_targets = torch.from_numpy(encode(mixed_prompts)).to(targets.device, targets.dtype)
    targets[:count] = new_targets
    prompts[:count] = mixed_prompts
    return pixels, targets, prompts
