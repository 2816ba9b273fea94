"""Stable Diffusion with diffusers: load a pipeline (hub id or local folder), pick its scheduler,
device and precision, count prompt tokens, and render a batch with one generator per image."""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from img2prompt.errors import ConfigError

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline
    from PIL import Image

# --scheduler name -> (diffusers class, options over the checkpoint's scheduler config)
SCHEDULER_CLASSES: dict[str, tuple[str, dict]] = {
    "ddim": ("DDIMScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++-karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),  # PLMS, as SD 1.x ships it
    "unipc": ("UniPCMultistepScheduler", {}),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """fp16 on CUDA (SD's usual inference precision, half the memory), fp32 elsewhere."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def locate_model(model: str) -> str:
    """A local pipeline folder (resolved) or a hub id; anything else is a clear error."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ConfigError(
                f"--model {model}: the folder has no model_index.json, so it is not a diffusers "
                "pipeline folder (a single .ckpt/.safetensors file can be converted with "
                "diffusers' StableDiffusionPipeline.from_single_file(...).save_pretrained(DIR))"
            )
        return str(path.resolve())
    if path.exists():
        raise ConfigError(f"--model {model} is a file; give a diffusers pipeline folder or hub id")
    if _HUB_ID.match(model) and not model.startswith((".", "~")):
        return model
    raise ConfigError(f"--model {model}: no such folder")


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """diffusers and transformers log progress bars and per-batch truncation warnings; the
    command reports truncation itself."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    levels = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(levels[0])
        transformers_logging.set_verbosity(levels[1])
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()


def load_pipeline(
    model: str,
    scheduler: str,
    device: torch.device,
    dtype: torch.dtype,
    safety_checker: bool = False,
) -> StableDiffusionPipeline:
    """Any SD 1.x/2.x diffusers checkpoint (v-prediction included: the scheduler config keeps
    the checkpoint's prediction type). Attention is torch's SDPA, diffusers' default on torch 2."""
    import diffusers
    from diffusers import StableDiffusionPipeline

    spec = locate_model(model)
    options: dict = {"torch_dtype": dtype}
    if not safety_checker:
        options.update(safety_checker=None, requires_safety_checker=False)
    with _quiet_libraries(), warnings.catch_warnings():
        # newer diffusers call it `dtype`; `torch_dtype` works from 0.27 on
        warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
        try:
            pipe = StableDiffusionPipeline.from_pretrained(spec, **options)
        except (OSError, ValueError, TypeError, KeyError) as e:
            where = "folder" if Path(spec).is_dir() else "hub id (not in the local cache?)"
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"--model {model}: cannot load this {where}: {first_line}") from e
    if safety_checker and pipe.safety_checker is None:
        raise ConfigError(f"--safety-checker: {model} has no safety checker")
    if scheduler != "default":
        class_name, overrides = SCHEDULER_CLASSES[scheduler]
        scheduler_class = getattr(diffusers, class_name)
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config, **overrides)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def count_tokens(pipe: StableDiffusionPipeline, prompts: Sequence[str]) -> list[int]:
    """Tokens of each prompt, start and end tokens included; the text encoder sees at most
    `pipe.tokenizer.model_max_length` (77) of them."""
    if not prompts:
        return []
    with _quiet_libraries():
        ids = pipe.tokenizer(list(prompts), truncation=False)["input_ids"]
    return [len(row) for row in ids]


def render(
    pipe: StableDiffusionPipeline,
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    steps: int,
    guidance: float,
    size: int,
    negative_prompt: str = "",
) -> list[Image.Image]:
    """One image per (prompt, seed). Each image has its own CPU generator, so its starting noise
    depends on its seed alone (not on the batch or the device). With the safety checker on, a
    flagged image comes back black."""
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    negative = [negative_prompt] * len(prompts) if negative_prompt else None
    with _quiet_libraries(), torch.inference_mode():
        result = pipe(
            prompt=list(prompts),
            negative_prompt=negative,
            height=size,
            width=size,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generators,
            output_type="pil",
        )
    return list(result.images)
