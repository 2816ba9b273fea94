"""How bank phrases become a prompt: which phrases may stand together, in what order, joined how.

A `Composer` knows each bank entry's vector, *pull* (its weight in the vector of a prompt it
joins), word count, place in a prompt (subjects, then other content, then modifiers) and content
words. The search strategies (`strategies.py`) ask it what they may build and how it reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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
PULL_POWER = 2.0
"""A text's pull on the vector of a prompt it joins: its tokens times its norm (the length of its
mean token vector, `img2prompt.data.embed`) to this power. Words that agree (a short phrase, a
single word) have long mean vectors and hold their direction in a prompt; a long, mixed phrase
is diluted. Power 2 ranked the extensions a search step encodes best (benchmarks/bench_decode)."""


def runs(texts: Sequence[str]) -> str:
    """Texts joined by commas, consecutive single words by spaces."""
    groups: list[list[str]] = []
    for text in texts:
        if " " not in text and groups and " " not in groups[-1][-1]:
            groups[-1].append(text)
        else:
            groups.append([text])
    return ", ".join(" ".join(group) for group in groups)


def fill_norms(norms: np.ndarray, tokens: np.ndarray) -> np.ndarray:
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


def tier(category: str) -> int:
    """Where a phrase of `category` goes: 0 subjects, 1 other content, 2 modifiers."""
    if category in SUBJECT_CATEGORIES:
        return 0
    return 2 if category in MODIFIER_CATEGORIES else 1


class Composer:
    """The bank's phrases as prompt parts; `max_words` bounds every prompt."""

    def __init__(self, bank: PromptBank, max_words: int) -> None:
        self.bank = bank
        self.max_words = max_words
        self.vectors = bank.vectors
        # Tokens a phrase adds to a prompt: its word pieces plus the comma before it.
        self.tokens = (np.maximum(bank.tokens, 1) + 1).astype(np.float32)
        self.norms_known = bool(np.isfinite(bank.norms).any())
        self.pull = self.tokens * fill_norms(bank.norms, bank.tokens) ** PULL_POWER
        self.words = np.fromiter((len(t.split()) for t in bank.texts), np.int32, len(bank))
        self.tier = np.fromiter((tier(c) for c in bank.categories), np.int8, len(bank))
        # Content words of the entries met so far (a search meets a few thousand of ~80k, and
        # computing all of them would add ~0.6 s to every start).
        self._stems: dict[int, frozenset[str] | None] = {}

    def order(self, phrases: Sequence[int], target: np.ndarray) -> list[int]:
        """Subject phrases first, then other content (actions, places, single words), then
        modifiers; within each, the phrase nearest to the target first. (Word order moves
        MiniLM's vector: a fixed rule keeps estimates and prompts consistent.)"""
        ids = np.asarray(phrases, dtype=np.int64)
        cosines = self.vectors[ids] @ target
        return [int(ids[i]) for i in np.lexsort((-cosines, self.tier[ids]))]

    def compose(self, phrases: Sequence[int], target: np.ndarray) -> str:
        """The prompt as the search writes it: phrases joined by commas, except that runs of
        single words read as one phrase ("yearbook animals, a group photo"): each comma is a
        token that pulls MiniLM's mean towards itself."""
        return runs([self.bank.texts[j] for j in self.order(phrases, target)])

    def joinings(self, phrases: Sequence[int], target: np.ndarray) -> list[str]:
        """The ways the final prompt may be written out: as the search wrote it (`compose`),
        with a comma after every phrase, with no commas at all."""
        texts = [self.bank.texts[j] for j in self.order(phrases, target)]
        return list(dict.fromkeys([runs(texts), ", ".join(texts), " ".join(texts)]))

    def allowed(self, phrases: Sequence[int], words: int, candidate: int) -> bool:
        """May `candidate` join `phrases` (`words` long)? Not past `max_words`, and no content
        word twice ("a dog, dogs", "a red fox, fox fur")."""
        if words + self.words[candidate] > self.max_words or candidate in phrases:
            return False
        stems = self.stems(candidate)
        return stems is not None and not any(stems & self.stems(j) for j in phrases)  # type: ignore[operator]

    def stems(self, entry: int) -> frozenset[str] | None:
        """The entry's content words and their singulars (`content_stems`); None for an entry
        that says a word twice itself, which no prompt may use."""
        if entry not in self._stems:
            text = self.bank.texts[entry]
            self._stems[entry] = None if says_a_word_twice(text) else content_stems(text)
        return self._stems[entry]

    def usable(self, entry: int) -> bool:
        return self.stems(entry) is not None

    def phrase_words(self, phrases: Sequence[int]) -> int:
        return int(sum(self.words[j] for j in phrases))
