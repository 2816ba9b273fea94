"""Embedding → readable prompt: phrases from a bank, put together so that the prompt's own
MiniLM vector lies as close as possible to the target.

MiniLM's sentence vector is the mean of its token vectors, so the vector of "a, b" is near a
weighted sum of the vectors of "a" and "b", each weighted by its *pull* (`PULL_POWER`). That
cheap *additive estimate* ranks hundreds of candidate prompts per step; only the best few are
encoded for real, in large batches and (where the hardware has it) in bfloat16. Printed scores
are always re-computed in float32.

- `fast`: the nearest entries (FAISS), a greedy assembly on additive estimates, and the encoder
  picks the best of its prefixes (the estimate overrates long prompts).
- `best`: beam search. Each step extends every beam by one phrase from a candidate pool: the
  entries nearest to the target plus those nearest to each beam's *residual* (the part of the
  target its prompt misses). Extensions are pre-ranked by an estimate anchored on the beam's
  encoded vector, the top ones are encoded in one batch, and the best become the next beams.
  Then a clean-up pass drops phrases whose removal does not lower the score, and swap rounds try
  replacing single phrases.

Every prompt puts its subject phrases first and modifiers (media, styles, artists, lighting...)
after them, never says a content word twice, and stays within `max_words`. Phrases are joined by
commas and runs of single words by spaces (`compose`); the final prompt is written out whichever
of a few joinings scores best (`join_best`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from img2prompt.config import DecodeOptions
from img2prompt.data.embed import TargetEncoder, native_bf16, precision_context
from img2prompt.errors import ConfigError, InputError
from img2prompt.metrics import cosines
from img2prompt.text.bank_index import PromptBank
from img2prompt.text.bank_sources import content_stems, says_a_word_twice

# Categories whose phrases describe how a picture looks rather than what it shows; they go after
# the subject. The names are those of the packaged bank and of the usual public phrase lists.
# Not "flavors": CLIP Interrogator's list mixes subjects ("a robot dog") with styles, and sending
# all of it last costs ~0.002 of round-trip cosine on bench_decode.
MODIFIER_CATEGORIES = frozenset(
    {
        "artists", "camera", "colors", "composition", "lighting", "mediums", "movements",
        "negative", "quality", "styles",
    }
)  # fmt: skip


SUBJECT_CATEGORIES = frozenset({"subjects"})
# A text's pull on the vector of a prompt it joins: its tokens times its norm (the length of its
# mean token vector, `img2prompt.data.embed`) to this power. Words that agree (a short phrase, a
# single word) have long mean vectors and hold their direction in a prompt; a long, mixed phrase
# is diluted. Power 2 ranked extensions best: on 40 real_pairs dev prompts, the best of the 18
# extensions a step encodes falls short of the best of ~300 by 0.0049 with tokens alone (the
# estimate before), 0.0035 with norm^1, 0.0028 with norm^2. End to end on the 211 dev prompts:
# `best` 0.9174 -> 0.9207, `fast` 0.8454 -> 0.8516 (norm^1.5: 0.9208 / 0.8513) in a first
# version that still counted a new phrase's own square 1.25x; counting it once: `best` 0.9216.
PULL_POWER = 2.0
DECODE_CHUNK = 64  # prompts searched together
# Float32 encodes are mostly the final prompts, one a prompt and of any length: small batches
# pad them less (on real_pairs dev prompts, `fast` 16.0 -> 14.4 ms a prompt against batches of 64).
EXACT_BATCH = 16


def _runs(texts: Sequence[str]) -> str:
    """Texts joined by commas, consecutive single words by spaces."""
    groups: list[list[str]] = []
    for text in texts:
        if " " not in text and groups and " " not in groups[-1][-1]:
            groups[-1].append(text)
        else:
            groups.append([text])
    return ", ".join(" ".join(group) for group in groups)


def _fill_norms(norms: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Entries whose vectors came with them (a prepared table's prompts) have no norm: each gets
    the median norm of known entries of its token count (norms fall as phrases grow longer), or
    of all known entries; a bank with no norms at all gets 1 everywhere (tokens alone)."""
    norms = norms.astype(np.float32)  # a copy
    known = np.isfinite(norms)
    missing = ~known
    if not known.any():
        return np.ones_like(norms)
    overall = np.median(norms[known])
    for count in np.unique(tokens[missing]):
        same = known & (tokens == count)
        norms[missing & (tokens == count)] = np.median(norms[same]) if same.any() else overall
    return norms


def _tier(category: str) -> int:
    if category in SUBJECT_CATEGORIES:
        return 0
    return 2 if category in MODIFIER_CATEGORIES else 1


