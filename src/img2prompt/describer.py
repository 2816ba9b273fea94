"""Image -> readable prompt: a model predicts the prompt's MiniLM vector, a bank decodes it.

`Describer` loads the model, the target encoder, the bank and the decoder once; the `describe`
command and the web app (`img2prompt.serve`) share it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from img2prompt.config import ServeLimits
from img2prompt.data.images import find_images, load_image_bytes
from img2prompt.errors import ConfigError, InputError
from img2prompt.io import atomic_path, vector_column, write_parquet
from img2prompt.predict.predictor import Failure, PredictOptions, Predictor
from img2prompt.predict.tta import render_views
from img2prompt.text.decode import Decoded, DecodeOptions, Decoder


@dataclass
class Description:
    """What img2prompt says about one image."""

    image: str
    """The image as given (a path, or an upload's name)."""
    prompt: str
    """The readable prompt decoded from the predicted embedding."""
    match: float
    """Cosine between MiniLM's vector of `prompt` and `embedding`: how well the words say the
    predicted embedding. Not how close the prediction is to the image's true prompt: a vague
    prediction is as easy to put into words as a right one."""
    embedding: np.ndarray
    """The predicted prompt embedding: 384 float32, unit length."""
    phrases: list[str] = field(default_factory=list)
    neighbours: list[tuple[str, float]] = field(default_factory=list)
    """Nearest bank entries to the embedding, with their cosines."""
    nearest_prompts: list[tuple[str, float]] = field(default_factory=list)
    """Index models: the real prompts most CLIP-similar to the image, with their CLIP cosines
    (the prompts the prediction blends)."""
    interrogation: str = ""
    """Index models: a prompt of bank phrases chosen by CLIP image-text similarity."""
    interrogation_score: float | None = None
    """Cosine between MiniLM's vector of `interrogation` and `embedding`."""

    @property
    def score(self) -> float:
        """Deprecated name of `match`."""
        return self.match

    def to_json(self) -> dict[str, Any]:
        out = {
            "image": self.image,
            "prompt": self.prompt,
            "match": round(self.match, 6),
            "score": round(self.match, 6),  # deprecated alias of "match", kept for old clients
            "embedding": [float(x) for x in self.embedding],
            "phrases": self.phrases,
            "neighbors": [{"text": t, "cosine": round(c, 6)} for t, c in self.neighbours],
        }
        if self.nearest_prompts:
            out["nearest_prompts"] = [
                {"prompt": t, "clip_cosine": round(c, 6)} for t, c in self.nearest_prompts
            ]
        if self.interrogation:  # the names `POST /api/describe` answers with
            out["interrogation"] = self.interrogation
            out["interrogation_score"] = round(self.interrogation_score or 0.0, 6)
        return out


@dataclass
class DescribeRun:
    descriptions: list[Description]
    failures: list[Failure]
    seconds: float

    @property
    def mean_match(self) -> float:
        """Mean cosine of each prompt's own embedding to the predicted one (0 when empty)."""
        return sum(d.match for d in self.descriptions) / max(len(self.descriptions), 1)


class Describer:
    """A model, its target encoder, a prompt bank and a decoder, loaded once.

    `model`: a model folder, `default`, or a loaded `ImageToPromptModel`; `bank`: `default` or a
    bank folder built with the model's target encoder. Not thread-safe: call it from one thread
    at a time (the web app runs it in a single worker thread)."""

    def __init__(
        self,
        model: Any = "default",
        bank: str | Path = "default",
        mode: str = "fast",
        predict_options: PredictOptions | None = None,
        decode_options: DecodeOptions | None = None,
        progress: bool = False,
        interrogate: bool = True,
        nearest_prompts: int = 5,
    ) -> None:
        from img2prompt.data.embed import load_encoder
        from img2prompt.device import resolve_device
        from img2prompt.index.model import FeatureModel, RetrievalModel
        from img2prompt.models.model import load_model
        from img2prompt.text.bank import open_bank

        self.model_name = str(model) if isinstance(model, str | Path) else type(model).__name__
        self.bank_name = str(bank)
        options = predict_options or PredictOptions()
        if isinstance(model, str | Path):
            model = load_model(model, resolve_device(options.device))
        # An index model: the predictor yields CLIP image features, and `_describe_embeddings`
        # searches the index itself, so the nearest prompts and the interrogation need no
        # second pass through CLIP.
        self.retrieval = model if isinstance(model, RetrievalModel) else None
        self.nearest_prompts = nearest_prompts
        if self.retrieval is not None:
            self.retrieval.set_retrieval(options.k, options.temperature)
            options = replace(options, k=0, temperature=0.0)
            self.predictor = Predictor(FeatureModel(self.retrieval), options)
            cfg = self.retrieval.cfg
        else:
            self.predictor = Predictor(model, options)
            cfg = self.predictor.model.cfg
        self.encoder = load_encoder(cfg.target_encoder, self.predictor.options.device)
        if self.encoder.dim != cfg.out_dim:
            raise ConfigError(
                f"the model predicts {cfg.out_dim} dimensions, its target encoder "
                f"{cfg.target_encoder!r} makes {self.encoder.dim}"
            )
        self.bank = open_bank(bank, self.encoder, progress=progress)
        options = decode_options or DecodeOptions(mode=mode)
        self.decoder = Decoder(self.bank, self.encoder, options)
        self.interrogator = None
        if self.retrieval is not None and interrogate and self.retrieval.folder is not None:
            from img2prompt.index.interrogate import Interrogator
            from img2prompt.index.model import CLIP_FOLDER

            self.interrogator = Interrogator(
                self.retrieval.folder / CLIP_FOLDER,
                self.bank.texts,
                self.bank.categories,
                device=str(self.predictor.device),
            )

    @property
    def mode(self) -> str:
        return self.decoder.options.mode

    def describe(
        self, images: Sequence[Image.Image], names: Sequence[str] | None = None
    ) -> list[Description]:
        """Images in memory (any mode) -> one `Description` each, in order (`names` label
        them; by default `image 0`, `image 1` ...)."""
        if not images:
            return []
        names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
        return self._describe_embeddings(names, self.predictor.embed_images(images))

    def describe_files(self, inputs: Sequence[str | Path], progress: bool = False) -> DescribeRun:
        """Image files and folders (searched recursively) -> descriptions, in input order;
        undecodable images are listed in `failures`, not fatal."""
        started = time.perf_counter()
        missing = [
            Failure(str(p), "no such file or folder") for p in inputs if not Path(p).exists()
        ]
        paths = find_images([Path(p) for p in inputs if Path(p).exists()])
        if not paths and not missing:
            raise ConfigError(
                f"no images (png, jpg, jpeg, webp) under {', '.join(map(str, inputs))}"
            )
        predictions = self.predictor.predict_files(paths, progress=progress)
        descriptions = self._describe_embeddings(predictions.images, predictions.embeddings)
        failures = missing + predictions.failures
        return DescribeRun(descriptions, failures, time.perf_counter() - started)

    def describe_uploads(
        self, uploads: Sequence[tuple[str, bytes]], max_pixels: int | None = None
    ) -> list[Description | InputError]:
        """Encoded images held in memory (name, bytes) -> a `Description` or the `InputError`
        that says why it could not be read, for each, in order. Each image is decoded and
        turned into model input at once, so only one full-size image is in memory at a time.
        `max_pixels` defaults to the server's limit (config.ServeLimits)."""
        if max_pixels is None:
            max_pixels = ServeLimits().max_pixels
        names: list[str] = []
        views: list[np.ndarray] = []
        errors: list[InputError | None] = []
        for name, data in uploads:
            try:
                image = load_image_bytes(data, name, max_pixels)
                views.append(render_views(image, self.predictor.views))
                names.append(name)
                errors.append(None)
            except InputError as e:
                errors.append(e)
        described = iter(self._describe_embeddings(names, self.predictor.embed_views(views)))
        return [next(described) if error is None else error for error in errors]

    def _describe_embeddings(
        self, names: Sequence[str], embeddings: np.ndarray
    ) -> list[Description]:
        if len(names) == 0:
            return []
        features = None
        if self.retrieval is not None:  # the predictor's rows are CLIP image features
            # One search serves both the blend (first k columns) and the nearest prompts.
            features, cfg, index = embeddings, self.retrieval.cfg, self.retrieval.index
            scores, ids = index.search(features, max(cfg.k, self.nearest_prompts, 1))
            embeddings = index.blend(scores[:, : cfg.k], ids[:, : cfg.k], cfg.temperature)
        decoded: list[Decoded] = self.decoder.decode(embeddings)
        descriptions = [
            Description(name, d.prompt, d.score, vector, d.phrases, d.neighbours)
            for name, d, vector in zip(names, decoded, embeddings, strict=True)
        ]
        if features is not None:
            self._explain_retrieval(descriptions, features, scores, ids)
        return descriptions

    def _explain_retrieval(
        self,
        descriptions: list[Description],
        features: np.ndarray,
        scores: np.ndarray,
        ids: np.ndarray,
    ) -> None:
        """The nearest real prompts of an index model and the CLIP-space interrogation, from
        the (B, >= 1) cosines and row ids the blend was searched with."""
        assert self.retrieval is not None
        index = self.retrieval.index
        for d, row_scores, row_ids in zip(descriptions, scores, ids, strict=True):
            d.nearest_prompts = [
                (index.prompts[int(i)], float(c))
                for c, i in zip(row_scores[: self.nearest_prompts], row_ids, strict=False)
                if i >= 0
            ]
        if self.interrogator is None:
            return
        nearest = [index.prompts[int(row[0])] for row in ids]
        found = self.interrogator.interrogate(features, fallback_subjects=nearest)
        vectors = self.encoder.encode([f.prompt for f in found])
        for d, f, vector in zip(descriptions, found, vectors, strict=True):
            d.interrogation = f.prompt
            d.interrogation_score = float(vector @ d.embedding)


def check_description_output(out: Path) -> None:
    """Refuse an `--out` that `write_descriptions` cannot write (before any work is done)."""
    if out.suffix.lower() not in (".parquet", ".json"):
        raise ConfigError(f"--out must end in .parquet or .json, got {out.name!r}")


def write_descriptions(run: DescribeRun, out: Path) -> None:
    """`.parquet`: image, prompt, match, embedding (list<float32>), phrases, neighbours;
    `.json`: the same as a list of objects plus the failures."""
    check_description_output(out)
    if out.suffix.lower() == ".json":
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(descriptions_json(run), indent=1) + "\n", encoding="utf-8")
        return
    d = run.descriptions
    dim = d[0].embedding.shape[0] if d else 384
    table = pa.table(
        {
            "image": [x.image for x in d],
            "prompt": [x.prompt for x in d],
            "match": pa.array([x.match for x in d], pa.float32()),
            "embedding": vector_column(
                np.stack([x.embedding for x in d]) if d else np.zeros((0, dim), np.float32)
            ),
            "phrases": pa.array([x.phrases for x in d], pa.list_(pa.string())),
            "neighbours": pa.array(
                [[t for t, _ in x.neighbours] for x in d], pa.list_(pa.string())
            ),
            "neighbour_cosines": pa.array(
                [[c for _, c in x.neighbours] for x in d], pa.list_(pa.float32())
            ),
        }
    )
    if any(x.nearest_prompts for x in d):  # an index model
        table = table.append_column(
            "nearest_prompts", pa.array([[t for t, _ in x.nearest_prompts] for x in d])
        )
        table = table.append_column(
            "nearest_prompt_clip_cosines",
            pa.array([[c for _, c in x.nearest_prompts] for x in d], pa.list_(pa.float32())),
        )
        table = table.append_column("interrogation", pa.array([x.interrogation for x in d]))
        table = table.append_column(
            "interrogation_score",
            pa.array([x.interrogation_score for x in d], pa.float32()),
        )
    write_parquet(table, out)


def descriptions_json(run: DescribeRun) -> dict[str, Any]:
    return {
        "results": [d.to_json() for d in run.descriptions],
        "failures": [{"image": f.image, "reason": f.reason} for f in run.failures],
    }
