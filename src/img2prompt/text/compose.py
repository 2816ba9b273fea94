"""How bank phrases become a prompt: which phrases may stand together, in what order, joined how.

A `Composer` knows each bank entry's vector, *pull* (its weight in the vector of a prompt it
joins), word count, place in a prompt (subjects, then other content, then modifiers) and content
words. The search strategies (`strategies.py`) ask it what they may build and how it reads.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from img2prompt.text.bank_index import FILLER_CATEGORIES, PROMPT_WORD, PromptBank
from img2prompt.text.bank_sources import content_stems, says_a_word_twice

# Categories whose phrases describe how a picture looks rather than what it shows; they go after
# the subject. The names are those of the packaged bank and of the usual public phrase lists.
# Not "flavors": CLIP Interrogator's list mixes subjects ("a robot dog") with styles, and sending
# all of it last costs ~0.002 of round-trip cosine on bench_decode.
MODIFIER_CATEGORIES = frozenset(
    {
        "artists",
        "camera",
        "colors",
        "composition",
        "lighting",
        "mediums",
        "movements",
        "negative",
        "quality",
        "styles",
    }
)
SUBJECT_CATEGORIES = frozenset({"subjects"})
PULL_POWER = 2.0
"""A text's pull on the vector of a prompt it joins: its tokens times its norm (the length of its
mean token vector, `img2prompt.targets.encoder`) to this power. Words that agree (a short phrase, a
single word) have long mean vectors and hold their direction in a prompt; a long, mixed phrase
is diluted. Power 2 ranked the extensions a search step encodes best (benchmarks/bench_decode)."""


MAX_SINGLE_WORDS = 3
"""Readable prompts: at most this many single-word entries (runs of them read as word salad;
chosen on real_pairs dev prompts, benchmarks/bench_decode.py)."""
CODE_LIKE = re.compile(r"(?=.*[a-z])(?=.*\d)(?!\d+(?:k|p|d|s|mm|px|th|st|nd|rd)$)[a-z0-9]+")
"""Readable prompts: a lone word mixing letters and digits reads as a code ("c4", "h0", "r2d2"),
unless it is a number with its unit ("8k", "35mm", "1080p", "1980s")."""
CONNECTORS = frozenset(
    {
        "on",
        "in",
        "at",
        "with",
        "by",
        "under",
        "over",
        "near",
        "of",
        "and",
        "from",
        "behind",
        "above",
        "below",
        "beside",
        "inside",
        "into",
        "through",
        "across",
        "against",
        "along",
        "among",
        "around",
        "before",
        "after",
        "during",
        "for",
        "to",
        "while",
        "next",
        "holding",
        "wearing",
        "sitting",
        "standing",
        "riding",
        "eating",
        "made",
        "covered",
        "surrounded",
    }
)
"""Readable prompts are written without commas only where each later phrase goes on from the
one before ("a bicycle on a boat", not "a wine glass a dog")."""
NEAREST_PERMIT = 8
"""A safety-list word may appear where one of the target's this many nearest entries says it."""