@dataclass
class Decoded:
    """A readable prompt for one target vector."""

    prompt: str
    score: float
    """Cosine between the encoder's vector of `prompt` and the target, computed exactly."""
    phrases: list[str]
    neighbours: list[tuple[str, float]] = field(default_factory=list)
    """Nearest bank entries to the target, with their cosines."""


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
        self.vectors = bank.vectors
        # Tokens a phrase adds to a prompt: its word pieces plus the comma before it.
        self.tokens = (np.maximum(bank.tokens, 1) + 1).astype(np.float32)
        self.norms_known = bool(np.isfinite(bank.norms).any())
        self.pull = self.tokens * _fill_norms(bank.norms, bank.tokens) ** PULL_POWER
        self.words = np.fromiter((len(t.split()) for t in bank.texts), np.int32, len(bank))
        # Where a phrase goes in a prompt: subjects, then other content, then modifiers.
        self.tier = np.fromiter((_tier(c) for c in bank.categories), np.int8, len(bank))
        # Content words of the entries met so far (a search meets a few thousand of ~80k, and
        # computing all of them would add ~0.6 s to every start).
        self._stems: dict[int, frozenset[str]] = {}
        self.encodes = 0  # texts encoded so far (the cost that matters)
        # Vectors met during one `decode` call, at float32 and at the search precision:
        # searches meet the same prompt again (a prefix, a swap that undoes a swap, the joining
        # written out at the end).
        self._memo: dict[str, tuple[np.ndarray, float]] = {}  # text -> (unit vector, norm)
        self._memo_search: dict[str, tuple[np.ndarray, float]] = {}
        precision = options.search_precision
        self.search_bf16 = precision == "bf16" or (
            precision == "auto" and native_bf16(encoder.device)
        )

    def decode(self, targets: np.ndarray) -> list[Decoded]:
        """One prompt per row of `targets` (unit vectors of the bank's dimension)."""
        targets = check_targets(targets, self.bank.dim)
        out: list[Decoded] = []
        # In chunks: every prompt of a chunk is searched in the same encoder batches, and the
        # chunk's remembered vectors (~200 per prompt in `best`) stay a few tens of MB.
        for start in range(0, len(targets), DECODE_CHUNK):
            self._forget()
            out.extend(self._decode(targets[start : start + DECODE_CHUNK]))
        self._forget()
        return out

    def _forget(self) -> None:
        self._memo.clear()
        self._memo_search.clear()

    def _decode(self, targets: np.ndarray) -> list[Decoded]:
        opts = self.options
        if opts.mode == "fast":
            k = max(opts.fast_shortlist, opts.neighbours)
        else:
            k = max(opts.shortlist, opts.neighbours)
        cosines, ids = self.bank.search(targets, k)
        if self.options.mode == "fast":
            chosen = self._fast(targets, ids)
        else:
            chosen = self._beam_search(targets, ids)
        # A search that found no usable entry (a bank of entries that repeat themselves).
        chosen = [c or [int(ids[i, 0])] for i, c in enumerate(chosen)]
        texts, scores = self.join_best(chosen, targets)
        # Estimates can err: where the nearest entry alone beats the assembly (and fits the
        # word limit), print that.
        fits = (self.words[ids[:, 0]] <= opts.max_words) & [self.usable(j) for j in ids[:, 0]]
        worse = np.flatnonzero((scores < cosines[:, 0] - 1e-3) & fits)
        if len(worse):
            for i in worse:
                chosen[i], texts[i] = [int(ids[i, 0])], self.bank.texts[ids[i, 0]]
            scores[worse] = self.score([texts[i] for i in worse], targets[worse])
        n = self.options.neighbours
        return [
            Decoded(
                prompt=texts[i],
                score=float(scores[i]),
                phrases=[self.bank.texts[j] for j in self.order(chosen[i], targets[i])],
                neighbours=[
                    (self.bank.texts[j], float(c))
                    for j, c in zip(ids[i, :n], cosines[i, :n], strict=True)
                    if j >= 0
                ],
            )
            for i in range(len(targets))
        ]

    # --- prompts from phrase ids ---------------------------------------------------------

    def order(self, phrases: Sequence[int], target: np.ndarray) -> list[int]:
        """Subject phrases first, then other content (actions, places, single words), then
        modifiers; within each, the phrase nearest to the target first. (Word order moves
        MiniLM's vector: a fixed rule keeps estimates and prompts consistent. Putting written
        subjects ahead of nearer single words cost nothing on 100 real_pairs dev prompts:
        0.9086 -> 0.9090.)"""
        ids = np.asarray(phrases, dtype=np.int64)
        cosines = self.vectors[ids] @ target
        return [int(ids[i]) for i in np.lexsort((-cosines, self.tier[ids]))]

    def compose(self, phrases: Sequence[int], target: np.ndarray) -> str:
        """The prompt as the search writes it: phrases joined by commas, except that runs of
        single words read as one phrase ("yearbook animals, a group photo"). Each comma is a
        token that pulls MiniLM's mean towards itself: searching with this joining instead of a
        comma after every word lifted `best` from 0.902 to 0.915 on 100 real_pairs dev prompts."""
        return _runs([self.bank.texts[j] for j in self.order(phrases, target)])

    def joinings(self, phrases: Sequence[int], target: np.ndarray) -> list[str]:
        """The ways the final prompt may be written out: as the search wrote it (`compose`),
        with a comma after every phrase, with no commas at all."""
        texts = [self.bank.texts[j] for j in self.order(phrases, target)]
        return list(dict.fromkeys([_runs(texts), ", ".join(texts), " ".join(texts)]))

    def join_best(
        self, chosen: Sequence[Sequence[int]], targets: np.ndarray
    ) -> tuple[list[str], np.ndarray]:
        """For each prompt the joining (`joinings`) that scores highest, and its exact score;
        on a tie the first listed. The joinings are compared at the search precision and only
        the winner is encoded in float32 (three float32 encodes per prompt were half of `fast`'s
        time)."""
        options = [self.joinings(c, t) for c, t in zip(chosen, targets, strict=True)]
        owners = np.repeat(np.arange(len(options)), [len(o) for o in options])
        scores = cosines(self.encode([t for o in options for t in o])[0], targets[owners])
        texts, start = [], 0
        for o in options:
            texts.append(o[int(np.argmax(scores[start : start + len(o)]))])
            start += len(o)
        return texts, self.score(texts, targets)

    def encode(self, texts: Sequence[str], exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors of `texts` and their norms: in float32 when `exact`, else at the search
        precision. Both are remembered for the rest of the `decode` call."""
        bf16 = not exact and self.search_bf16
        known = self._memo_search if bf16 else self._memo
        new = list(dict.fromkeys(t for t in texts if t not in known))
        self.encodes += len(new)
        with precision_context(bf16, self.encoder.device):
            batch = min(EXACT_BATCH, self.options.batch_size) if exact else self.options.batch_size
            vectors, norms = self.encoder.encode_with_norms(new, batch_size=batch)
        known.update(zip(new, zip(vectors, norms.tolist(), strict=True), strict=True))
        if not texts:
            return np.zeros((0, self.bank.dim), np.float32), np.zeros(0, np.float32)
        norms = np.array([known[t][1] for t in texts], dtype=np.float32)
        return np.stack([known[t][0] for t in texts]), norms

    def score(self, texts: Sequence[str], targets: np.ndarray) -> np.ndarray:
        """Exact (float32) cosine of each text's vector with its target row."""
        return cosines(self.encode(texts, exact=True)[0], targets)

    def _allowed(self, phrases: Sequence[int], words: int, candidate: int) -> bool:
        """No content word twice ("a dog, dogs", "a red fox, fox fur") and no more than
        max_words."""
        if words + self.words[candidate] > self.options.max_words or candidate in phrases:
            return False
        stems = self.stems(candidate)
        return stems is not None and not any(stems & self.stems(j) for j in phrases)

    def stems(self, entry: int) -> frozenset[str] | None:
        """The entry's content words and their singulars (`content_stems`); None for an entry
        that says a word twice itself, which no prompt may use."""
        if entry not in self._stems:
            text = self.bank.texts[entry]
            self._stems[entry] = None if says_a_word_twice(text) else content_stems(text)
        return self._stems[entry]

    def usable(self, entry: int) -> bool:
        return self.stems(entry) is not None

    # --- fast: greedy on additive estimates ------------------------------------------------

    def _fast(self, targets: np.ndarray, ids: np.ndarray) -> list[list[int]]:
        """Greedy assembly, then the best of its prefixes by the encoder: the additive estimate
        overrates long prompts (measured: the full greedy prompt scores ~0.07 below its best
        prefix), and encoding a handful of short prefixes costs a few milliseconds."""
        sequences = [self._greedy(t, ids[i]) for i, t in enumerate(targets)]
        # The one-phrase prefix is the nearest entry (where usable), which `_decode` compares with.
        prefixes = [
            (i, seq[:n])
            for i, seq in enumerate(sequences)
            for n in range(min(2, len(seq)), len(seq) + 1)
        ]
        texts = [self.compose(prefix, targets[i]) for i, prefix in prefixes]
        owners = np.array([i for i, _ in prefixes])
        scores = cosines(self.encode(texts)[0], targets[owners])
        best: dict[int, tuple[float, list[int]]] = {}
        for (i, prefix), score in zip(prefixes, scores, strict=True):
            if i not in best or score > best[i][0]:
                best[i] = (float(score), prefix)
        return [best[i][1] for i in range(len(targets))]

    def _greedy(self, target: np.ndarray, ids: np.ndarray) -> list[int]:
        ids = ids[: self.options.fast_shortlist]
        ids = ids[ids >= 0]
        weighted = self.vectors[ids] * self.pull[ids, None]  # pull-weighted phrase vectors
        gains = weighted @ target
        # Rows of the Gram matrix only for the picks (a handful), not the whole shortlist.
        squares = np.einsum("ij,ij->i", weighted, weighted)
        # Positions in `ids`; the nearest usable entry is the subject.
        chosen = [next((p for p, j in enumerate(ids) if self.usable(int(j))), 0)]
        total_dot, total_sq = gains[chosen[0]], squares[chosen[0]]
        cross = weighted @ weighted[chosen[0]]  # (sum of chosen) . each candidate
        best = total_dot / np.sqrt(total_sq)
        words = int(self.words[ids[chosen[0]]])
        while len(chosen) < min(self.options.max_phrases, self.options.fast_max_phrases):
            estimate = (total_dot + gains) / np.sqrt(total_sq + squares + 2 * cross)
            pick = -1
            for position in np.argsort(-estimate):
                if estimate[position] <= best:
                    break
                if self._allowed([ids[c] for c in chosen], words, ids[position]):
                    pick = int(position)
                    break
            if pick < 0:
                break
            chosen.append(pick)
            best = estimate[pick]
            total_dot += gains[pick]
            total_sq += squares[pick] + 2 * cross[pick]
            cross += weighted @ weighted[pick]
            words += int(self.words[ids[pick]])
        return [int(ids[c]) for c in chosen]

    # --- best: beam search scored by the encoder ------------------------------------------

    def _beam_search(self, targets: np.ndarray, ids: np.ndarray) -> list[list[int]]:
        opts = self.options
        searches = [
            _Search(self, target, ids[i, : opts.shortlist]) for i, target in enumerate(targets)
        ]
        for _step in range(opts.max_phrases):
            active = [s for s in searches if s.active]
            if not active:
                break
            if opts.residual_shortlist and _step > 0:  # at first a residual is the target
                residuals = np.concatenate([s.residuals() for s in active])
                _, found = self.bank.search(residuals, opts.residual_shortlist)
                start = 0
                for s in active:
                    s.add_to_pool(found[start : start + len(s.beams)])
                    start += len(s.beams)
            proposals = [s.propose() for s in active]
            texts = [
                self.compose(p, s.target)
                for s, props in zip(active, proposals, strict=True)
                for p in props
            ]
            vectors, norms = self.encode(texts)
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

    def _swap(self, searches: list[_Search]) -> bool:
        """Try replacing one phrase of each best prompt by a pool entry (the replacements the
        additive estimate ranks highest); keep a replacement that raises the score."""
        proposals = [s.swaps() for s in searches]
        texts = [
            self.compose(p, s.target)
            for s, props in zip(searches, proposals, strict=True)
            for p in props
        ]
        if not texts:
            return False
        vectors, norms = self.encode(texts)
        start, improved = 0, False
        for s, props in zip(searches, proposals, strict=True):
            if props:
                scores = vectors[start : start + len(props)] @ s.target
                i = int(np.argmax(scores))
                if scores[i] > s.best.score:
                    j = start + i
                    s.best = _Beam(props[i], vectors[j], norms[j], float(scores[i]), self)
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
            texts = [
                self.compose(v, s.target) for s, vs in zip(todo, variants, strict=True) for v in vs
            ]
            vectors, norms = self.encode(texts)
            start, again = 0, []
            for s, vs in zip(todo, variants, strict=True):
                scores = vectors[start : start + len(vs)] @ s.target
                i = int(np.argmax(scores))
                j = start + i
                start += len(vs)
                if scores[i] >= s.best.score:
                    s.best = _Beam(vs[i], vectors[j], norms[j], float(scores[i]), self)
                    if len(s.best.phrases) > 1:
                        again.append(s)
            todo = again


@dataclass
class _Beam:
    phrases: list[int]
    vector: np.ndarray  # the encoder's unit vector of the composed prompt
    norm: float  # and its norm
    score: float
    decoder: Decoder = field(repr=False)

    @property
    def words(self) -> int:
        return int(sum(self.decoder.words[j] for j in self.phrases))

    @property
    def pull(self) -> float:
        """The prompt's pull (as `Decoder.pull`'s): its tokens (phrases and commas, counted in
        `Decoder.tokens`, one too many, and the two special tokens MiniLM adds: [CLS], [SEP])
        times its norm to `PULL_POWER`."""
        tokens = sum(self.decoder.tokens[j] for j in self.phrases) + 1
        # A bank without norms weighs its entries by tokens alone; beams must do the same.
        norm = self.norm if self.decoder.norms_known else 1.0
        return float(tokens * norm**PULL_POWER)


class _Search:
    """Beam search state for one target."""

    def __init__(self, decoder: Decoder, target: np.ndarray, shortlist: np.ndarray) -> None:
        self.decoder = decoder
        self.target = target
        self.pool = [int(j) for j in shortlist if j >= 0]
        self.in_pool = set(self.pool)
        empty = _Beam([], np.zeros_like(target), 0.0, 0.0, decoder)
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
        d = self.decoder
        pool = np.asarray(self.pool)
        vectors = d.vectors[pool]
        gains = vectors @ self.target  # cos(entry, target)
        w = d.pull[pool]
        scored: list[tuple[float, int, int]] = []  # (estimate, beam index, entry)
        for b, beam in enumerate(self.beams):
            if beam.phrases:
                big_w = beam.pull
                dot = big_w * beam.score + w * gains
                sq = big_w**2 + w**2 + 2 * big_w * w * (vectors @ beam.vector)
                estimate = dot / np.sqrt(sq)
            else:
                estimate = gains
            top = np.argpartition(-estimate, min(len(estimate) - 1, 4 * d.options.encodes_per_step))
            top = top[: 4 * d.options.encodes_per_step]
            scored.extend((float(estimate[i]), b, int(pool[i])) for i in top)
        scored.sort(reverse=True)
        proposals: list[list[int]] = []
        seen: set[tuple[int, ...]] = set()
        for _, b, j in scored:
            beam = self.beams[b]
            if not d._allowed(beam.phrases, beam.words, j):
                continue
            phrases = [*beam.phrases, j]
            key = tuple(sorted(phrases))
            if key in seen:
                continue
            seen.add(key)
            proposals.append(phrases)
            if len(proposals) == d.options.encodes_per_step:
                break
        return proposals

    def swaps(self) -> list[list[int]]:
        """Best prompt with one phrase replaced, the replacements ranked by additive estimate."""
        d = self.decoder
        best = self.best
        pool = np.asarray([j for j in self.pool if j not in best.phrases])
        if len(pool) == 0:
            return []
        vectors = d.vectors[pool]
        w = d.pull[pool]
        gains = vectors @ self.target
        scored: list[tuple[float, int, int]] = []  # (estimate, position replaced, entry)
        for i, old in enumerate(best.phrases):
            # What remains after taking phrase i out, in additive terms.
            rest = best.pull * best.vector - d.pull[old] * d.vectors[old]
            dot = rest @ self.target + w * gains
            sq = rest @ rest + w**2 + 2 * w * (vectors @ rest)
            estimate = dot / np.sqrt(np.maximum(sq, 1e-9))
            k = min(len(pool), d.options.encodes_per_step)
            for c in np.argpartition(-estimate, k - 1)[:k]:
                scored.append((float(estimate[c]), i, int(pool[c])))
        scored.sort(reverse=True)
        proposals = []
        for _, i, j in scored:
            rest = best.phrases[:i] + best.phrases[i + 1 :]
            words = best.words - int(d.words[best.phrases[i]])
            if d._allowed(rest, words, j):
                proposals.append([*rest[:i], j, *rest[i:]])
                if len(proposals) == d.options.encodes_per_step:
                    break
        return proposals

    def accept(self, proposals: list[list[int]], vectors: np.ndarray, norms: np.ndarray) -> None:
        """Keep the best-scoring extensions as the next beams; stop when none improves."""
        d = self.decoder
        if not proposals:
            self.active = False
            return
        scores = vectors @ self.target
        order = np.argsort(-scores)[: d.options.beam_width]
        beams = [_Beam(proposals[i], vectors[i], norms[i], float(scores[i]), d) for i in order]
        if beams[0].score > self.best.score:
            self.best = beams[0]
            self.stale = 0
        else:
            self.stale += 1
        # One more phrase can lower the score and the next raise it again (a pair that belongs
        # together), so the search goes on for `patience` steps without improvement.
        longest = len(beams[0].phrases) >= d.options.max_phrases
        self.active = self.stale <= d.options.patience and not longest
        self.beams = beams
