"""Image -> readable prompt: a model predicts the prompt's MiniLM vector, a bank decodes it.

`Describer` loads the model, the target encoder, the bank and the decoder once; the `describe`
command and the web app (`img2prompt.app.serve`) share it. Where a person asks for a prompt, a file
that carries its own (SD front ends' metadata, `img2prompt.metadata`) is answered with it and
the model's guess stands beside it (`metadata="auto"`); `with_metadata` is that rule's one home.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import pyarrow as pa
from PIL import Image
from typing_extensions import TypedDict  # pydantic reads it for the HTTP schema (Python < 3.12)

from img2prompt.data.images import (
    UPLOAD_MAX_PIXELS,
    ImageSearch,
    detached,
    load_image_bytes,
    scan_images,
)
from img2prompt.errors import ConfigError, InputError
from img2prompt.metadata import GenerationMetadata, read_metadata
from img2prompt.metadata.passes import PassJSON
from img2prompt.metadata.reader import NOT_AN_IMAGE
from img2prompt.metadata.use import MetadataUse
from img2prompt.models.protocol import CAPTIONER_KIND, PromptModel
from img2prompt.predict.options import PredictOptions
from img2prompt.predict.predictor import Failure, Predictor
from img2prompt.results import NEIGHBORS, Neighbor, write_results
from img2prompt.text.decode import Decoded, DecodeOptions, Decoder

if TYPE_CHECKING:
    from img2prompt.predict.captioned import Captioned
    from img2prompt.targets.encoder import TargetEncoder


class CaptionCandidate(TypedDict):
    """Captioners: one candidate prompt, the captioner's mean log-probability per token and the
    judge's cosine."""

    prompt: str
    logprob: float
    judge_cosine: float | None


class NearestPrompt(TypedDict):
    """Index models: a real prompt near the image, with its CLIP cosine, as the JSON says it."""

    prompt: str
    clip_cosine: float


REQUIRED: Any = ...
"""`OutputField.default` of a field every description has."""


@dataclass(frozen=True)
class OutputField:
    """One field of a description as it leaves img2prompt: a `to_json` key, a Parquet column
    (`DESCRIPTION_SCHEMA`) and a field of the web app's answer, all made from this one entry."""

    name: str
    type: Any
    """The JSON value's Python type (the web app's schema is built from it)."""
    arrow: pa.DataType
    doc: str
    default: Any = REQUIRED
    """The value when a description lacks that part (no metadata read, no index model)."""
    index_only: bool = False
    """Only index models fill it: left out of the JSON when it is at its default."""
    captioner_only: bool = False
    """Only captioner models fill it: left out of the JSON when it is at its default."""


