"""CLIP-space interrogation, in the manner of CLIP Interrogator: a readable prompt put together
from bank phrases by CLIP's own image-text similarity, rather than by MiniLM decoding.

Greedy, slot by slot: the bank phrase most CLIP-similar to the image among the subjects, then,
for each modifier slot (setting, medium, style, up to three flavours), the best of the slot's
few most similar phrases appended to the prompt so far, kept only when the whole prompt's CLIP
similarity to the image rises. (CLIP Interrogator starts from a BLIP caption; no captioner is
available offline, so the subject is a bank phrase; an index without bank subjects starts from
its nearest real prompt.) The describer then scores the result against the predicted MiniLM
vector, like any decoded prompt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2prompt.index.clip import TextEncoder, load_clip, load_tokenizer, text_tower

SLOTS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("subject", ("subjects",), 1),
    ("setting", ("places", "actions"), 1),
    ("medium", ("mediums",), 1),
    ("style", ("styles", "movements", "artists"), 1),
    (
        "flavour",
        ("descriptors", "lighting", "colors", "camera", "composition", "quality", "flavors"),
        3,
    ),
)
"""(slot, bank categories it draws from, phrases it may add). The names are those of the
packaged bank and of the public phrase lists (artists, flavors, mediums, movements)."""


@dataclass
class Interrogation:
    prompt: str
    phrases: list[str]
    clip_similarity: float
    """CLIP cosine between the image and the whole prompt."""


class Interrogator:
    """CLIP text features of a bank's phrases, grouped by slot, computed once (and cached on
    disk by CLIP weights and phrase list), and the greedy assembly above."""

    def __init__(
        self,
        clip_folder: Path,
        texts: list[str],
        categories: list[str],
        *,
        device: str = "cpu",
        per_slot: int = 1000,
        candidates: int = 8,
        cache_dir: Path | None = None,
    ) -> None:
        import torch

        self.encoder = TextEncoder(
            text_tower(load_clip(clip_folder)), load_tokenizer(clip_folder), device, torch.float32
        )
        self.candidates = candidates
        self.pools: list[tuple[str, int, list[str]]] = []
        for slot, wanted, picks in SLOTS:
            phrases = [t for t, c in zip(texts, categories, strict=True) if c in wanted]
            if phrases:
                self.pools.append((slot, picks, phrases[:per_slot]))
        self.has_subjects = bool(self.pools) and self.pools[0][0] == "subject"
        every = [phrase for _, _, phrases in self.pools for phrase in phrases]
        features = self._cached(clip_folder, every, cache_dir)
        self.features: dict[str, np.ndarray] = {}
        start = 0
        for slot, _, phrases in self.pools:
            self.features[slot] = features[start : start + len(phrases)]
            start += len(phrases)

    def _cached(self, clip_folder: Path, phrases: list[str], cache_dir: Path | None) -> np.ndarray:
        from img2prompt.io import atomic_path, cache_folder

        digest = hashlib.blake2b(digest_size=16)
        for path in sorted(clip_folder.glob("*.safetensors")):
            stat = path.stat()
            digest.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        for phrase in phrases:
            digest.update(phrase.encode("utf-8") + b"\0")
        folder = cache_dir or cache_folder("interrogation")
        path = folder / f"{digest.hexdigest()}.npy"
        if path.is_file():
            return np.load(path)
        features = self.encoder.encode(phrases)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, features)
        return features

    def interrogate(
        self, image_features: np.ndarray, fallback_subjects: list[str] | None = None
    ) -> list[Interrogation]:
        """(B, D) unit CLIP image features -> one prompt each. `fallback_subjects` (one per
        image: its nearest real prompt) start the prompt when the bank has no subjects. Each
        step's candidate prompts of all images are encoded in one batch."""
        features = np.asarray(image_features, np.float32)
        phrases: list[list[str]] = [[] for _ in features]
        best = np.full(len(features), -np.inf)
        for slot, picks, pool in self.pools:
            order = np.argsort(-(features @ self.features[slot].T), axis=1, kind="stable")
            shortlists = [
                [pool[j] for j in row[: self.candidates * picks + len(phrases[i])]]
                for i, row in enumerate(order)
            ]
            picking = list(range(len(features)))  # images still adding to this slot
            for _ in range(picks):
                options = {
                    i: [p for p in shortlists[i] if p not in phrases[i]][: self.candidates]
                    for i in picking
                }
                picking = [i for i in picking if options[i]]
                texts = [", ".join([*phrases[i], o]) for i in picking for o in options[i]]
                if not texts:
                    break
                owners = [i for i in picking for _ in options[i]]
                similarity = np.einsum("ij,ij->i", self.encoder.encode(texts), features[owners])
                start, still = 0, []
                for i in picking:
                    scores = similarity[start : start + len(options[i])]
                    start += len(options[i])
                    j = int(np.argmax(scores))
                    if scores[j] > best[i]:
                        phrases[i].append(options[i][j])
                        best[i] = float(scores[j])
                        still.append(i)
                picking = still
        if fallback_subjects and not self.has_subjects:
            for subject, prompt in zip(fallback_subjects, phrases, strict=True):
                prompt.insert(0, subject)
            texts = [", ".join(p) for p in phrases]
            best = np.einsum("ij,ij->i", self.encoder.encode(texts), features)
        return [
            Interrogation(", ".join(p), p, float(b)) for p, b in zip(phrases, best, strict=True)
        ]
