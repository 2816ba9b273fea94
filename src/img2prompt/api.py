"""The Python API, a notebook's view of img2prompt (the command line is a layer over the same
objects):

    import img2prompt
    model = img2prompt.load_model("default")            # a folder, `default`, or hf:owner/repo
    vectors = model.predict(["cat.png", pil_image])       # (N, 384) float32, unit rows
    prompts = img2prompt.decode(vectors)                  # list[str]
    results = img2prompt.describe(["cat.png"])            # .prompt .match .embedding

`import img2prompt` stays light: these names are loaded on first use (`img2prompt.__getattr__`).
`decode` and `describe` keep what they load (encoder, bank, model) for the process, so calling
them again costs only the work itself; `load_model` loads afresh each time (keep its `Model`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from img2prompt.errors import ConfigError, InputError
from img2prompt.targets.encoder import DEFAULT_ENCODER

if TYPE_CHECKING:
    from PIL import Image

    from img2prompt.describer import Describer, Description
    from img2prompt.models.model import ImageToPromptModel
    from img2prompt.models.protocol import PromptModel
    from img2prompt.predict.predictor import Predictor
    from img2prompt.text.decode import Decoder

ImageLike = Union[str, Path, "Image.Image"]


class Model:
    """A loaded image -> prompt-embedding model, ready to predict (`load_model` makes one).

    `module` is the torch `PromptModel` (a trained `ImageToPromptModel`, a retrieval index...);
    `manifest` its folder's `model.json`."""

    def __init__(self, module: PromptModel, device: str = "auto") -> None:
        self.module = module
        self.device = device
        self._predictors: dict[tuple[int, str], Predictor] = {}

    @property
    def manifest(self) -> dict[str, Any]:
        return self.module.manifest

    def predictor(self, batch_size: int | None = None, tta: str = "none") -> Predictor:
        """The `Predictor` (batching, precision, TTA views) for these options, made once."""
        from img2prompt.predict.options import PredictOptions
        from img2prompt.predict.predictor import Predictor

        key = (batch_size or 0, tta)
        if key not in self._predictors:
            options = PredictOptions(batch_size=key[0], tta=tta, device=self.device)
            self._predictors[key] = Predictor(self.module, options)
        return self._predictors[key]

    def predict(
        self,
        images: Sequence[ImageLike] | ImageLike,
        batch_size: int | None = None,
        tta: str = "none",
    ) -> np.ndarray:
        """Image paths and/or PIL images -> (N, 384) float32 unit rows, in order. `tta`: none,
        hflip, zoom or hflip+zoom. An unreadable file is an InputError naming it."""
        predictor = self.predictor(batch_size, tta)
        items = _as_list(images)
        if items and all(isinstance(item, str | Path) for item in items):
            # Files go through the CLI's reader: decoded ahead by threads, a batch in memory.
            result = predictor.predict_files(items, progress=False)
            if result.failures:
                raise InputError(result.failures[0].image, result.failures[0].reason)
            return result.embeddings
        size = predictor.batch_size  # in-memory images: rendered one batch at a time
        chunks = [
            predictor.embed_views([_views(predictor, item) for item in items[i : i + size]])
            for i in range(0, len(items), size)
        ]
        return np.concatenate(chunks) if chunks else predictor.embed_views([])

    def __repr__(self) -> str:
        return f"Model({self.module.summary!r})"


def load_model(spec: str | Path = "default", device: str = "auto") -> Model:
    """A model folder, `default` (the packaged model) or `hf:owner/repo[@revision]` (downloaded
    with huggingface_hub, or found in its cache offline)."""
    from img2prompt.device import resolve_device
    from img2prompt.models.model import load_model as load_module

    return Model(load_module(spec, resolve_device(device)), device)


def decode(
    embeddings: np.ndarray | Sequence[float],
    bank: str | Path = "default",
    mode: str | None = None,
    encoder: str = DEFAULT_ENCODER,
) -> list[str]:
    """Prompt embeddings ((N, 384) or one 384-vector) -> a readable prompt each. `mode`:
    `best` (the default, `DecodeOptions`: beam search), `fast` (greedy, milliseconds) or `max`
    (the highest round trip, not meant to be read). `bank`: `default` or a bank folder."""
    targets = np.asarray(embeddings, dtype=np.float32)
    return [d.prompt for d in _decoder(str(bank), _mode(mode), encoder).decode(targets)]