DESCRIPTION_FIELDS: tuple[OutputField, ...] = (
    OutputField("image", str, pa.string(), "The image as given (a path, or an upload's name)."),
    OutputField(
        "prompt",
        str | None,
        pa.string(),
        "The prompt embedded in the file where it carries one (`source` is `metadata`), else "
        "the readable prompt decoded from the predicted embedding.",
    ),
    OutputField(
        "source",
        Literal["metadata", "model", "none"],
        pa.string(),
        "Where `prompt` comes from.",
    ),
    OutputField(
        "model_prompt",
        str | None,
        pa.string(),
        "The model's own readable prompt (the same as `prompt` when `source` is `model`; "
        "beside an embedded prompt, for comparison).",
    ),
    OutputField(
        "negative_prompt",
        str | None,
        pa.string(),
        "The negative prompt embedded in the file, if any.",
        default=None,
    ),
    OutputField(
        "generator",
        str | None,
        pa.string(),
        "The front end that wrote the metadata (AUTOMATIC1111, ...).",
        default=None,
    ),
    OutputField(
        "settings",
        dict[str, Any],
        pa.string(),  # JSON text: its keys vary by front end
        "Embedded settings: model, model_hash, sampler, steps, cfg_scale, seed, size.",
        default={},
    ),
    OutputField(
        "metadata_error",
        str | None,
        pa.string(),
        "Why metadata the file carries could not be read, if so.",
        default=None,
    ),
    OutputField(
        "passes",
        list[PassJSON],
        pa.string(),  # JSON text: each pass's settings vary by front end
        "Every sampling pass the file names, in order: the base pass (whose texts are `prompt` "
        "and `negative_prompt`), then refiner, hires, detailer, inpaint and upscale passes.",
        default=[],
    ),
    OutputField(
        "metadata_note",
        str | None,
        pa.string(),
        "Why the file's graph gives no prompt (its text is made at run time: wildcards, LLM or "
        "reader nodes), or how the prompt was chosen.",
        default=None,
    ),
    OutputField(
        "metadata_candidates",
        list[str],
        pa.list_(pa.string()),
        "Where the file's prompt is made at run time: the literal texts met in its graph, for a "
        "person to judge. Never the prompt.",
        default=[],
    ),
    OutputField(
        "match",
        float | None,
        pa.float32(),
        "Cosine between `model_prompt`'s own MiniLM embedding and `embedding`: how well the "
        "words say the prediction, not how close it is to the image's true prompt.",
    ),
    OutputField(
        "embedding",
        list[float] | None,
        pa.list_(pa.float32()),
        "The predicted all-MiniLM-L6-v2 embedding of the prompt (unit length).",
    ),
    OutputField(
        "phrases",
        list[str],
        pa.list_(pa.string()),
        "The bank phrases the prompt is made of.",
    ),
    OutputField(
        "neighbors",
        list[Neighbor],
        NEIGHBORS,
        "Nearest bank entries to the embedding.",
    ),
    OutputField(
        "nearest_prompts",
        list[NearestPrompt],
        pa.list_(pa.struct([("prompt", pa.string()), ("clip_cosine", pa.float32())])),
        "Index models: the real prompts most CLIP-similar to the image.",
        default=[],
        index_only=True,
    ),
    OutputField(
        "interrogation",
        str | None,
        pa.string(),
        "Index models: bank phrases chosen by CLIP similarity.",
        default=None,
        index_only=True,
    ),
    OutputField(
        "interrogation_match",
        float | None,
        pa.float32(),
        "Cosine of the interrogation's MiniLM vector to `embedding`.",
        default=None,
        index_only=True,
    ),
    OutputField(
        "caption_candidates",
        list[CaptionCandidate],
        pa.list_(
            pa.struct(
                [("prompt", pa.string()), ("logprob", pa.float32()), ("judge_cosine", pa.float32())]
            )
        ),
        "Captioners: the candidate prompts, the chosen one first (with a judge, by its cosine), "
        "each with the captioner's score (mean log-probability per token) and the judge's "
        "cosine (MiniLM vector of the candidate to the judge's embedding of the image).",
        default=[],
        captioner_only=True,
    ),
    OutputField(
        "judge_cosine",
        float | None,
        pa.float32(),
        "Captioners with a judge: the best candidate's cosine to the judge's embedding.",
        default=None,
        captioner_only=True,
    ),
    OutputField(
        "judge_spread",
        float | None,
        pa.float32(),
        "Captioners with a judge: highest minus lowest candidate cosine (how much reranking "
        "mattered).",
        default=None,
        captioner_only=True,
    ),
    OutputField(
        "bank_prompt",
        str | None,
        pa.string(),
        "Captioners with a judge: the bank-decoded prompt of the judge's embedding.",
        default=None,
        captioner_only=True,
    ),
    OutputField(
        "judge_choice",
        Literal["caption", "bank"] | None,
        pa.string(),
        "Captioners with a judge: which prompt says the judge's embedding better and became "
        "`model_prompt`: the best candidate or the bank's.",
        default=None,
        captioner_only=True,
    ),
    OutputField(
        "judge_margin",
        float | None,
        pa.float32(),
        "Captioners with a judge: the winner's cosine to the judge's embedding minus the other's.",
        default=None,
        captioner_only=True,
    ),
)
"""A description's fields, in output order: the one definition of its shape."""

DESCRIPTION_SCHEMA = pa.schema([(f.name, f.arrow) for f in DESCRIPTION_FIELDS])
"""describe's `.parquet` columns (`write_descriptions`)."""


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


