"""Batched prediction: image files -> prompt embeddings, one stage after another.

Walk through predict (each stage is one place, called in this order):
1. files: `run.run_predict` lists them (`data.images.scan_images`) and `resume.PredictJob`
   keeps those not done yet; `Predictor.iter_batches` takes them from there;
2. decoded images: `reader.ImageReader.read` decodes them in worker threads, in input order;
3. views: `tta.TTA.render`, run by the reader's threads, makes each image's (V, H, W, 3) views;
4. batches: `Predictor._batches` groups `batch_size` images and the failures met on the way;
5. engine: `engine.Engine.pixels` normalises a batch on the device and `Engine.run` runs the
   model's `network` (batch size, bf16 or fp32, compiled or eager);
6. merged rows: `tta.TTA.merge` makes one unit row per image from its views, and
   `PromptModel.finish` makes the prompt embeddings (`Predictor._finish`): a trained model's
   rows are already, a retrieval index searches and blends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from img2prompt.data.images import to_rgb
from img2prompt.device import resolve_device
from img2prompt.errors import InputError
from img2prompt.models.model import load_model
from img2prompt.models.protocol import PromptModel
from img2prompt.predict.engine import Engine, auto_batch_size
from img2prompt.predict.options import PredictOptions
from img2prompt.predict.reader import ImageReader
from img2prompt.predict.tta import TTA
from img2prompt.progress import progress_bar

if TYPE_CHECKING:
    from img2prompt.progress import _Bar as Bar


@dataclass
class Failure:
    image: str
    reason: str


@dataclass
class Predictions:
    images: list[str]
    """The images predicted, as given, in input order (failures left out)."""
    embeddings: np.ndarray
    """(N, D) float32, each row L2-normalised."""
    failures: list[Failure] = field(default_factory=list)
    precision: str = "fp32"
    seconds: float = 0.0
    resumed: int = 0
    """Images whose rows an interrupted earlier run of the same job had already saved."""
    skipped: str = ""
    """`ImageSearch.summary()`: the folder files passed over as non-images, or ''."""
    split: str = ""
    """Under torchrun, how the work was split ("1,000 images over 2 ranks"), else ''."""
    wrote: bool = True
    """This process wrote the outputs (under torchrun one rank joins and writes them; the
    others' results hold their own share)."""


@dataclass
class _Batch:
    """Up to `batch_size` images' views, and the files that failed since the previous batch."""

    names: list[str] = field(default_factory=list)
    views: list[np.ndarray] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


class Predictor:
    """A loaded model and the stages that run it: reader, TTA views, engine, finish.

    `predict_files` is the command-line path (files, worker threads, failures reported);
    `embed_images` serves callers that already hold images (the web app, `describe`).
    `finish=False` returns the view-merged network outputs instead of the model's `finish`
    (a retrieval model's CLIP features, for callers that search the index themselves). A model
    object passed in is adapted in place (device, memory format, attention kernel)."""

    def __init__(
        self,
        model: PromptModel | str | Path,
        options: PredictOptions | None = None,
        finish: bool = True,
    ) -> None:
        self.options = options or PredictOptions()
        self.device = resolve_device(self.options.device)
        if isinstance(model, str | Path):
            model = load_model(model, self.device)
        model.configure_search(self.options.k, self.options.temperature)
        self.model = model.to(self.device).eval()
        self.finish = finish
        self.output_dim = model.embedding_dim if finish else model.output_dim
        self.tta = TTA(model.preprocess, self.options.tta)
        network = model.network
        self.batch_size = self.options.batch_size or auto_batch_size(
            network.backbone, self.tta.count, self.device, self.options.precision
        )
        self.engine = Engine(
            network,
            self.options,
            self.device,
            batch_rows=self.batch_size * self.tta.count,
            rows_per_image=self.tta.count,
            per_image=self.tta.merge,
            own_precision=model.sets_own_precision,
        )
        self.reader = ImageReader(
            self.tta.render,
            fit=self.tta.fit,
            max_pixels=self.options.max_pixels,
            workers=self.options.workers,
            read_ahead=2 * self.batch_size,
        )

    # -- files -> batches: the command-line path ---------------------------------------------

    def predict_files(self, paths: Sequence[str | Path], progress: bool = True) -> Predictions:
        """Embed image files in input order; undecodable ones are reported, not fatal."""
        start = time.perf_counter()
        images: list[str] = []
        chunks: list[np.ndarray] = []
        failures: list[Failure] = []
        for batch in self.iter_batches(paths, progress):
            images += batch.images
            chunks.append(batch.embeddings)
            failures += batch.failures
        embeddings = np.concatenate(chunks) if chunks else self._finish([])
        precision, seconds = self.engine.precision or "fp32", time.perf_counter() - start
        return Predictions(images, embeddings, failures, precision, seconds)

    def iter_batches(
        self, paths: Sequence[str | Path], progress: bool = True
    ) -> Iterator[Predictions]:
        """The stages in order, a batch at a time: files -> decoded images and their views
        (reader, TTA) -> batches -> engine -> merged, finished rows. Each batch comes with the
        failures met since the previous one (a caller can save work as it goes)."""
        with progress_bar("predict", len(paths), progress) as bar:
            for number, (batch, seen) in enumerate(self._batches(paths, bar), 1):
                embeddings = self.embed_views(batch.views)
                yield Predictions(
                    batch.names, embeddings, batch.failures, self.engine.precision or "fp32"
                )
                self._after_batch(number, len(paths) - seen, bar)

    def _batches(self, paths: Sequence[str | Path], bar: Bar) -> Iterator[tuple[_Batch, int]]:
        """The reader's decoded views grouped `batch_size` images at a time (the last batch
        takes what is left), with the count of files seen so far."""
        batch = _Batch()
        for seen, (name, result) in enumerate(self.reader.read(paths), 1):
            if isinstance(result, InputError):
                batch.failures.append(Failure(name, result.message))
            else:
                batch.names.append(name)
                batch.views.append(result)
            bar.advance()
            if len(batch.views) >= self.batch_size or seen == len(paths):
                yield batch, seen
                batch = _Batch()

    def _after_batch(self, number: int, images_left: int, bar: Bar) -> None:
        """`--compile auto` looks at the first batch's speed; the bar says why the next waits."""
        if number == 1 and self.engine.compile_if_worth_it(images_left * self.tta.count):
            bar.describe("predict (compiling the model: a minute, once)")
        elif number == 2:
            bar.describe("predict")

    def load_views(self, path: str | Path) -> np.ndarray | InputError:
        """One image file's views, or the error saying why it cannot be used."""
        return self.reader.load(path)

    # -- views -> engine -> merged rows: every path ends here ---------------------------------

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Images already in memory (any mode) -> (N, D) rows, in batches."""
        return self.embed_views([self.tta.render(to_rgb(image)) for image in images])

    def embed_views(self, views: Sequence[np.ndarray]) -> np.ndarray:
        """Per-image (V, H, W, 3) uint8 views (`TTA.render`, `load_views`) -> (N, D) rows."""
        size = self.batch_size
        return self._finish(
            [
                self.embed_crops(np.concatenate(views[start : start + size]))
                for start in range(0, len(views), size)
            ]
        )

    def embed_crops(self, crops: np.ndarray) -> torch.Tensor:
        """(B * V, H, W, 3) uint8 crops, an image's views adjacent -> (B, D) merged unit rows
        in float32 on the CPU."""
        return self.embed_pixels(self.engine.pixels(crops, self.model.preprocess))

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(B * V, 3, H, W) normalised pixels, an image's views adjacent -> (B, D) merged unit
        rows in float32 on the CPU."""
        return self.tta.merge(self.engine.run(pixels)).cpu()

    def _finish(self, chunks: list[torch.Tensor]) -> np.ndarray:
        """Merged rows -> the model's `finish`ed prompt embeddings (with `finish=False`, the
        rows as they are)."""
        if not chunks:
            return np.zeros((0, self.output_dim), np.float32)
        outputs = torch.cat(chunks).numpy()
        return self.model.finish(outputs).embeddings if self.finish else outputs
