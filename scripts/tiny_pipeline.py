"""A tiny random Stable Diffusion pipeline built from configs, saved like a real checkpoint.

No weights can be downloaded where this project is tested, so tests and benchmarks generate with
this: the same `StableDiffusionPipeline` classes (CLIP text encoder and tokenizer, UNet, VAE with
the usual 8x downscale, DDIM scheduler), a few hundred kilobytes of random weights, loaded back
with `from_pretrained(folder)` exactly as a user's checkpoint is. Its images are noise, of course.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path


def byte_symbols() -> list[str]:
    """CLIP's byte-level BPE alphabet: one printable character for each of the 256 bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    symbols, extra = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def write_tokenizer_files(folder: Path, words: Iterable[str]) -> None:
    """vocab.json and merges.txt for a CLIP BPE tokenizer: every byte (so any text tokenizes),
    plus one merge chain per word in `words` (so those words are one token each)."""
    symbols = byte_symbols()
    vocab: dict[str, int] = {}
    for token in [*symbols, *(s + "</w>" for s in symbols)]:
        vocab.setdefault(token, len(vocab))
    merges: list[str] = []
    for word in dict.fromkeys(w.lower() for w in words if w.isascii() and w.isalnum()):
        pieces = [*word[:-1], word[-1] + "</w>"]
        merged = pieces[0]
        for piece in pieces[1:]:
            rule = f"{merged} {piece}"
            if rule not in merges:
                merges.append(rule)
            merged += piece
            vocab.setdefault(merged, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def tiny_unet():
    """A two-block random UNet (8x8 latents, 32-wide text context): the pipeline's, and the
    GPU check's quick stand-in for Stable Diffusion's."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )


def build_tiny_pipeline(folder: str | Path, words: Iterable[str] = (), seed: int = 0) -> Path:
    """Save a tiny random StableDiffusionPipeline to `folder` (a diffusers pipeline folder)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging as transformers_logging

    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix="tiny-tokenizer-") as tokenizer_dir:
        write_tokenizer_files(Path(tokenizer_dir), words)
        tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, model_max_length=77)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = tiny_unet()
    # Four blocks, so images are 8x their latents as in every SD checkpoint.
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 8, 8),
        norm_num_groups=8,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=64,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    transformers_logging.disable_progress_bar()  # its "Writing model shards" bar
    try:
        pipeline.save_pretrained(folder)
    finally:
        transformers_logging.enable_progress_bar()
    return folder