@dataclass
class Description:
    """What img2prompt says about one image."""

    image: str
    """The image as given (a path, or an upload's name)."""
    prompt: str | None
    """The answer: the prompt embedded in the file where it has one (`source == "metadata"`),
    else the readable prompt decoded from the predicted embedding; None only with
    `metadata="only"` for a file that carries no prompt."""
    match: float | None
    """Cosine between MiniLM's vector of `model_prompt` and `embedding`: how well the words say
    the predicted embedding. Not how close the prediction is to the image's true prompt: a
    vague prediction is as easy to put into words as a right one. None when no model ran."""
    embedding: np.ndarray | None
    """The predicted prompt embedding: 384 float32, unit length (None when no model ran)."""
    phrases: list[str] = field(default_factory=list)
    neighbors: list[tuple[str, float]] = field(default_factory=list)
    """Nearest bank entries to the embedding, with their cosines."""
    nearest_prompts: list[tuple[str, float]] = field(default_factory=list)
    """Index models: the real prompts most CLIP-similar to the image, with their CLIP cosines
    (the prompts the prediction blends)."""
    interrogation: str = ""
    """Index models: a prompt of bank phrases chosen by CLIP image-text similarity."""
    interrogation_match: float | None = None
    """Cosine between MiniLM's vector of `interrogation` and `embedding`."""
    source: str = "model"
    """Where `prompt` comes from: `metadata` (embedded in the file), `model`, or `none`."""
    model_prompt: str | None = None
    """The model's own readable prompt (beside an embedded one, for comparison); None when no
    model ran."""
    metadata: GenerationMetadata | None = None
    """What the file says about how it was made (None when metadata was not read)."""
    caption_candidates: list[tuple[str, float, float | None]] = field(default_factory=list)
    """Captioners: (prompt, captioner's score, judge's cosine or None), the chosen first."""
    judge_cosine: float | None = None
    """Captioners with a judge: the best candidate's cosine to the judge's embedding."""
    judge_spread: float | None = None
    """Captioners with a judge: highest minus lowest candidate cosine to it."""
    bank_prompt: str | None = None
    """Captioners with a judge: the bank's prompt for the judge's embedding."""
    judge_choice: str | None = None
    """Captioners with a judge: `caption` or `bank`, the one that says its embedding better."""
    judge_margin: float | None = None
    """Captioners with a judge: the winner's cosine minus the other's."""

    def __post_init__(self) -> None:
        if self.model_prompt is None and self.source == "model":
            self.model_prompt = self.prompt

    def to_json(self) -> dict[str, Any]:
        """The fields of `DESCRIPTION_FIELDS`, in order; index-only ones only where filled."""
        values = self._values()
        return {
            f.name: values[f.name]
            for f in DESCRIPTION_FIELDS
            if not ((f.index_only or f.captioner_only) and values[f.name] == f.default)
        }

    def _values(self) -> dict[str, Any]:
        meta = self.metadata or GenerationMetadata(self.image)  # none read: the empty one
        interrogation_match = self.interrogation_match or 0.0
        return {
            "image": self.image,
            "prompt": self.prompt,
            "source": self.source,
            "model_prompt": self.model_prompt,
            "negative_prompt": meta.negative_prompt,
            "generator": meta.generator,
            "settings": meta.settings,
            "metadata_error": meta.error,
            "passes": [one.to_json() for one in meta.passes],
            "metadata_note": meta.note,
            "metadata_candidates": meta.candidates,
            "match": _rounded(self.match),
            "embedding": None if self.embedding is None else [float(x) for x in self.embedding],
            "phrases": self.phrases,
            "neighbors": [{"text": t, "cosine": round(c, 6)} for t, c in self.neighbors],
            "nearest_prompts": [
                {"prompt": t, "clip_cosine": round(c, 6)} for t, c in self.nearest_prompts
            ],
            "interrogation": self.interrogation or None,
            "interrogation_match": _rounded(interrogation_match) if self.interrogation else None,
            "caption_candidates": [
                {"prompt": t, "logprob": round(s, 6), "judge_cosine": _rounded(c)}
                for t, s, c in self.caption_candidates
            ],
            "judge_cosine": _rounded(self.judge_cosine),
            "judge_spread": _rounded(self.judge_spread),
            "bank_prompt": self.bank_prompt,
            "judge_choice": self.judge_choice,
            "judge_margin": _rounded(self.judge_margin),
        }


def with_metadata(description: Description, metadata: GenerationMetadata) -> Description:
    """`metadata="auto"`: the embedded prompt, where the file has one, becomes the answer; the
    model's prompt stays beside it in `model_prompt`."""
    description.metadata = metadata
    if metadata.prompt is not None:
        description.prompt, description.source = metadata.prompt, "metadata"
    return description


