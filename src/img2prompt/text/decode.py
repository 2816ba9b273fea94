"""Embedding → readable prompt: phrases from a bank, put together so that the prompt's own
MiniLM vector lies as close as possible to the target.

`Decoder` runs the pieces: the bank's nearest entries to each target, a registered strategy for
the mode that picks phrases (`strategies.py`: `fast` greedy, `best` beam search), the composer
that orders and joins them (`compose.py`), and the scorer that encodes candidates
(`scorer.py`; bfloat16 where the CPU has it, every printed score in float32).

Every prompt puts its subject phrases first and modifiers (media, styles, artists, lighting...)
after them, never says a content word twice, and stays within `max_words`. Phrases are joined by
commas and runs of single words by spaces; the final prompt is written out whichever of a few
joinings scores best (`join_best`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from img2prompt.errors import ConfigError, InputError
from img2prompt.targets.encoder import TargetEncoder
from img2prompt.text.bank_index import PromptBank
from img2prompt.text.compose import MODIFIER_CATEGORIES, Composer
from img2prompt.text.options import DecodeOptions
from img2prompt.text.scorer import Scorer, check_texts
from img2prompt.text.strategies import DECODE_MODES

__all__ = ["MODIFIER_CATEGORIES", "DecodeOptions", "Decoded", "Decoder", "check_targets"]

DECODE_CHUNK = 64  # prompts searched together


@dataclass
class Decoded:
    """A readable prompt for one target vector."""

    prompt: str
    match: float
    """Cosine between the encoder's vector of `prompt` and the target, computed exactly: how
    well the words say the target."""
    phrases: list[str]
    neighbors: list[tuple[str, float]] = field(default_factory=list)
    """Nearest bank entries to the target, with their cosines."""

    def to_json(self) -> dict:
        return {
            "prompt": self.prompt,
            "match": round(self.match, 6),
            "phrases": self.phrases,
            "neighbors": [{"text": t, "cosine": round(c, 6)} for t, c in self.neighbors],
        }


def check_targets(targets: np.ndarray, dim: int, source: str = "embeddings") -> np.ndarray:
    """Targets as unit float32 rows, or an InputError that says what is wrong with them."""
    targets = np.asarray(targets)
    if targets.size == 0:
        raise InputError(source, f"empty, no vectors to decode (shape {targets.shape})")
    if targets.ndim == 1:
        targets = targets[None, :]
    if targets.ndim != 2 or targets.shape[0] == 0:
        raise InputError(source, f"expected an (N, {dim}) array of vectors, got {targets.shape}")
    if targets.shape[1] != dim:
        raise InputError(
            source, f"vectors have {targets.shape[1]} dimensions, the bank's encoder has {dim}"
        )
    if not np.issubdtype(targets.dtype, np.number):
        raise InputError(source, f"expected numbers, got dtype {targets.dtype}")
    targets = targets.astype(np.float32)
    bad = ~np.isfinite(targets).all(axis=1)
    norms = np.linalg.norm(targets, axis=1)
    bad |= norms == 0
    if bad.any():
        rows = ", ".join(str(r) for r in np.flatnonzero(bad)[:5])
        raise InputError(source, f"rows with NaN, infinity or all zeros (row {rows}, 0-based)")
    return targets / norms[:, None]


class Decoder:
    """Turns target vectors into prompts built from a bank's entries."""

    def __init__(self, bank: PromptBank, encoder: TargetEncoder, options: DecodeOptions) -> None:
        if bank.dim != encoder.dim:
            raise ConfigError(f"bank vectors have {bank.dim} dimensions, the encoder {encoder.dim}")
        self.bank = bank
        self.encoder = encoder
        self.options = options
        strategy = DECODE_MODES.get(options.mode, " (--mode)")
        self.composer = Composer(
            bank, options.max_words, readable=strategy.readable, filler=strategy.filler
        )
        self.scorer = Scorer(
            encoder, options.batch_size, options.search_precision, check=check_texts(bank.texts)
        )
        self.strategy = strategy(self.composer, self.scorer, bank, options)

    @property
    def encodes(self) -> int:
        """Texts encoded so far (the cost that matters)."""
        return self.scorer.encodes

    def order(self, phrases: Sequence[int], target: np.ndarray) -> list[int]:
        return self.composer.order(phrases, target)

    def compose(self, phrases: Sequence[int], target: np.ndarray) -> str:
        return self.composer.compose(phrases, target)

    def joinings(self, phrases: Sequence[int], target: np.ndarray) -> list[str]:
        return self.composer.joinings(phrases, target)

    def decode(self, targets: np.ndarray) -> list[Decoded]:
        """One prompt per row of `targets` (unit vectors of the bank's dimension)."""
        targets = check_targets(targets, self.bank.dim)
        out: list[Decoded] = []
        # In chunks: every prompt of a chunk is searched in the same encoder batches, and the
        # chunk's remembered vectors (~200 per prompt in `best`) stay a few tens of MB.
        for start in range(0, len(targets), DECODE_CHUNK):
            self.scorer.forget()
            out.extend(self._decode(targets[start : start + DECODE_CHUNK]))
        self.scorer.forget()
        return out

    def _decode(self, targets: np.ndarray) -> list[Decoded]:
        cosines, ids = self.bank.search(targets, self.strategy.shortlist)
        chosen = self.strategy.search(targets, ids)
        # A search that found no usable entry (a bank of entries that repeat themselves).
        chosen = [c or [int(ids[i, 0])] for i, c in enumerate(chosen)]
        texts, scores = self.join_best(chosen, targets)
        # Estimates can err: where the nearest entry alone beats the assembly (and fits the
        # word limit), print that.
        nearest = ids[:, 0]
        c = self.composer
        fits = (c.words[nearest] <= self.options.max_words) & [
            c.usable(j, c.permitted_for(row)) for j, row in zip(nearest, ids, strict=True)
        ]
        worse = np.flatnonzero((scores < cosines[:, 0] - 1e-3) & fits)
        if len(worse):
            for i in worse:
                chosen[i], texts[i] = [int(nearest[i])], self.bank.texts[nearest[i]]
            scores[worse] = self.scorer.score([texts[i] for i in worse], targets[worse])
        n = self.options.neighbors
        return [
            Decoded(
                prompt=texts[i],
                match=float(scores[i]),
                phrases=[self.bank.texts[j] for j in self.composer.order(chosen[i], targets[i])],
                neighbors=[
                    (self.bank.texts[j], float(c))
                    for j, c in zip(ids[i, :n], cosines[i, :n], strict=True)
                    if j >= 0
                ],
            )
            for i in range(len(targets))
        ]

    def join_best(
        self, chosen: Sequence[Sequence[int]], targets: np.ndarray
    ) -> tuple[list[str], np.ndarray]:
        """For each prompt the joining (`Composer.joinings`) that scores highest, and its exact
        score; on a tie the first listed. The joinings are compared at the search precision and
        only the winner is encoded in float32."""
        options = [self.composer.joinings(c, t) for c, t in zip(chosen, targets, strict=True)]
        owners = np.repeat(np.arange(len(options)), [len(o) for o in options])
        scores = self.scorer.search_scores([t for o in options for t in o], targets[owners])
        texts, start = [], 0
        for o in options:
            texts.append(o[int(np.argmax(scores[start : start + len(o)]))])
            start += len(o)
        return texts, self.scorer.score(texts, targets)
