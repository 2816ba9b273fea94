"""The target encoder as a decoding search uses it: vectors of candidate prompts, at the search
precision (bfloat16 where the CPU has native units) or exactly (float32, for every printed score),
each text encoded once per `decode` call."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from img2prompt.device import native_bf16, precision_context
from img2prompt.metrics import cosines
from img2prompt.targets.encoder import TargetEncoder

EXACT_BATCH = 16
"""Float32 encodes are mostly the final prompts, one a prompt and of any length: small batches
pad them less."""


class Scorer:
    """Encodes texts for a search and remembers them until `forget` (searches meet the same
    prompt again: a prefix, a swap that undoes a swap, the joining written out at the end)."""

    def __init__(self, encoder: TargetEncoder, batch_size: int, search_precision: str) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self.search_bf16 = search_precision == "bf16" or (
            search_precision == "auto" and native_bf16(encoder.device)
        )
        self.encodes = 0
        """Texts encoded so far (the cost that matters)."""
        self._exact: dict[str, tuple[np.ndarray, float]] = {}  # text -> (unit vector, norm)
        self._search: dict[str, tuple[np.ndarray, float]] = {}

    def forget(self) -> None:
        self._exact.clear()
        self._search.clear()

    def encode(self, texts: Sequence[str], exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors of `texts` and their norms: in float32 when `exact`, else at the search
        precision."""
        bf16 = not exact and self.search_bf16
        known = self._search if bf16 else self._exact
        new = list(dict.fromkeys(t for t in texts if t not in known))
        self.encodes += len(new)
        with precision_context(bf16, self.encoder.device):
            batch = min(EXACT_BATCH, self.batch_size) if exact else self.batch_size
            vectors, norms = self.encoder.encode_with_norms(new, batch_size=batch)
        known.update(zip(new, zip(vectors, norms.tolist(), strict=True), strict=True))
        if not texts:
            return np.zeros((0, self.encoder.dim), np.float32), np.zeros(0, np.float32)
        norms = np.array([known[t][1] for t in texts], dtype=np.float32)
        return np.stack([known[t][0] for t in texts]), norms

    def score(self, texts: Sequence[str], targets: np.ndarray) -> np.ndarray:
        """Exact (float32) cosine of each text's vector with its target row."""
        return cosines(self.encode(texts, exact=True)[0], targets)

    def search_scores(self, texts: Sequence[str], targets: np.ndarray) -> np.ndarray:
        """Cosine of each text's vector (at the search precision) with its target row."""
        return cosines(self.encode(texts)[0], targets)