def from_metadata(metadata: GenerationMetadata) -> Description:
    """`metadata="only"`: a description from the file alone, no model."""
    source = "metadata" if metadata.prompt is not None else "none"
    return Description(
        metadata.image, metadata.prompt, None, None, source=source, metadata=metadata
    )


def check_metadata_use(metadata: str) -> None:
    if metadata not in get_args(MetadataUse):
        raise ConfigError(f"metadata must be auto, ignore or only, got {metadata!r}")


@dataclass
class DescribeRun:
    descriptions: list[Description]
    failures: list[Failure]
    seconds: float
    search: ImageSearch = field(default_factory=ImageSearch)
    """The files found (and passed over as non-images)."""

    @property
    def mean_match(self) -> float:
        """Mean cosine of each model prompt's own embedding to the predicted one (0 when no
        model ran)."""
        matches = [d.match for d in self.descriptions if d.match is not None]
        return sum(matches) / max(len(matches), 1)

    @property
    def from_metadata(self) -> int:
        """How many prompts came from the files' own metadata."""
        return sum(d.source == "metadata" for d in self.descriptions)


def find_inputs(inputs: Sequence[str | Path]) -> tuple[ImageSearch, list[Failure]]:
    """The images under `inputs`; paths that do not exist become failures, not an error."""
    missing = [Failure(str(p), "no such file or folder") for p in inputs if not Path(p).exists()]
    search = scan_images([Path(p) for p in inputs if Path(p).exists()])
    if not missing:
        search.require_images(inputs)
    return search, missing


def describe_metadata_only(inputs: Sequence[str | Path], progress: bool = False) -> DescribeRun:
    """`describe --metadata only`: each file's embedded prompt, no model loaded. A file with
    none gets `prompt=None`, `source="none"`; a file that is no image is a failure."""
    from img2prompt.progress import progress_bar

    started = time.perf_counter()
    search, failures = find_inputs(inputs)
    descriptions = []
    with progress_bar("metadata", len(search.images), progress) as bar:
        for path in search.images:
            metadata = read_metadata(path)
            if metadata.prompt is None and (metadata.error or "").startswith(NOT_AN_IMAGE):
                failures.append(Failure(str(path), metadata.error))
            else:
                descriptions.append(from_metadata(metadata))
            bar.advance()
    return DescribeRun(descriptions, failures, time.perf_counter() - started, search)


def _target_encoder(model: PromptModel, device: str) -> TargetEncoder:
    """The encoder whose space `model` predicts in; refuses a model whose size disagrees."""
    from img2prompt.targets.encoder import load_encoder

    cfg = model.cfg
    encoder = load_encoder(cfg.target_encoder, device)
    if encoder.dim != cfg.out_dim:
        raise ConfigError(
            f"the model predicts {cfg.out_dim} dimensions, its target encoder "
            f"{cfg.target_encoder!r} makes {encoder.dim}"
        )
    return encoder


