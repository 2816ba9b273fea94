"""Decoding modes: each a registered strategy that picks phrases for target vectors.

MiniLM's sentence vector is the mean of its token vectors, so the vector of "a, b" is near a
weighted sum of the vectors of "a" and "b", each weighted by its *pull* (`compose.PULL_POWER`).
That cheap *additive estimate* ranks candidates; only the best few are encoded (`Scorer`).

- `fast` (`GreedyStrategy`): the nearest entries, a greedy assembly on additive estimates, and
  the encoder picks the best of its prefixes (the estimate overrates long prompts).
- `best` (`BeamStrategy`): beam search. Each step extends every beam by one phrase from a pool:
  the entries nearest to the target plus those nearest to each beam's *residual* (the part of
  the target its prompt misses). Extensions are pre-ranked by an estimate anchored on the beam's
  encoded vector, the top ones are encoded in one batch, and the best become the next beams.
  Then a clean-up pass drops phrases whose removal does not lower the score, and swap rounds try
  replacing single phrases.

A new mode is a class decorated with `@register_mode(name)` taking `(composer, scorer, bank,
options)`, with `shortlist` (entries to search the bank for) and `search(targets, ids)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from img2prompt.registry import Registry
from img2prompt.text.bank_index import PromptBank
from img2prompt.text.compose import PULL_POWER, Composer
from img2prompt.text.options import DecodeOptions
from img2prompt.text.scorer import Scorer

DECODE_MODES: Registry[type[Strategy]] = Registry("decode mode")


def register_mode(name: str):
    """Decorator: the strategy class that `--mode name` runs."""
    return DECODE_MODES.register(name)


def check_mode(name: str) -> None:
    """Refuse a `--mode` no strategy is registered for, naming the known ones: called before
    any model or bank is loaded, so a typo costs no wait."""
    DECODE_MODES.get(name, " (--mode)")


class Strategy:
    """Picks phrase ids (bank rows) for each target; `Decoder` writes them out."""

    readable: ClassVar[bool] = True
    """The readability rules (`Composer.readable`): no safety-list word the nearest entries do
    not say, at most `MAX_SINGLE_WORDS` single words."""
    filler: ClassVar[bool] = False
    """Dictionary words that no prompt phrase uses are allowed (`Composer.filler`)."""

    def __init__(
        self, composer: Composer, scorer: Scorer, bank: PromptBank, options: DecodeOptions
    ) -> None:
        self.composer = composer
        self.scorer = scorer
        self.bank = bank
        self.options = options

    @property
    def shortlist(self) -> int:
        """Nearest bank entries to search for each target."""
        raise NotImplementedError

    def search(self, targets: np.ndarray, ids: np.ndarray) -> list[list[int]]:
        """(N, D) unit targets and their (N, shortlist) nearest entries -> phrases for each."""
        raise NotImplementedError


@register_mode("fast")
class GreedyStrategy(Strategy):
    """Greedy assembly, then the best of its prefixes by the encoder: the additive estimate
    overrates long prompts, and encoding a handful of short prefixes costs a few milliseconds.
    Dictionary words are allowed: they raise the round trip while the unseen-word share stays
    near the true prompts' (benchmarks/bench_decode.py)."""

    filler = True

    @property
    def shortlist(self) -> int:
        return max(self.options.fast_shortlist, self.options.neighbors)

    def search(self, targets: np.ndarray, ids: np.ndarray) -> list[list[int]]:
        sequences = [self._greedy(t, ids[i]) for i, t in enumerate(targets)]
        # The one-phrase prefix is the nearest entry (where usable), which `Decoder` compares
        # with anyway.
        prefixes = [
            (i, seq[:n])
            for i, seq in enumerate(sequences)
            for n in range(min(2, len(seq)), len(seq) + 1)
        ]
        texts = [self.composer.compose(prefix, targets[i]) for i, prefix in prefixes]
        owners = np.array([i for i, _ in prefixes])
        scores = self.scorer.search_scores(texts, targets[owners])
        best: dict[int, tuple[float, list[int]]] = {}
        for (i, prefix), score in zip(prefixes, scores, strict=True):
            if i not in best or score > best[i][0]:
                best[i] = (float(score), prefix)
        return [best[i][1] for i in range(len(targets))]

    def _greedy(self, target: np.ndarray, ids: np.ndarray) -> list[int]:
        c = self.composer
        permitted = c.permitted_for(ids)
        ids = ids[: self.options.fast_shortlist]
        ids = ids[ids >= 0]
        weighted = c.vectors[ids] * c.pull[ids, None]  # pull-weighted phrase vectors
        gains = weighted @ target
        # Rows of the Gram matrix only for the picks (a handful), not the whole shortlist.
        squares = np.einsum("ij,ij->i", weighted, weighted)
        # Positions in `ids`; the nearest usable entry is the subject.
        chosen = [next((p for p, j in enumerate(ids) if c.usable(int(j), permitted)), 0)]
        total_dot, total_sq = gains[chosen[0]], squares[chosen[0]]
        cross = weighted @ weighted[chosen[0]]  # (sum of chosen) . each candidate
        best = total_dot / np.sqrt(total_sq)
        words = int(c.words[ids[chosen[0]]])
        while len(chosen) < min(self.options.max_phrases, self.options.fast_max_phrases):
            estimate = (total_dot + gains) / np.sqrt(total_sq + squares + 2 * cross)
            pick = -1
            for position in np.argsort(-estimate):
                if estimate[position] <= best:
                    break
                if c.allowed([ids[p] for p in chosen], words, ids[position], permitted):
                    pick = int(position)
                    break
            if pick < 0:
                break
            chosen.append(pick)
            best = estimate[pick]
            total_dot += gains[pick]
            total_sq += squares[pick] + 2 * cross[pick]
            cross += weighted @ weighted[pick]
            words += int(c.words[ids[pick]])
        return [int(ids[p]) for p in chosen]


