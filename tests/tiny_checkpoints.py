"""Tiny random transformers checkpoints saved the way real ones are (config + weights +
preprocessor_config.json), so tests load them with `from_pretrained(dir)` like a user's model."""

from __future__ import annotations

from pathlib import Path

from tiny_pipeline import byte_symbols


def save_tiny_clip(directory: Path, image_size: int = 32, crop: int = 32) -> Path:
    """A full CLIPModel (vision + text, as the openai hub ids are) with a CLIP image processor."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": 100,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(directory)
    CLIPImageProcessor(
        size={"shortest_edge": crop + 8}, crop_size={"height": crop, "width": crop}
    ).save_pretrained(directory)
    return directory


def save_tiny_convnext(directory: Path) -> Path:
    import torch
    from transformers import ConvNextConfig, ConvNextModel

    torch.manual_seed(0)
    config = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32)
    ConvNextModel(config).save_pretrained(directory)
    return directory


def save_tiny_clip_tokenizer(directory: Path, context: int = 77) -> int:
    """A real `CLIPTokenizer` over a byte-level vocabulary (every byte alone and word-final) and a
    few merges, saved like openai's; returns the vocabulary size. Nothing is downloaded."""
    import json

    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    alphabet = byte_symbols()
    vocab = {token: i for i, token in enumerate([*alphabet, *(c + "</w>" for c in alphabet)])}
    merges = ["t h", "th e</w>", "o n</w>", "a n", "an d</w>"]
    for merge in merges:
        vocab[merge.replace(" ", "")] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(
        str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=context
    )
    tokenizer.save_pretrained(directory)
    return len(vocab)


def save_tiny_clip_dual(
    directory: Path, image_size: int = 32, seed: int = 0, context: int = 1024
) -> Path:
    """A tiny random CLIP dual encoder folder that loads like `openai/clip-vit-large-patch14`:
    CLIPModel (vision + text towers, projections), image processor and tokenizer. Its tokenizer
    spends a token per byte, so its context is 1024 (not CLIP's 77): long prompts that share
    their first 75 bytes must not get one feature, or ties would blur the tests' references."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    vocab_size = save_tiny_clip_tokenizer(directory, context)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": vocab_size,
            "bos_token_id": vocab_size - 2,
            "eos_token_id": vocab_size - 1,
            "pad_token_id": vocab_size - 1,
            "max_position_embeddings": context,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 8,
        },
        projection_dim=24,
    )
    CLIPModel(config).save_pretrained(directory)
    CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    ).save_pretrained(directory)
    return directory
