"""CLIP dual-encoder pieces the index needs: text features for prompts and phrases, and the image
tower as a `Backbone` (so the predictor batches, casts and times it like any other model).

Features are `get_text_features` / `get_image_features` (the projected CLS / EOS states), L2-
normalised in float32: the cosine CLIP was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from img2prompt.data.transforms import CLIP_MEAN, CLIP_STD, PreprocessConfig
from img2prompt.errors import ConfigError
from img2prompt.models.backbones import Backbone

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _pooled(output) -> torch.Tensor:
    """transformers 4 returns the projected features as a tensor, 5 inside a model output."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _quiet_transformers() -> None:
    """transformers draws its own bars for loading and saving shards; ours already say what
    is happening."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def load_clip(spec: str | Path):
    """A full CLIPModel (both towers) from a hub id or folder, in eval mode."""
    from transformers import CLIPModel

    _quiet_transformers()
    try:
        return CLIPModel.from_pretrained(str(spec)).eval()
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{spec}: cannot load a CLIP dual encoder (a hub id such as "
            f"openai/clip-vit-large-patch14, or a CLIPModel folder): {e}"
        ) from None


def load_tokenizer(spec: str | Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(spec))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{spec}: no CLIP tokenizer there: {e}") from None


def text_tower(clip: nn.Module) -> nn.Module:
    """`clip` without its image tower, for text features alone (ViT-L/14's image tower is ~300M
    parameters that would sit unused beside the retrieval model's own copy)."""
    clip.vision_model = nn.Identity()
    clip.visual_projection = nn.Identity()
    return clip


class TextEncoder:
    """A CLIP text tower and its tokenizer: texts -> unit float32 features, in batches. Texts
    longer than the tower's context (77 tokens) are truncated, as Stable Diffusion does."""

    def __init__(self, clip: nn.Module, tokenizer, device: str, dtype: torch.dtype) -> None:
        self.clip = clip.to(device=device, dtype=dtype).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = clip.config.text_config.max_position_embeddings

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64, bar=None) -> np.ndarray:
        """(N, D) unit float32 features; `bar` (a progress bar) advances per batch."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            features = _pooled(
                self.clip.get_text_features(
                    input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
                )
            )
            chunks.append(F.normalize(features.float(), dim=-1).cpu().numpy())
            if bar is not None:
                bar.advance(len(chunks[-1]))
        if not chunks:
            return np.zeros((0, self.clip.config.projection_dim), np.float32)
        return np.concatenate(chunks)


class CLIPImageEncoder(Backbone):
    """CLIP's image tower with its projection: pooled = unit `get_image_features` (float32 out,
    whatever the weights' dtype). The text tower is dropped to keep memory and copies small."""

    def __init__(self, clip: nn.Module, preprocess: PreprocessConfig) -> None:
        super().__init__()
        clip.text_model = nn.Identity()  # the index holds the prompts' text features already
        clip.text_projection = nn.Identity()
        self.clip = clip.eval()
        self.feature_dim = clip.config.projection_dim
        self.preprocess = preprocess

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        features = _pooled(self.clip.get_image_features(pixel_values=pixels))
        return F.normalize(features.float(), dim=-1)

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("a retrieval index uses CLIP's pooled image features only")

    def layer_groups(self) -> list[nn.Module]:
        return [self.clip]

    def set_attention(self, implementation: str) -> None:
        self.clip.set_attn_implementation(implementation)

    @property
    def tokens_per_image(self) -> int:
        patch = self.clip.config.vision_config.patch_size
        return (self.preprocess.crop_size // patch) ** 2 + 1


def clip_preprocess(folder: str | Path, image_size: int) -> PreprocessConfig:
    """The checkpoint's own image processor settings, else CLIP's (bicubic, its mean and std)."""
    path = Path(folder) / "preprocessor_config.json"
    if path.is_file():
        return PreprocessConfig.from_hf(path)
    return PreprocessConfig(image_size, image_size, CLIP_MEAN, CLIP_STD, "bicubic")


def save_clip_folder(spec: str, clip: nn.Module, tokenizer, directory: Path) -> None:
    """Write what loading needs offline: the CLIPModel (weights + config), the tokenizer and the
    image processor config, like a hub snapshot of openai/clip-vit-large-patch14."""
    import shutil

    from transformers.utils import cached_file

    directory.mkdir(parents=True, exist_ok=True)
    clip.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    source = cached_file(
        str(spec), "preprocessor_config.json", _raise_exceptions_for_missing_entries=False
    )
    if source:
        shutil.copyfile(source, directory / "preprocessor_config.json")