def describe(
    images: Sequence[ImageLike] | ImageLike,
    model: str | Path | Model = "default",
    bank: str | Path = "default",
    mode: str | None = None,
    metadata: str = "auto",
    judge: str | Path | Model | None = None,
) -> list[Description]:
    """Images (paths and/or PIL images) -> a `Description` each, in order: `.prompt`,
    `.source` (`metadata`: a file's own embedded prompt, with `.metadata` holding its negative
    prompt and settings; `model`: the model's readable prompt), `.model_prompt` (the model's,
    always), `.match` (the cosine of the model's prompt's own vector to the predicted one: how
    well the words say the prediction, not how right it is), `.embedding`, `.phrases`,
    `.neighbors`. `metadata="ignore"` reads pixels only. `judge` (with a captioner `model`): a
    model whose embedding reranks the captioner's candidates (`.caption_candidates`,
    `.judge_cosine`, `.judge_spread`) and picks the best candidate or the bank's prompt
    (`.judge_choice`, `.judge_margin`)."""
    from img2prompt.describer import check_metadata_use
    from img2prompt.metadata import read_metadata

    check_metadata_use(metadata)
    if metadata == "only":
        raise ConfigError("describe(metadata='only') runs no model: use img2prompt.read_metadata")
    items = _as_list(images)
    describer = _describer(
        model if isinstance(model, Model) else str(model),
        str(bank),
        _mode(mode),
        judge if isinstance(judge, Model | None) else str(judge),
    )
    pictures = [_image(item) for item in items]
    names = [item if isinstance(item, str | Path) else f"image {i}" for i, item in enumerate(items)]
    embedded = [
        read_metadata(item) if isinstance(item, str | Path) and metadata == "auto" else None
        for item in items
    ]
    return describer.describe(pictures, [str(name) for name in names], embedded)


def create_model(
    backbone: str, head: str = "linear", pretrained: bool = True, **config: Any
) -> ImageToPromptModel:
    """A new (untrained head) model: `backbone` is a spec such as `hf-clip:openai/clip-vit-base-
    patch32` or `efficientnet-lite0`; other `ModelConfig` fields by keyword."""
    from img2prompt.models.model import ImageToPromptModel, ModelConfig

    return ImageToPromptModel(ModelConfig(backbone, head=head, **config), pretrained=pretrained)


def list_backbones() -> list[str]:
    """The registered backbone names (`name` or `name:argument` in a spec)."""
    from img2prompt.models.backbones import backbone_names

    return backbone_names()


# --- helpers -------------------------------------------------------------------------------------


def _as_list(images: Sequence[ImageLike] | ImageLike) -> list[ImageLike]:
    if isinstance(images, str | Path) or hasattr(images, "convert"):  # one path or one image
        return [images]
    return list(images)


def _views(predictor: Predictor, image: ImageLike) -> np.ndarray:
    """The model's input views of one image: read from disk for a path (as `predict` does)."""
    from img2prompt.data.images import to_rgb

    if isinstance(image, str | Path):
        views = predictor.load_views(image)
        if isinstance(views, InputError):
            raise views
        return views
    return predictor.tta.render(to_rgb(image))


def _image(item: ImageLike) -> Image.Image:
    from img2prompt.data.images import load_image

    return load_image(item) if isinstance(item, str | Path) else item


def _mode(mode: str | None) -> str:
    """The decoding mode asked for, or the one default (`DecodeOptions.mode`)."""
    from img2prompt.text.decode import DecodeOptions

    return mode or DecodeOptions().mode


@functools.lru_cache(maxsize=4)
def _decoder(bank: str, mode: str, encoder_spec: str) -> Decoder:
    from img2prompt.targets.encoder import load_encoder
    from img2prompt.text.bank import open_bank
    from img2prompt.text.decode import DecodeOptions, Decoder

    options = DecodeOptions(mode=mode)  # checks the mode before anything is loaded
    encoder = load_encoder(encoder_spec)
    return Decoder(open_bank(bank, encoder, progress=False), encoder, options)


@functools.lru_cache(maxsize=2)  # each holds a model and a bank: keep memory bounded
def _describer(
    model: str | Model, bank: str, mode: str, judge: str | Model | None = None
) -> Describer:
    """One Describer per (model, bank, mode, judge), kept: loading is most of the cost of a
    call."""
    from img2prompt.describer import Describer

    source = model.module if isinstance(model, Model) else str(model)
    referee = judge.module if isinstance(judge, Model) else judge
    return Describer(source, bank, mode=mode, progress=False, judge=referee)
