"""Named sets of generation parameters (`--preset`). Kept free of heavy imports: the config and the
CLI's `--help` read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

SD2_768_V = "stabilityai/stable-diffusion-2"

# `--scheduler` names; `default` keeps the scheduler saved with the checkpoint.
SchedulerName = Literal[
    "default", "ddim", "dpm++", "dpm++-karras", "euler", "euler-a", "pndm", "unipc"
]
SCHEDULERS = get_args(SchedulerName)
PresetName = Literal["competition", "fast"]
"""The keys of PRESETS (checked at import below)."""


@dataclass(frozen=True)
class Preset:
    model: str
    """Diffusers pipeline: hub id or local folder."""
    steps: int
    """Denoising steps."""
    guidance: float
    """Classifier-free guidance scale."""
    size: int
    """Generation size in pixels (square)."""
    save_size: int
    """Stored size in pixels (square)."""
    scheduler: str
    """One of SCHEDULERS."""
    about: str
    """One line for --help."""


PRESETS: dict[str, Preset] = {
    # The competition's data description: images made with Stable Diffusion 2.0 (768-v),
    # 768x768, 50 steps, guidance scale 7, a seed per image. Its sample images are stored at
    # 512x512 (checked on ../shared/data/kaggle_sample/images). The sampler is not named there;
    # DDIM is the SD 2 reference script's (scripts/txt2img.py) default.
    "competition": Preset(
        model=SD2_768_V,
        steps=50,
        guidance=7.0,
        size=768,
        save_size=512,
        scheduler="ddim",
        about="the competition's data description: SD 2.0 768-v, 768 px, 50 steps, guidance 7, "
        "a seed per image (DDIM; saved at 512 px like its sample images)",
    ),
    # What top teams did to make millions of images: DPM-Solver++ needs ~20 steps for images
    # close to 50 DDIM steps, so 2.5x fewer UNet passes.
    "fast": Preset(
        model=SD2_768_V,
        steps=20,
        guidance=7.0,
        size=768,
        save_size=512,
        scheduler="dpm++",
        about="SD 2.0 768-v with DPM-Solver++ at 20 steps (~2.5x faster), guidance 7, saved 512",
    ),
}

assert tuple(PRESETS) == get_args(PresetName), "PresetName must name every preset"
