"""Tiny random vision-language captioners saved the way real checkpoints are (config, weights,
processor, tokenizer), so tests load them with `from_pretrained(dir)` like a user's model.

The tokenizers are written here by hand (no downloads): a byte-level BPE vocabulary with a few
words for Florence-2 (a BART tokenizer, as microsoft/Florence-2-base has), a WordPiece
vocabulary for BLIP (a BERT tokenizer, as Salesforce/blip-image-captioning-base has).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tiny_pipeline import byte_symbols

WORDS = ("a", "cat", "dog", "photo", "of", "the", "red", "blue", "painting", "castle", "art")
"""Whole words in the tiny vocabularies, so random models write some readable words."""


def _bpe_vocabulary(directory: Path, size: int = 0) -> tuple[Path, Path]:
    """vocab.json + merges.txt: every byte, the words of `WORDS` (with GPT-2's leading-space
    marker `Ġ`) built by merges, and BART's special tokens; then filler words up to `size`
    (a real vocabulary's width, so the output layer costs what a real one does)."""
    alphabet = byte_symbols()
    tokens = ["<s>", "<pad>", "</s>", "<unk>", *alphabet]
    merges: list[str] = []
    for word in WORDS:
        piece = "Ġ"
        for char in word:
            merges.append(f"{piece} {char}")
            piece += char
            tokens.append(piece)
    tokens = list(dict.fromkeys(tokens))
    tokens += [f"Ġw{i}" for i in range(max(0, size - len(tokens) - 1))]  # room for <image>
    vocab = {token: i for i, token in enumerate(tokens)}
    merges = list(dict.fromkeys(merges))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return directory / "vocab.json", directory / "merges.txt"


FLORENCE2_TINY = {
    "text": {
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
    },
    "vision": {
        "depths": [1, 1, 1],
        "patch_size": [7, 3, 3],
        "patch_stride": [4, 2, 2],
        "patch_padding": [3, 1, 1],
        "patch_prenorm": [False, True, True],
        "embed_dim": [16, 32, 32],
        "num_heads": [2, 2, 2],
        "num_groups": [2, 2, 2],
        "window_size": 2,
        "projection_dim": 32,
    },
    "vocab_size": 0,  # the tokenizer's own few hundred tokens
}
FLORENCE2_BASE = {
    "text": {
        "d_model": 768,
        "encoder_layers": 6,
        "decoder_layers": 6,
        "encoder_attention_heads": 12,
        "decoder_attention_heads": 12,
        "encoder_ffn_dim": 3072,
        "decoder_ffn_dim": 3072,
    },
    "vision": {
        "depths": [1, 1, 9, 1],
        "patch_size": [7, 3, 3, 3],
        "patch_stride": [4, 2, 2, 2],
        "patch_padding": [3, 1, 1, 1],
        "patch_prenorm": [False, True, True, True],
        "embed_dim": [128, 256, 512, 1024],
        "num_heads": [4, 8, 16, 32],
        "num_groups": [4, 8, 16, 32],
        "window_size": 12,
        "projection_dim": 768,
    },
    "vocab_size": 51289,
}
"""microsoft/Florence-2-base's sizes (0.23B parameters; it reads 768 px images), for timing."""


def save_tiny_florence2(
    directory: Path, image_size: int = 32, seed: int = 0, shape: dict | None = None
) -> Path:
    """A random Florence2ForConditionalGeneration (DaViT vision tower + BART) with its
    Florence2Processor (CLIP image processor + BART tokenizer with `<image>`); `shape` is
    `FLORENCE2_TINY` (the default) or `FLORENCE2_BASE`."""
    import torch
    from transformers import (
        BartTokenizer,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    shape = shape or FLORENCE2_TINY
    vocab, merges = _bpe_vocabulary(directory / "tokenizer", shape["vocab_size"])
    tokenizer = BartTokenizer(
        vocab=str(vocab), merges=str(merges), extra_special_tokens={"image_token": "<image>"}
    )
    image_processor = CLIPImageProcessor(
        size={"height": image_size, "width": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=False,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    stride = math.prod(shape["vision"]["patch_stride"])
    image_tokens = (image_size // stride) ** 2 + 1  # the last stage's grid, plus a pooled token
    image_processor.image_seq_length = image_tokens
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tokenizer)
    torch.manual_seed(seed)
    config = Florence2Config(
        text_config={
            "vocab_size": len(tokenizer),
            **shape["text"],
            "max_position_embeddings": 1024 if shape["vocab_size"] else 128,
            "bos_token_id": 0,
            "pad_token_id": 1,
            "eos_token_id": 2,
            "decoder_start_token_id": 2,
            "forced_eos_token_id": 2,
        },
        vision_config={
            **shape["vision"],
            "drop_path_rate": 0.0,
        },
        image_token_id=tokenizer.image_token_id,
    )
    Florence2ForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def save_tiny_blip(directory: Path, image_size: int = 32, seed: int = 0) -> Path:
    """A random BlipForConditionalGeneration (ViT + BERT decoder) with its BlipProcessor (BLIP
    image processor + a BERT WordPiece tokenizer)."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    directory.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [*"abcdefghijklmnopqrstuvwxyz", *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz")]
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join([*specials, *WORDS, *letters, ",", "."]) + "\n")
    tokenizer = BertTokenizer(vocab=str(vocab_file))
    vocab_file.unlink()
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    torch.manual_seed(seed)
    config = BlipConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "encoder_hidden_size": 32,
            "max_position_embeddings": 64,
            "bos_token_id": tokenizer.cls_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "sep_token_id": tokenizer.sep_token_id,
            "eos_token_id": tokenizer.sep_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 8,
        },
        projection_dim=32,
    )
    BlipForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