@functools.cache
def safety_words() -> frozenset[str]:
    """Sexual, violent and slur words (better-profanity's list, MIT): a readable prompt says one
    only where the target's nearest real prompts do. The file is found without importing the
    package, whose import builds its own censor patterns (~0.05 s of every start)."""
    spec = importlib.util.find_spec("better_profanity")
    folder = Path(spec.submodule_search_locations[0])  # type: ignore[union-attr,index]
    text = (folder / "profanity_wordlist.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


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
    """The bank's phrases as prompt parts; `max_words` bounds every prompt. `readable`: only
    words that prompts use (dictionary filler only where the bank's prompt phrases use the word
    too), and no safety-list word the target's nearest entries do not say."""

    def __init__(
        self, bank: PromptBank, max_words: int, readable: bool = False, filler: bool = False
    ) -> None:
        self.bank = bank
        self.max_words = max_words
        self.readable = readable
        self.filler = filler or not readable
        """Take dictionary words that no prompt phrase uses (`fast` may: it adds few words, and
        its prompts read like real ones with them; `best`'s longer search stuffed them in)."""
        self._unsafe: dict[int, frozenset[str]] = {}
        self.vectors = bank.vectors
        # Tokens a phrase adds to a prompt: its word pieces plus the comma before it.
        self.tokens = (np.maximum(bank.tokens, 1) + 1).astype(np.float32)
        self.norms_known = bool(np.isfinite(bank.norms).any())
        self.norms = fill_norms(bank.norms, bank.tokens)
        self.pull = self.tokens * self.norms**PULL_POWER
        self.words = np.fromiter((len(t.split()) for t in bank.texts), np.int32, len(bank))
        tiers = {category: tier(category) for category in set(bank.categories)}  # a few dozen
        self.tier = np.fromiter(map(tiers.__getitem__, bank.categories), np.int8, len(bank))
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
        with a comma after every phrase, with no commas at all (readable: only where each phrase
        after the first starts with a `CONNECTORS` word)."""
        texts = [self.bank.texts[j] for j in self.order(phrases, target)]
        ways = [runs(texts), ", ".join(texts)]
        if not self.readable or all(t.split()[0].lower() in CONNECTORS for t in texts[1:]):
            ways.append(" ".join(texts))
        return list(dict.fromkeys(ways))

    def allowed(
        self,
        phrases: Sequence[int],
        words: int,
        candidate: int,
        permitted: frozenset[str] = frozenset(),
    ) -> bool:
        """May `candidate` join `phrases` (`words` long)? Not past `max_words`, no content word
        twice ("a dog, dogs", "a red fox, fox fur"), and (readable) no safety-list word but the
        `permitted` ones (`permitted_for`)."""
        if words + self.words[candidate] > self.max_words or candidate in phrases:
            return False
        stems = self.stems(candidate)
        if stems is None or not self.safe(candidate, permitted):
            return False
        if self.readable and self.words[candidate] == 1:
            singles = sum(self.words[j] == 1 for j in phrases)
            if singles >= MAX_SINGLE_WORDS:
                return False
        return not any(stems & self.stems(j) for j in phrases)  # type: ignore[operator]

    def stems(self, entry: int) -> frozenset[str] | None:
        """The entry's content words and their singulars (`content_stems`); None for an entry
        no prompt may use: one that says a word twice itself, or (readable) filler."""
        if entry not in self._stems:
            text = self.bank.texts[entry]
            unusable = says_a_word_twice(text) or (not self.filler and self._filler(entry))
            unusable = unusable or (self.readable and CODE_LIKE.fullmatch(text.lower()) is not None)
            self._stems[entry] = None if unusable else content_stems(text)
        return self._stems[entry]

    def usable(self, entry: int, permitted: frozenset[str] | None = None) -> bool:
        """Usable at all; with `permitted`, also safe for that target."""
        if self.stems(entry) is None:
            return False
        return permitted is None or self.safe(entry, permitted)

    def safe(self, entry: int, permitted: frozenset[str]) -> bool:
        return not self.readable or self.unsafe(entry) <= permitted

    def unsafe(self, entry: int) -> frozenset[str]:
        """The entry's safety-list words."""
        if entry not in self._unsafe:
            words = set(PROMPT_WORD.findall(self.bank.texts[entry].lower()))
            self._unsafe[entry] = frozenset(words & safety_words())
        return self._unsafe[entry]

    def permitted_for(self, nearest: np.ndarray) -> frozenset[str]:
        """The safety-list words a target's nearest entries (real prompts and phrases) say: a
        readable prompt may say them too."""
        if not self.readable:
            return frozenset()
        ids = [int(j) for j in nearest[:NEAREST_PERMIT] if j >= 0]
        return frozenset().union(*(self.unsafe(j) for j in ids))

    def _filler(self, entry: int) -> bool:
        """A dictionary or encoder-vocabulary word that no prompt phrase of the bank uses."""
        if self.bank.categories[entry] not in FILLER_CATEGORIES:
            return False
        words = set(PROMPT_WORD.findall(self.bank.texts[entry].lower()))
        return not words <= self.bank.prompt_words()

    def phrase_words(self, phrases: Sequence[int]) -> int:
        return int(sum(self.words[j] for j in phrases))
