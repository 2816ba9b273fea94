"""`CaptionerModel`: a vision-language captioner loaded as a model (a `PromptModel` of kind
`captioner`).

Any transformers image-text-to-text checkpoint (Florence-2 and its PromptGen fine-tunes, BLIP,
BLIP-2, SmolVLM, Qwen-VL, LLaVA, PaliGemma...) writes N candidate prompts per image; the model's
embedding is MiniLM's vector of its best candidate, so `predict CAPTIONER` writes competition
embeddings and `describe --judge MODEL` reranks the candidates in MiniLM space.

Folder layout (`captioner make` writes it, `make_captioner`):
- `model.json`: format, `"kind": "captioner"`, `config` (`CaptionerConfig`: the task prompt, its
  style, candidates, generation settings, image size), preprocessing, and the checkpoint's
  record (source, architecture, parameters);
- `captioner/`: the checkpoint as `save_pretrained` wrote it (weights, processor, tokenizer).
  Copied in, as an index copies its CLIP: the folder loads offline, `push` uploads it whole and
  `hf:owner/repo` then loads it like any model.

The task prompt comes from `FAMILIES`, keyed by the checkpoint config's `model_type`, unless
overridden; the choice is recorded in model.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from img2prompt.data.transforms import PreprocessConfig
from img2prompt.errors import ConfigError, InputError
from img2prompt.models.options import CaptionerMakeConfig, GenerationOptions
from img2prompt.models.protocol import CAPTIONER_KIND, PromptModel, register_model_kind
from img2prompt.targets.encoder import DEFAULT_ENCODER

KIND = CAPTIONER_KIND
CHECKPOINT_FOLDER = "captioner"
INSTRUCTION = "Write a Stable Diffusion prompt for this image."
"""What chat VLMs are asked (their family's task prompt)."""
DEFAULT_SIDE = 384
"""The image side when neither the family nor the processor says one."""

PromptStyle = Literal["task", "none", "chat"]
"""`task`: the prompt is the processor's text as written (Florence-2's task tokens); `none`: no
text (BLIP's plain captioning); `chat`: one user turn (image + prompt) through the processor's
chat template."""


@dataclass(frozen=True)
class Family:
    """What a family of captioners is asked, and how."""

    prompt: str
    style: PromptStyle
    image_size: int | None = None
    """The square side to feed it; None: its processor's."""


FAMILIES: dict[str, Family] = {
    "florence2": Family("<MORE_DETAILED_CAPTION>", "task"),
    "blip": Family("", "none"),
    "blip-2": Family("", "none"),
    "git": Family("", "none"),
    "instructblip": Family(INSTRUCTION, "task"),
    "paligemma": Family("<image>caption en", "task"),
    "llava": Family(INSTRUCTION, "chat"),
    "llava_next": Family(INSTRUCTION, "chat"),
    "llava_onevision": Family(INSTRUCTION, "chat"),
    "idefics3": Family(INSTRUCTION, "chat"),
    "smolvlm": Family(INSTRUCTION, "chat"),
    "gemma3": Family(INSTRUCTION, "chat"),
    "mistral3": Family(INSTRUCTION, "chat"),
    "qwen2_vl": Family(INSTRUCTION, "chat", 448),
    "qwen2_5_vl": Family(INSTRUCTION, "chat", 448),
    "qwen3_vl": Family(INSTRUCTION, "chat", 448),
}
"""Task prompts by the checkpoint config's `model_type`. Other types are asked `INSTRUCTION`
through their chat template when their processor has one, else as plain text."""


@dataclass(kw_only=True)
class CaptionerConfig(GenerationOptions):
    """model.json's `config` of a captioner: its generation settings and what it was made of."""

    source: str
    """The checkpoint it was made from (its weights are in FOLDER/captioner)."""
    model_type: str
    """The checkpoint config's `model_type` (the `FAMILIES` key)."""
    prompt_style: PromptStyle
    image_size: int
    out_dim: int = 384
    """Size of the predicted vector (MiniLM's)."""
    target_encoder: str = DEFAULT_ENCODER
    """The sentence encoder that embeds the best candidate."""


@dataclass
class Captions:
    """One image's candidate prompts, the captioner's best first."""

    texts: list[str]
    scores: list[float]
    """The captioner's own score of each: mean log-probability per generated token."""


def generation_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 on a GPU that computes it (fp16 on older ones), fp32 on the CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class CaptionerBackbone(nn.Module):
    """The checkpoint and its processor, with what the predictor asks of a backbone."""

    convolutional = False  # the engine keeps the contiguous layout
    tokens_per_image = 0  # never compiled (`--compile auto`); auto batch size as a CNN's

    def __init__(self, vlm: nn.Module, processor: Any, preprocess: PreprocessConfig) -> None:
        super().__init__()
        self.vlm = vlm
        self.processor = processor
        self.preprocess = preprocess
        self.spec = ""

    def set_attention(self, name: str) -> None:
        """Generation keeps the checkpoint's own attention kernel."""


class CaptionNetwork(nn.Module):
    """A captioner's `network`: pixels -> MiniLM vectors of the best candidates. It holds no
    weights of its own, so the engine's casts and copies leave the captioner (loaded in its
    generation dtype) as it is, and compiling it leaves generation eager."""

    def __init__(self, owner: CaptionerModel) -> None:
        super().__init__()
        self._owner = (owner,)  # a tuple: not a submodule

    @property
    def backbone(self) -> CaptionerBackbone:
        return self._owner[0].backbone

    def __deepcopy__(self, memo: dict) -> CaptionNetwork:
        return self

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # never compiled (own precision)
        return self._owner[0](pixels)


class CaptionerModel(PromptModel):
    """Pixels -> N candidate prompts per image (`caption`) -> MiniLM's vector of the best one.
    `preprocess` gives the captioner's square at [0, 1] (mean 0, std 1): `caption` turns it back
    into uint8 images for the checkpoint's own processor, so every family is fed as it expects."""

    kind = KIND
    sets_own_precision = True  # generation runs in the dtype it was loaded in

    def __init__(self, cfg: CaptionerConfig, backbone: CaptionerBackbone) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        self.manifest: dict[str, Any] = {}
        self._network = CaptionNetwork(self)
        self._text: str | None = None

    @property
    def network(self) -> nn.Module:
        return self._network

    @property
    def summary(self) -> str:
        cfg = self.cfg
        return f"{cfg.model_type} captioner from {cfg.source}, {cfg.candidates} candidates"

    @property
    def device(self) -> torch.device:
        return next(self.backbone.vlm.parameters()).device

    def encoder(self) -> Any:
        """The target encoder (shared per device by `load_encoder`)."""
        from img2prompt.targets.encoder import load_encoder

        return load_encoder(self.cfg.target_encoder, str(self.device))

    @torch.inference_mode()
    def caption(self, pixels: torch.Tensor) -> list[Captions]:
        """(B, 3, S, S) pixels at [0, 1] -> each image's candidates, best first (deduplicated).
        Sampling is seeded per call from `cfg.seed`: the same batch gives the same candidates."""
        images = list(to_uint8(pixels))
        inputs = self._inputs(images)
        vlm, cfg = self.backbone.vlm, self.cfg
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.seed)
            out = vlm.generate(**inputs, **generation_kwargs(cfg))
        steps = len(out.scores)
        generated = out.sequences[:, -steps:] if steps else out.sequences[:, :0]
        texts = self.backbone.processor.batch_decode(generated, skip_special_tokens=True)
        scores = sequence_scores(vlm, out, generated, self._pad_id())
        return group_candidates(texts, scores, len(images))

    def embed(self, captions: list[Captions]) -> np.ndarray:
        """(N, 384) unit MiniLM vectors of each image's best candidate."""
        return self.encoder().encode([c.texts[0] for c in captions])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) pixels -> (B, 384) MiniLM vectors of the best candidates."""
        vectors = self.embed(self.caption(pixels))
        return torch.from_numpy(vectors).to(pixels.device)

    def _inputs(self, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """The processor's tensors for a batch, on the device, floats in the model's dtype."""
        processor = self.backbone.processor
        if self.cfg.prompt_style == "none":
            batch = processor(images=images, return_tensors="pt")
        else:
            text = [self._prompt_text()] * len(images)
            batch = processor(images=images, text=text, return_tensors="pt", padding=True)
        dtype = next(self.backbone.vlm.parameters()).dtype
        return {
            key: value.to(self.device, dtype=dtype if value.is_floating_point() else None)
            for key, value in batch.items()
            if isinstance(value, torch.Tensor)
        }

    def _prompt_text(self) -> str:
        """The task prompt as the processor takes it (through the chat template for chat)."""
        if self._text is None:
            self._text = self.cfg.task_prompt
            if self.cfg.prompt_style == "chat":
                turn = [{"type": "image"}, {"type": "text", "text": self.cfg.task_prompt}]
                self._text = self.backbone.processor.apply_chat_template(
                    [{"role": "user", "content": turn}], add_generation_prompt=True, tokenize=False
                )
        return self._text

    def _pad_id(self) -> int | None:
        tokenizer = getattr(self.backbone.processor, "tokenizer", None)
        return getattr(tokenizer, "pad_token_id", None)


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) pixels at [0, 1] (any dtype, any device) -> (B, H, W, 3) uint8."""
    scaled = (pixels.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def generation_kwargs(cfg: GenerationOptions) -> dict[str, Any]:
    """`generate`'s arguments: N beams (greedy for one) or N seeded samples."""
    common: dict[str, Any] = {
        "max_new_tokens": cfg.max_new_tokens,
        "num_return_sequences": cfg.candidates,
        "return_dict_in_generate": True,
        "output_scores": True,
    }
    if cfg.sampling:
        sampling = {"temperature": cfg.temperature, "top_p": cfg.top_p}
        return {**common, "do_sample": True, "num_beams": 1, **sampling}
    return {**common, "do_sample": False, "num_beams": cfg.candidates}


def sequence_scores(vlm: Any, out: Any, generated: torch.Tensor, pad_id: int | None) -> list[float]:
    """Mean log-probability per generated token of each sequence: beam search's own
    (length-normalised) score, else the sampled or greedy tokens' log-probabilities."""
    if getattr(out, "sequences_scores", None) is not None:
        return [float(s) for s in out.sequences_scores]
    if generated.shape[1] == 0:
        return [0.0] * len(generated)
    steps = vlm.compute_transition_scores(generated, out.scores, normalize_logits=True)
    keep = torch.isfinite(steps)
    if pad_id is not None:
        keep &= generated != pad_id
    total = torch.where(keep, steps, torch.zeros_like(steps)).sum(dim=1)
    return (total / keep.sum(dim=1).clamp(min=1)).float().cpu().tolist()


def group_candidates(texts: list[str], scores: list[float], images: int) -> list[Captions]:
    """Flat (image-major) sequences -> each image's distinct texts, best score first."""
    per_image = len(texts) // images
    grouped = []
    for i in range(images):
        best: dict[str, float] = {}
        for text, score in zip(
            texts[i * per_image : (i + 1) * per_image],
            scores[i * per_image : (i + 1) * per_image],
            strict=True,
        ):
            text = " ".join(text.split())
            best[text] = max(score, best.get(text, -np.inf))
        ranked = sorted(best.items(), key=lambda item: -item[1])
        grouped.append(Captions([t for t, _ in ranked], [s for _, s in ranked]))
    return grouped


# --- folders ------------------------------------------------------------------------------------


def _load_pretrained(location: str, revision: str | None, dtype: Any) -> tuple[Any, nn.Module]:
    """(processor, model) of a transformers image-text-to-text checkpoint."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(location, revision=revision)
        vlm = AutoModelForImageTextToText.from_pretrained(location, revision=revision, dtype=dtype)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        why = f"not a transformers image-text-to-text model: {first}"
        raise InputError(location, why) from None
    return processor, vlm.eval()


def _source_location(source: str) -> tuple[str, str | None]:
    """`hf:owner/repo[@revision]`, a checkpoint folder or a captioner folder -> what
    `from_pretrained` takes, and the revision."""
    from img2prompt.models.hub import HUB_PREFIX, parse_hub_spec

    if source.startswith(HUB_PREFIX):
        return parse_hub_spec(source)
    folder = Path(source)
    if not folder.is_dir():
        raise InputError(source, "no such folder (a hub checkpoint is spelled hf:owner/repo)")
    if (folder / "model.json").is_file() and (folder / CHECKPOINT_FOLDER).is_dir():
        folder = folder / CHECKPOINT_FOLDER  # a captioner folder, remade with other settings
    return str(folder), None


def processor_side(processor: Any) -> int:
    """The square side the checkpoint's image processor resizes to."""
    image = getattr(processor, "image_processor", processor)
    for name in ("crop_size", "size"):
        size = getattr(image, name, None)
        if size is None:
            continue
        if isinstance(size, int):
            return size
        get = size.get if hasattr(size, "get") else lambda key, s=size: getattr(s, key, None)
        side = get("height") or get("shortest_edge")
        if side and side <= 2048:
            return int(side)
    return DEFAULT_SIDE


def captioner_config(cfg: CaptionerMakeConfig, model_type: str, processor: Any) -> CaptionerConfig:
    """The settings a made captioner records: the family's prompt unless one was given."""
    family = FAMILIES.get(model_type)
    if family is None:
        style = "chat" if getattr(processor, "chat_template", None) else "task"
        family = Family(INSTRUCTION, style)
    generation = asdict(cfg.generation)
    style = family.style
    if generation["task_prompt"] and style == "none":
        style = "task"  # BLIP takes a given prompt as the caption's beginning
    generation["task_prompt"] = generation["task_prompt"] or family.prompt
    side = cfg.image_size or family.image_size or processor_side(processor)
    return CaptionerConfig(
        **generation,
        source=cfg.source,
        model_type=model_type,
        prompt_style=style,
        image_size=side,
    )


def captioner_preprocess(side: int) -> PreprocessConfig:
    """The captioner's square at [0, 1]: its own processor normalises."""
    return PreprocessConfig(side, side, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bicubic")


def make_captioner(cfg: CaptionerMakeConfig) -> tuple[Path, CaptionerConfig]:
    """`captioner make`: a captioner folder at `cfg.out` from a checkpoint (written atomically:
    a crash leaves the old folder or the new one)."""
    from img2prompt.io import atomic_dir
    from img2prompt.models.model import write_model_manifest

    location, revision = _source_location(cfg.source)
    processor, vlm = _load_pretrained(location, revision, "auto")
    model_type = str(vlm.config.model_type)
    settings = captioner_config(cfg, model_type, processor)
    with atomic_dir(cfg.out) as tmp:
        vlm.save_pretrained(tmp / CHECKPOINT_FOLDER)
        processor.save_pretrained(tmp / CHECKPOINT_FOLDER)
        write_model_manifest(
            tmp,
            kind=KIND,
            config=asdict(settings),
            preprocess=captioner_preprocess(settings.image_size).to_dict(),
            record={
                "captioner": {
                    "source": cfg.source,
                    "architecture": type(vlm).__name__,
                    "parameters": sum(p.numel() for p in vlm.parameters()),
                }
            },
        )
    return Path(cfg.out), settings


@register_model_kind(KIND)
def load_captioner(
    directory: Path, manifest: dict[str, Any], device: str | torch.device = "cpu"
) -> CaptionerModel:
    """Load a captioner folder (its model.json already read and checked by `load_model`), in
    bf16/fp16 on a GPU and fp32 on the CPU."""
    try:
        cfg = CaptionerConfig(**manifest["config"])
    except (TypeError, ConfigError) as e:
        raise InputError(directory / "model.json", f"bad captioner config: {e}") from None
    folder = directory / CHECKPOINT_FOLDER
    if not folder.is_dir():
        raise InputError(folder, "missing; the captioner folder is incomplete")
    processor, vlm = _load_pretrained(str(folder), None, generation_dtype(device))
    preprocess = PreprocessConfig.from_dict(manifest["preprocess"])
    backbone = CaptionerBackbone(vlm, processor, preprocess)
    backbone.spec = f"captioner:{cfg.source}"
    model = CaptionerModel(cfg, backbone)
    model.manifest = manifest
    return model.to(device).eval()
