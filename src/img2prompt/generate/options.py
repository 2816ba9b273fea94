"""The options of `generate` (what `generate.run.generate` reads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from img2prompt.device import Device, Precision, refuse_precision
from img2prompt.errors import ConfigError
from img2prompt.fields import at_least, check_choices
from img2prompt.generate.presets import PRESETS, PresetName, SchedulerName


@dataclass
class GenerateConfig:
    prompts: Path
    """Prompts table: `data prepare`'s prompts.parquet (or any Parquet table with a `prompt`
    column, and `id`)."""
    out: Path
    """Output folder: shards/NNNNN/*.png, images.parquet, generate.json."""
    preset: PresetName = "competition"
    """Defaults for model, steps, guidance, size, save size and scheduler. `competition`: the
    competition's data (SD 2.0 768-v, 768 px, 50 DDIM steps, guidance 7, saved at 512 px);
    `fast`: DPM-Solver++ at 20 steps (a draft in far less time)."""
    model: str | None = None
    """Diffusers SD 1.x/2.x pipeline: hub id or local folder (default: the preset's,
    stabilityai/stable-diffusion-2)."""
    images_per_prompt: int = 1
    """Images per prompt, each with its own seed."""
    seed: int = 0
    """Base seed; image k of prompt p gets a seed hashed from (seed, prompt id, k)."""
    steps: int | None = None
    """Denoising steps (default: the preset's)."""
    guidance: float | None = None
    """Classifier-free guidance scale (default: the preset's)."""
    size: int | None = None
    """Generation size in pixels, a multiple of 8 (default: the preset's)."""
    save_size: int | None = None
    """Stored size in pixels: images are resized (Lanczos) before saving (default: the preset's)."""
    scheduler: SchedulerName | None = None
    """Sampler (default: the preset's); `default` keeps the checkpoint's own."""
    negative_prompt: str = ""
    """Negative prompt for every image (empty: none)."""
    batch_size: int = 4
    """Images per pipeline call. Part of a run's identity: on CPU and GPU a batch's pixels differ
    from single images' in the last float bits, so resuming with another size is refused."""
    precision: Precision = "auto"
    """`auto` (fp16 on CUDA, fp32 on CPU), `fp32`, `bf16`, `fp16`."""
    shard_size: int = 1000
    """Images per shard folder; a shard is the unit of resuming and of splitting across ranks."""
    limit: int | None = None
    """Use only the first N prompts."""
    device: Device = "auto"
    """`auto` (cuda:LOCAL_RANK when CUDA is present, else CPU), `cpu`, `cuda`, `cuda:1`..."""
    safety_checker: bool = False
    """Run the checkpoint's safety checker (it blacks out flagged images; off by default)."""

    def __post_init__(self) -> None:
        check_choices(self)  # before the preset fills the settings left unset
        refuse_precision("int8", precision=self.precision)
        preset = PRESETS[self.preset]
        for name in ("model", "steps", "guidance", "size", "save_size", "scheduler"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(preset, name))
        self.prompts, self.out = Path(self.prompts), Path(self.out)
        if not self.model:
            raise ConfigError("--model must name a hub id or a folder")
        at_least(1, images_per_prompt=self.images_per_prompt, steps=self.steps)
        at_least(1, batch_size=self.batch_size, shard_size=self.shard_size, limit=self.limit)
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"--seed must be in [0, 2**63), got {self.seed}")
        if self.guidance < 0:
            raise ConfigError(f"--guidance must be >= 0, got {self.guidance}")
        if self.size < 8 or self.size % 8:
            raise ConfigError(f"--size must be a positive multiple of 8, got {self.size}")
        at_least(1, save_size=self.save_size)