@register_mode("best")
class BeamStrategy(Strategy):
    """Beam search scored by the encoder, then clean-up and swap rounds (module docstring)."""

    readable = True

    @property
    def shortlist(self) -> int:
        return max(self.options.shortlist, self.options.neighbors)

    def search(self, targets: np.ndarray, ids: np.ndarray) -> list[list[int]]:
        opts = self.options
        searches = [
            _Search(self, target, ids[i, : opts.shortlist]) for i, target in enumerate(targets)
        ]
        for step in range(opts.max_phrases):
            active = [s for s in searches if s.active]
            if not active:
                break
            if opts.residual_shortlist and step > 0:  # at first a residual is the target
                residuals = np.concatenate([s.residuals() for s in active])
                _, found = self.bank.search(residuals, opts.residual_shortlist)
                start = 0
                for s in active:
                    s.add_to_pool(found[start : start + len(s.beams)])
                    start += len(s.beams)
            proposals = [s.propose() for s in active]
            vectors, norms = self._encode(active, proposals)
            start = 0
            for s, props in zip(active, proposals, strict=True):
                end = start + len(props)
                s.accept(props, vectors[start:end], norms[start:end])
                start = end
        if opts.cleanup:
            self._cleanup(searches)
        for _round in range(opts.swap_rounds):
            improving = [s for s in searches if len(s.best.phrases) > 1]
            if not self._swap(improving):
                break
        return [s.best.phrases for s in searches]

    def _encode(
        self, searches: list[_Search], proposals: list[list[list[int]]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every proposal of every search, composed and encoded in one batch; a proposal of
        one entry (the first step's, clean-up's last) is not encoded: the bank holds its
        vector and norm already."""
        c = self.composer
        flat = [(s, p) for s, props in zip(searches, proposals, strict=True) for p in props]
        vectors = np.empty((len(flat), c.vectors.shape[1]), np.float32)
        norms = np.empty(len(flat), np.float32)
        single = np.array([len(p) == 1 for _, p in flat], dtype=bool)
        ids = [p[0] for _, p in flat if len(p) == 1]
        vectors[single], norms[single] = c.vectors[ids], c.norms[ids]
        texts = [c.compose(p, s.target) for s, p in flat if len(p) > 1]
        vectors[~single], norms[~single] = self.scorer.encode(texts)
        return vectors, norms

    def _swap(self, searches: list[_Search]) -> bool:
        """Try replacing one phrase of each best prompt by a pool entry (the replacements the
        additive estimate ranks highest); keep a replacement that raises the score."""
        proposals = [s.swaps() for s in searches]
        if not any(proposals):
            return False
        vectors, norms = self._encode(searches, proposals)
        start, improved = 0, False
        for s, props in zip(searches, proposals, strict=True):
            if props:
                scores = vectors[start : start + len(props)] @ s.target
                i = int(np.argmax(scores))
                if scores[i] > s.best.score:
                    j = start + i
                    s.best = _Beam(props[i], vectors[j], norms[j], float(scores[i]), self.composer)
                    improved = True
            start += len(props)
        return improved

    def _cleanup(self, searches: list[_Search]) -> None:
        """Drop, one at a time, the phrase whose removal scores highest, while that does not
        lower the score."""
        todo = [s for s in searches if len(s.best.phrases) > 1]
        while todo:
            variants = [
                [s.best.phrases[:i] + s.best.phrases[i + 1 :] for i in range(len(s.best.phrases))]
                for s in todo
            ]
            vectors, norms = self._encode(todo, variants)
            start, again = 0, []
            for s, vs in zip(todo, variants, strict=True):
                scores = vectors[start : start + len(vs)] @ s.target
                i = int(np.argmax(scores))
                j = start + i
                start += len(vs)
                if scores[i] >= s.best.score - self.options.min_gain:
                    s.best = _Beam(vs[i], vectors[j], norms[j], float(scores[i]), self.composer)
                    if len(s.best.phrases) > 1:
                        again.append(s)
            todo = again


@register_mode("max")
class MaxStrategy(BeamStrategy):
    """`best` without the readability rules: any bank entry, dictionary filler included. The
    highest round-trip cosine, for the competition and for embedding inversion; its prompts
    are not meant to be read."""

    readable = False


@dataclass
class _Beam:
    phrases: list[int]
    vector: np.ndarray  # the encoder's unit vector of the composed prompt
    norm: float  # and its norm
    score: float
    composer: Composer = field(repr=False)

    @property
    def words(self) -> int:
        return self.composer.phrase_words(self.phrases)

    @property
    def pull(self) -> float:
        """The prompt's pull (as `Composer.pull`'s): its tokens (phrases and commas, counted in
        `Composer.tokens`, one too many, and the two special tokens MiniLM adds: [CLS], [SEP])
        times its norm to `PULL_POWER`."""
        tokens = sum(self.composer.tokens[j] for j in self.phrases) + 1
        # A bank without norms weighs its entries by tokens alone; beams must do the same.
        norm = self.norm if self.composer.norms_known else 1.0
        return float(tokens * norm**PULL_POWER)


class _Search:
    """Beam search state for one target."""

    def __init__(self, strategy: BeamStrategy, target: np.ndarray, shortlist: np.ndarray) -> None:
        self.composer = strategy.composer
        self.options = strategy.options
        self.target = target
        self.permitted = self.composer.permitted_for(shortlist)
        self.pool = [int(j) for j in shortlist if j >= 0]
        self.in_pool = set(self.pool)
        empty = _Beam([], np.zeros_like(target), 0.0, 0.0, self.composer)
        self.beams = [empty]
        self.best = empty
        self.active = True
        self.stale = 0  # steps since the best score last improved

    def residuals(self) -> np.ndarray:
        """For each beam, the part of the target its prompt does not point along yet."""
        out = []
        for beam in self.beams:
            r = self.target - (beam.vector @ self.target) * beam.vector
            out.append(r / max(float(np.linalg.norm(r)), 1e-6))
        return np.asarray(out, dtype=np.float32)

    def add_to_pool(self, found: np.ndarray) -> None:
        for j in found.ravel():
            j = int(j)
            if j >= 0 and j not in self.in_pool:
                self.in_pool.add(j)
                self.pool.append(j)

    def propose(self) -> list[list[int]]:
        """The extensions of the current beams that the additive estimate ranks highest."""
        c, per_step = self.composer, self.options.encodes_per_step
        pool = np.asarray(self.pool)
        vectors = c.vectors[pool]
        gains = vectors @ self.target  # cos(entry, target)
        w = c.pull[pool]
        scored: list[tuple[float, int, int]] = []  # (estimate, beam index, entry)
        for b, beam in enumerate(self.beams):
            if beam.phrases:
                big_w = beam.pull
                dot = big_w * beam.score + w * gains
                sq = big_w**2 + w**2 + 2 * big_w * w * (vectors @ beam.vector)
                estimate = dot / np.sqrt(sq)
            else:
                estimate = gains
            top = np.argpartition(-estimate, min(len(estimate) - 1, 4 * per_step))
            top = top[: 4 * per_step]
            scored.extend((float(estimate[i]), b, int(pool[i])) for i in top)
        scored.sort(reverse=True)
        proposals: list[list[int]] = []
        seen: set[tuple[int, ...]] = set()
        for _, b, j in scored:
            beam = self.beams[b]
            if not c.allowed(beam.phrases, beam.words, j, self.permitted):
                continue
            phrases = [*beam.phrases, j]
            key = tuple(sorted(phrases))
            if key in seen:
                continue
            seen.add(key)
            proposals.append(phrases)
            if len(proposals) == per_step:
                break
        return proposals

    def swaps(self) -> list[list[int]]:
        """Best prompt with one phrase replaced, the replacements ranked by additive estimate."""
        c, per_step = self.composer, self.options.encodes_per_step
        best = self.best
        pool = np.asarray([j for j in self.pool if j not in best.phrases])
        if len(pool) == 0:
            return []
        vectors = c.vectors[pool]
        w = c.pull[pool]
        gains = vectors @ self.target
        scored: list[tuple[float, int, int]] = []  # (estimate, position replaced, entry)
        for i, old in enumerate(best.phrases):
            # What remains after taking phrase i out, in additive terms.
            rest = best.pull * best.vector - c.pull[old] * c.vectors[old]
            dot = rest @ self.target + w * gains
            sq = rest @ rest + w**2 + 2 * w * (vectors @ rest)
            estimate = dot / np.sqrt(np.maximum(sq, 1e-9))
            k = min(len(pool), per_step)
            for p in np.argpartition(-estimate, k - 1)[:k]:
                scored.append((float(estimate[p]), i, int(pool[p])))
        scored.sort(reverse=True)
        proposals = []
        for _, i, j in scored:
            rest = best.phrases[:i] + best.phrases[i + 1 :]
            words = best.words - int(c.words[best.phrases[i]])
            if c.allowed(rest, words, j, self.permitted):
                proposals.append([*rest[:i], j, *rest[i:]])
                if len(proposals) == per_step:
                    break
        return proposals

    def accept(self, proposals: list[list[int]], vectors: np.ndarray, norms: np.ndarray) -> None:
        """Keep the best-scoring extensions as the next beams; stop when none improves."""
        if not proposals:
            self.active = False
            return
        scores = vectors @ self.target
        order = np.argsort(-scores)[: self.options.beam_width]
        beams = [
            _Beam(proposals[i], vectors[i], norms[i], float(scores[i]), self.composer)
            for i in order
        ]
        if beams[0].score > self.best.score:
            self.best = beams[0]
            self.stale = 0
        else:
            self.stale += 1
        # One more phrase can lower the score and the next raise it again (a pair that belongs
        # together), so the search goes on for `patience` steps without improvement.
        longest = len(beams[0].phrases) >= self.options.max_phrases
        self.active = self.stale <= self.options.patience and not longest
        self.beams = beams
