"""Tiny random transformers checkpoints saved the way real ones are (config + weights +
preprocessor_config.json), so tests load them with `from_pretrained(dir)` like a user's model."""

from __future__ import annotations

from pathlib import Path


def save_tiny_clip(directory: Path, image_size: int = 32, crop: int = 32) -> Path:
    """A full CLIPModel (vision + text, as the openai hub ids are) with a CLIP image processor."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "vocab_size": 100},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": image_size, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
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