class Describer:
    """A model, its target encoder, a prompt bank and a decoder, loaded once.

    `model`: a model folder, `default`, or a loaded `ImageToPromptModel`; `bank`: `default` or a
    bank folder built with the model's target encoder. Not thread-safe: call it from one thread
    at a time (the web app runs it in a single worker thread)."""

    def __init__(
        self,
        model: Any = "default",
        bank: str | Path = "default",
        *,
        mode: str | None = None,
        predict_options: PredictOptions | None = None,
        decode_options: DecodeOptions | None = None,
        progress: bool = False,
        interrogate: bool = True,
        nearest_prompts: int = 5,
        metadata: str = "auto",
        judge: Any = None,
    ) -> None:
        from img2prompt.device import resolve_device
        from img2prompt.models.model import load_model
        from img2prompt.text.bank import open_bank
        from img2prompt.text.strategies import check_mode

        check_mode(mode or (decode_options or DecodeOptions()).mode)
        check_metadata_use(metadata)
        if metadata == "only":
            raise ConfigError("metadata='only' needs no model: use describe_metadata_only")
        self.metadata = metadata
        """`auto`: embedded prompts first (`with_metadata`); `ignore`: pixels only."""
        self.model_name = str(model) if isinstance(model, str | Path) else type(model).__name__
        self.bank_name = str(bank)
        options = predict_options or PredictOptions()
        if isinstance(model, str | Path):
            model = load_model(model, resolve_device(options.device))
        self.model: PromptModel = model
        # The predictor returns the network's outputs and `_describe_outputs` finishes them, so
        # a retrieval model's one search serves the blend and the nearest prompts, and its CLIP
        # features serve the interrogation with no second pass through CLIP.
        self.predictor = self._predictor(model, options, judge)
        self.nearest_prompts = nearest_prompts
        self.encoder = _target_encoder(model, self.predictor.options.device)
        self.bank = open_bank(bank, self.encoder, progress=progress)
        options = decode_options or (DecodeOptions(mode=mode) if mode else DecodeOptions())
        self.decoder = Decoder(self.bank, self.encoder, options)
        self.interrogator = None
        if interrogate:
            device = str(self.predictor.device)
            self.interrogator = model.interrogator(self.bank.texts, self.bank.categories, device)

    @staticmethod
    def _predictor(model: PromptModel, options: PredictOptions, judge: Any) -> Predictor:
        """The model's predictor; a captioner's keeps its candidates and runs the `judge` (a
        model folder, `default`, or a loaded model) that reranks them."""
        if model.kind != CAPTIONER_KIND:  # (importing the captioner module costs a start)
            if judge is not None:
                raise ConfigError("--judge reranks a captioner's candidates: --model a captioner")
            return Predictor(model, options, finish=False)
        from img2prompt.predict.captioned import CaptionPredictor

        if isinstance(judge, str | Path):
            from img2prompt.device import resolve_device
            from img2prompt.models.model import load_model

            judge = load_model(judge, resolve_device(options.device))
        return CaptionPredictor(model, options, judge)  # type: ignore[arg-type]

    @property
    def mode(self) -> str:
        return self.decoder.options.mode

    @property
    def bank_entries(self) -> int:
        return len(self.bank)

    def describe(
        self,
        images: Sequence[Image.Image],
        names: Sequence[str] | None = None,
        metadata: Sequence[GenerationMetadata | None] | None = None,
    ) -> list[Description]:
        """Images in memory (any mode) -> one `Description` each, in order (`names` label
        them; by default `image 0`, `image 1` ...). `metadata`: what each image's file said
        (`read_metadata`), applied as `self.metadata` says; Pillow images carry no file."""
        if not images:
            return []
        names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
        described = self._describe_outputs(names, self.predictor.embed_images(images))
        return self._merge(described, metadata or [])

    def describe_files(self, inputs: Sequence[str | Path], progress: bool = False) -> DescribeRun:
        """Image files and folders (searched recursively) -> descriptions, in input order;
        undecodable images are listed in `failures`, not fatal. The model reads pixels only;
        with `metadata="auto"` each file's embedded prompt, where it has one, is the answer."""
        started = time.perf_counter()
        search, failures = find_inputs(inputs)
        predictions = self.predictor.predict_files(search.images, progress=progress)
        descriptions = self._describe_outputs(predictions.images, predictions.embeddings)
        if self.metadata == "auto":
            read = [read_metadata(image) for image in predictions.images]
            descriptions = self._merge(descriptions, read)
        failures = failures + predictions.failures
        return DescribeRun(descriptions, failures, time.perf_counter() - started, search)

    def _merge(
        self, described: list[Description], metadata: Sequence[GenerationMetadata | None]
    ) -> list[Description]:
        if self.metadata == "ignore":
            return described
        for description, meta in zip(described, metadata, strict=False):
            if meta is not None:
                with_metadata(description, meta)
        return described

    def describe_uploads(
        self, uploads: Sequence[tuple[str, bytes]], max_pixels: int | None = None
    ) -> list[Description | InputError]:
        """Encoded images held in memory (name, bytes) -> a `Description` or the `InputError`
        that says why it could not be read, for each, in order. Each image is decoded and
        turned into model input at once, so only one full-size image is in memory at a time.
        `max_pixels` defaults to the server's default limit. The embedded prompt
        is applied by the caller (the web app reads it off the event loop, per request)."""
        if max_pixels is None:
            max_pixels = UPLOAD_MAX_PIXELS
        names: list[str] = []
        views: list[np.ndarray] = []
        errors: list[InputError | None] = []
        for name, data in uploads:
            try:
                image = load_image_bytes(data, name, max_pixels)
                views.append(self.predictor.tta.render(image))
                names.append(name)
                errors.append(None)
            except InputError as e:
                errors.append(detached(e))  # kept until the batch is described
        described = iter(self._describe_outputs(names, self.predictor.embed_views(views)))
        return [next(described) if error is None else error for error in errors]

    def _describe_outputs(self, names: Sequence[str], outputs: np.ndarray) -> list[Description]:
        """The predictor's network outputs -> descriptions: the model finishes them (a
        retrieval model: one search for the blend and the nearest prompts), the decoder says
        them in words, an interrogator (where the model has one) picks CLIP-space phrases."""
        if len(names) == 0:
            return []
        if hasattr(self.predictor, "take"):  # a captioner's `CaptionPredictor`
            return self._describe_captions(names, outputs)
        finished = self.model.finish(outputs, self.nearest_prompts)
        decoded: list[Decoded] = self.decoder.decode(finished.embeddings)
        descriptions = [
            Description(name, d.prompt, d.match, vector, d.phrases, d.neighbors, nearest)
            for name, d, vector, nearest in zip(
                names, decoded, finished.embeddings, finished.nearest, strict=True
            )
        ]  # source "model": model_prompt is the prompt
        if self.interrogator is not None:
            subjects = [d.nearest_prompts[0][0] if d.nearest_prompts else "" for d in descriptions]
            found = self.interrogator.interrogate(outputs, fallback_subjects=subjects)
            vectors = self.encoder.encode([f.prompt for f in found])
            for d, f, vector in zip(descriptions, found, vectors, strict=True):
                d.interrogation = f.prompt
                d.interrogation_match = float(vector @ d.embedding)
        return descriptions

    def _describe_captions(self, names: Sequence[str], outputs: np.ndarray) -> list[Description]:
        """A captioner's images -> descriptions (`caption_description`); with a judge, the
        bank decodes the judge's embeddings, so its prompt can compete with the candidates."""
        kept = self.predictor.take()  # type: ignore[attr-defined]
        targets = [c.judge for c in kept if c.judge is not None]
        bank = iter(self.decoder.decode(np.stack(targets)) if targets else [])
        return [
            caption_description(name, c, row, next(bank) if c.judge is not None else None)
            for name, c, row in zip(names, kept, outputs, strict=True)
        ]


