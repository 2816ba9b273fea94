"""Small banks and an encoder that counts its work, shared by the bank and decode tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PHRASES = [
    "a red fox",
    "a lighthouse on a cliff",
    "a bowl of ramen",
    "an astronaut",
    "a samurai",
    "a cozy library",
    "a steampunk airship",
    "a snowy mountain cabin",
    "a cyberpunk street at night",
    "a coral reef",
    "sleeping",
    "riding a horse",
    "in the rain",
    "covered in snow",
]
STYLES = [
    "oil painting",
    "watercolor illustration",
    "macro photography",
    "cinematic lighting",
    "highly detailed",
    "neon lights",
    "ukiyo-e woodblock print",
    "by alphonse mucha",
    "soft pastel colors",
    "trending on artstation",
]


class CountingEncoder:
    """The real encoder, counting the texts it embeds (to prove what is not re-embedded)."""

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self.encoded = 0

    def encode(self, texts, batch_size: int = 32) -> np.ndarray:
        return self.encode_with_norms(texts, batch_size)[0]

    def encode_with_norms(self, texts, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        self.encoded += len(texts)
        return self._encoder.encode_with_norms(texts, batch_size=batch_size)

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
