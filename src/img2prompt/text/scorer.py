"""The target encoder as a decoding search uses it: vectors of candidate prompts, at the search
precision (bfloat16 where the CPU has native units, else int8 linear layers where they hold
accuracy) or exactly (float32, for every printed score), each text encoded once per `decode`
call."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence

import numpy as np

from img2prompt.device import cpu_kernels, native_bf16, precision_context
from img2prompt.io import cache_folder, write_json
from img2prompt.metrics import cosines
from img2prompt.targets.encoder import TargetEncoder

EXACT_BATCH = 16
"""Float32 encodes are mostly the final prompts, one a prompt and of any length: small batches
pad them less."""
INT8_MIN_COSINE = 0.999
"""`auto` ranks with int8 only if every checked text keeps this cosine to float32."""
CHECK_TEXTS = 48
"""Texts of the bank checked before `auto` chooses int8: this many entries, and as many
prompt-like joinings of them (a search mostly encodes joinings)."""


def check_texts(entries: Sequence[str]) -> list[str]:
    """The bank's first `CHECK_TEXTS` entries, and joinings of four of them each."""
    first = [str(text) for text in entries[:CHECK_TEXTS]]
    return first + [", ".join(first[i : i + 4]) for i in range(len(first))]


class Scorer:
    """Encodes texts for a search and remembers them until `forget` (searches meet the same
    prompt again: a prefix, a swap that undoes a swap, the joining written out at the end).
    `search_precision` says what ranks candidates (fp32, bf16 or int8) and `search_note` why."""

    def __init__(
        self,
        encoder: TargetEncoder,
        batch_size: int,
        search_precision: str,
        *,
        check: Sequence[str] = (),
    ) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self.search_note = ""
        self.search_precision = self._choose(search_precision, check)
        self.encodes = 0
        """Texts encoded so far (the cost that matters)."""
        self._exact: dict[str, tuple[np.ndarray, float]] = {}  # text -> (unit vector, norm)
        self._search: dict[str, tuple[np.ndarray, float]] = {}

    def _choose(self, requested: str, check: Sequence[str]) -> str:
        """`auto`: bf16 where native; else int8 where the encoder offers it and the `check`
        texts keep `INT8_MIN_COSINE` to float32; else fp32."""
        if requested == "int8":
            self.encoder.check_int8()
        if requested != "auto":
            return requested
        if native_bf16(self.encoder.device):
            return "bf16"
        if not self.encoder.supports_int8 or not check:
            self.search_note = "no native bf16, no int8 encoder or texts to check it on"
            return "fp32"
        worst = self._int8_agreement(check)
        verdict = "checked" if worst >= INT8_MIN_COSINE else "checked and refused"
        self.search_note = f"no native bf16; int8 {verdict}: cosine {worst:.5f} to fp32"
        return "int8" if worst >= INT8_MIN_COSINE else "fp32"

    def _int8_agreement(self, check: Sequence[str]) -> float:
        """The worst cosine of int8 to float32 encodes of `check`: measured once per encoder,
        texts, torch build and CPU kernels, then read back from the cache folder (the check
        costs 0.6-0.9 s, most of an AVX2 CPU's `describe` start-up, and always answers the
        same)."""
        import torch

        key = hashlib.blake2b(digest_size=8)
        for part in (self.encoder.fingerprint, torch.__version__, cpu_kernels(), *check):
            key.update(part.encode() + b"\0")
        path = cache_folder("checks") / f"int8-{key.hexdigest()}.json"
        try:
            return float(json.loads(path.read_text(encoding="utf-8"))["worst_cosine"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not measured yet (or unreadable): measure
        exact, _ = self.encoder.encode_with_norms(check, self.batch_size)
        fast, _ = self.encoder.encode_with_norms(check, self.batch_size, int8=True)
        worst = float(cosines(exact, fast).min())
        with contextlib.suppress(OSError):  # a read-only cache costs the check, nothing else
            write_json({"worst_cosine": worst}, path)
        return worst

    def forget(self) -> None:
        self._exact.clear()
        self._search.clear()

    def encode(self, texts: Sequence[str], exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors of `texts` and their norms: in float32 when `exact`, else at the search
        precision."""
        precision = "fp32" if exact else self.search_precision
        known = self._exact if precision == "fp32" else self._search
        new = list(dict.fromkeys(t for t in texts if t not in known))
        self.encodes += len(new)
        with precision_context(precision == "bf16", self.encoder.device):
            batch = min(EXACT_BATCH, self.batch_size) if exact else self.batch_size
            vectors, norms = self.encoder.encode_with_norms(
                new, batch_size=batch, int8=precision == "int8"
            )
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