def caption_description(
    name: str, captioned: Captioned, embedding: np.ndarray, bank: Decoded | None
) -> Description:
    """One captioned image's description. No judge: the captioner's best candidate, and its
    MiniLM vector as the embedding. A judge: the candidates reranked by cosine to the judge's
    embedding (which becomes `embedding`), and the answer the best candidate or the bank's
    prompt, whichever says the judge's embedding better (`judge_choice`, `judge_margin`)."""
    from img2prompt.predict.captioned import judge_candidates

    texts, scores = captioned.captions.texts, captioned.captions.scores
    if bank is None or captioned.judge is None:
        rows = [(t, s, None) for t, s in zip(texts, scores, strict=True)]
        match = float(captioned.vectors[0] @ embedding)
        return Description(name, texts[0], match, embedding, caption_candidates=rows)
    judged = judge_candidates(captioned.vectors, captioned.judge)
    rows = [(texts[i], scores[i], float(judged.cosines[i])) for i in judged.order]
    caption_wins = judged.cosine >= bank.match
    return Description(
        name,
        texts[judged.best] if caption_wins else bank.prompt,
        max(judged.cosine, bank.match),
        captioned.judge,
        [] if caption_wins else bank.phrases,
        bank.neighbors,
        caption_candidates=rows,
        judge_cosine=judged.cosine,
        judge_spread=judged.spread,
        bank_prompt=bank.prompt,
        judge_choice="caption" if caption_wins else "bank",
        judge_margin=abs(judged.cosine - bank.match),
    )


def write_descriptions(run: DescribeRun, out: Path, body: dict[str, Any] | None = None) -> None:
    """describe's `--out` (`results.write_results`): `.json` as `--json` prints it, `.parquet`
    with the same fields as columns, `.txt` the prompts. `body`: `descriptions_json(run)`
    when the caller has it already (`--json` too)."""
    body = body or descriptions_json(run)
    write_results(out, body["results"], DESCRIPTION_SCHEMA, body["failures"])


def descriptions_json(run: DescribeRun) -> dict[str, Any]:
    return {
        "results": [d.to_json() for d in run.descriptions],
        "failures": [{"image": f.image, "reason": f.reason} for f in run.failures],
    }
