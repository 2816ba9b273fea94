"""Batched prediction: image files -> L2-normalised prompt embeddings, fast on CPU and GPU.

Where the time goes on a CPU, and what this module does about it:
- the matmuls: run in bfloat16 where the CPU has native bf16 units (2-4x the float32 rate), but
  only after checking on the job's own first images that bf16 keeps cosine >= 0.9995 to float32;
- one image at a time leaves the matrix units idle: images go through in batches;
- decoding and resizing: done by worker threads while the model runs (`reader.ImageReader`),
  in input order, with a bounded read-ahead and pixel budget so memory stays flat;
- pixels stay uint8 until a whole batch is normalised in one vectorised pass;
- convolutional backbones run in channels-last memory format, which oneDNN prefers.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from img2prompt.config import PredictOptions
from img2prompt.data.embed import native_bf16
from img2prompt.data.images import to_rgb
from img2prompt.data.transforms import normalise_pixels
from img2prompt.device import resolve_device
from img2prompt.errors import InputError
from img2prompt.metrics import cosines
from img2prompt.models.backbones import Backbone
from img2prompt.models.model import load_model
from img2prompt.models.protocol import PromptModel
from img2prompt.predict.reader import ImageReader
from img2prompt.predict.tta import merge_views, render_views, tta_views
from img2prompt.progress import progress_bar

BF16_MIN_COSINE = 0.9995
"""`--precision auto` keeps bf16 only if every checked image's bf16 embedding has at least this
cosine to its float32 one: far below any difference the competition metric can see."""
CALIBRATION_IMAGES = 8
COMPILE_AUTO_SECONDS = 600.0
"""`--compile auto` compiles a transformer once the first batch shows that the rest of the job
would keep the eager model busy this long: the one-off compile (30-60 s on 2 CPU cores) is then
under a tenth of the job, and it makes a ViT's forward 25-45% faster. Convolutional models are
left eager: compiled, the default EfficientNet model ran no faster (49.5 vs 52.4 img/s)."""

CPU_TOKENS_PER_BATCH = 4096
"""Auto batch size for transformers on CPU: about this many tokens per forward pass. A ViT-L/14's
MLP activations for 4k tokens (34 MB in bf16) about fit this machine's 32 MB L3 cache, and 16
images per batch ran 24-54% faster than 32 (compiled, 2 runs); 8 was 5% slower."""
MAX_AUTO_BATCH = 64


def auto_batch_size(backbone: Backbone, views: int, device: torch.device) -> int:
    """Images per forward pass when `--batch-size` is not given: 64 rows on a GPU; on a CPU,
    ~`CPU_TOKENS_PER_BATCH` tokens for a transformer (16 images for ViT-L/14 at 224, 64 for
    ViT-B/32) and 32 rows for anything else. Each TTA view is one more row per image."""
    if device.type == "cuda":
        rows = MAX_AUTO_BATCH
    elif backbone.tokens_per_image:
        rows = min(MAX_AUTO_BATCH, round(CPU_TOKENS_PER_BATCH / backbone.tokens_per_image))
    else:
        rows = 32
    return max(1, rows // views)


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


class Predictor:
    """A loaded model plus everything about running it: device, precision, TTA views, batching.

    `predict_files` is the command-line path (files, worker threads, failures reported);
    `embed_images` serves callers that already hold images (the web app, `describe`). It runs
    the model's `network` (cast, compiled, batched) and then its `finish` on the view-averaged
    outputs; `finish=False` returns the network's outputs instead (a retrieval model's CLIP
    features, for callers that search the index themselves). A model object passed in is
    adapted in place (device, memory format, attention kernel); the bf16 copy is a new one."""

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
        self.output_dim = model.output_dim if not finish else model.cfg.out_dim
        # oneDNN prefers channels-last activations for convolutions (1.6x on EfficientNet).
        backbone = model.network.backbone
        self.layout = torch.channels_last if backbone.convolutional else torch.contiguous_format
        self.network: nn.Module = model.network.to(memory_format=self.layout)
        self.views = tta_views(model.preprocess, self.options.tta)
        self.batch_size = self.options.batch_size or auto_batch_size(
            backbone, len(self.views), self.device
        )
        self.precision: str | None = None  # decided on the first batch
        self.precision_note = ""
        self._forward = self.network
        self.compiled = False
        self.compile_note = ""
        self._seconds_per_image = 0.0  # of the latest forward pass
        self._first_batch = threading.Lock()
        self.reader = ImageReader(
            self.views, self.options.max_pixels, self.options.workers, 2 * self.batch_size
        )

    # -- the model side ----------------------------------------------------------------------

    def embed_crops(self, crops: np.ndarray) -> torch.Tensor:
        """(B * V, H, W, 3) uint8 crops (`render_views`), the V views of an image adjacent ->
        (B, D) unit vectors in float32 on the CPU."""
        crops = torch.from_numpy(crops)
        if self.device.type == "cuda":  # uint8 crosses the bus: 4x fewer bytes than float32
            crops = crops.pin_memory().to(self.device, non_blocking=True)
        return self.embed_pixels(normalise_pixels(crops, self.model.preprocess, self.layout))

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(B * V, 3, H, W) normalised pixels, the V views of an image adjacent -> (B, D) unit
        vectors in float32 on the CPU."""
        pixels = torch.as_tensor(pixels)
        if pixels.device != self.device:
            pin = self.device.type == "cuda"
            pixels = (pixels.pin_memory() if pin else pixels).to(self.device, non_blocking=pin)
        pixels = pixels.contiguous(memory_format=self.layout)
        if self.precision is None:
            with self._first_batch:  # the web app calls from several threads
                if self.precision is None:
                    self._prepare(pixels)
        if self.precision == "bf16":
            pixels = pixels.to(torch.bfloat16)
        rows = len(pixels)
        if self.compiled:
            pixels = self._pad_to_batch(pixels)
        start = time.perf_counter()
        outputs = merge_views(self._run(pixels)[:rows], len(self.views)).cpu()
        self._seconds_per_image = (time.perf_counter() - start) * len(self.views) / rows
        return outputs

    def _run(self, pixels: torch.Tensor) -> torch.Tensor:
        try:
            return self._forward(pixels)
        except Exception as e:  # inductor needs a working C++ (CPU) or Triton (GPU) toolchain
            if not self.compiled or self.options.compile is True:
                raise
            self._forward, self.compiled = self.network, False
            self.compile_note = f"compile failed, running eagerly: {type(e).__name__}: {e}"
            if self.device.type == "cpu":
                self.network.backbone.set_attention("sdpa")  # eager, the fused kernel is faster
            return self._forward(pixels)

    def _pad_to_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        """A compiled model keeps one input shape: a short last batch is padded, not recompiled."""
        full = self.batch_size * len(self.views)
        if len(pixels) < full:  # same layout as a full batch, or inductor would recompile
            padded = pixels.new_zeros((full, *pixels.shape[1:]))
            padded = padded.contiguous(memory_format=self.layout)
            padded[: len(pixels)] = pixels
            pixels = padded
        return pixels

    def _prepare(self, pixels: torch.Tensor) -> None:
        """On the first batch: choose the precision, then compile if asked."""
        self._choose_precision(pixels)
        self._forward = self.network
        if self.options.compile is True:
            self._compile()
            self.compile_note = "compiled"

    def compile_if_worth_it(self, images_left: int) -> bool:
        """`--compile auto`, called after a job's first batch: compile when the images left would
        keep the eager model busy for `COMPILE_AUTO_SECONDS` or more. True if it compiled."""
        if self.options.compile is not None or self.compiled or not self._seconds_per_image:
            return False
        if not self.network.backbone.tokens_per_image:  # not a transformer: see above
            return False
        expected = images_left * self._seconds_per_image
        if expected < COMPILE_AUTO_SECONDS:
            return False
        self._compile()
        self.compile_note = f"compiled, as the model had ~{expected / 60:.0f} min of work left"
        return True

    def _compile(self) -> None:
        if self.device.type == "cpu":
            # Compiled, plain matmul + softmax attention beats the CPU flash-attention kernel
            # (8% on a whole ViT-L/14): inductor fuses the softmax and runs both products as
            # bf16 GEMMs. On GPUs the flash kernels win, so they stay.
            self.network.backbone.set_attention("eager")
        # Frozen weights are constants that inductor pre-packs for oneDNN, fusing bias,
        # activation and casts into the matmuls. The compile itself happens on the next call.
        self._forward = torch.compile(self.network, dynamic=False, options={"freezing": True})
        self.compiled = True

    def _choose_precision(self, pixels: torch.Tensor) -> None:
        """bf16 *weights*, not autocast: autocast re-casts every weight on every call, which
        cost a ViT-B/32 60% more time than a bf16 copy of the model on this CPU."""
        requested = self.options.precision
        if requested == "fp32" or (requested == "auto" and not native_bf16(str(self.device))):
            self.precision = "fp32"
            self.precision_note = "" if requested == "fp32" else "no native bf16 on this device"
            return
        bf16_model = copy.deepcopy(self.network).to(torch.bfloat16)
        if requested == "auto":
            sample = pixels[: CALIBRATION_IMAGES * len(self.views)]
            reference = merge_views(self.network(sample), len(self.views))
            candidate = merge_views(bf16_model(sample.to(torch.bfloat16)), len(self.views))
            worst = cosines(reference, candidate, normalised=False).min().item()
            if worst < BF16_MIN_COSINE:
                self.precision = "fp32"
                self.precision_note = (
                    f"bf16 checked and refused: cosine {worst:.5f} to fp32 < {BF16_MIN_COSINE}"
                )
                return
            self.precision_note = f"bf16 checked: cosine {worst:.5f} to fp32"
        self.network, self.precision = bf16_model, "bf16"

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Images already in memory (any mode) -> (N, D) unit vectors, in batches."""
        return self.embed_views([render_views(to_rgb(image), self.views) for image in images])

    def embed_views(self, views: Sequence[np.ndarray]) -> np.ndarray:
        """Per-image (V, H, W, 3) uint8 views (`render_views`, `load_views`) -> (N, D) unit
        vectors."""
        size = self.batch_size
        return self._rows(
            [
                self.embed_crops(np.concatenate(views[start : start + size]))
                for start in range(0, len(views), size)
            ]
        )

    def _rows(self, chunks: list[torch.Tensor]) -> np.ndarray:
        """Merged network outputs -> the rows this predictor returns (`finish`ed or not)."""
        if not chunks:
            return np.zeros((0, self.output_dim), np.float32)
        outputs = torch.cat(chunks).numpy()
        return self.model.finish(outputs).embeddings if self.finish else outputs

    # -- the file side -----------------------------------------------------------------------

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
        embeddings = np.concatenate(chunks) if chunks else self._rows([])
        return Predictions(
            images, embeddings, failures, self.precision or "fp32", time.perf_counter() - start
        )

    def iter_batches(
        self, paths: Sequence[str | Path], progress: bool = True
    ) -> Iterator[Predictions]:
        """`predict_files` a batch at a time, in input order: each batch's embeddings with the
        failures met since the previous one (a caller can save work as it goes)."""
        names: list[str] = []
        crops: list[np.ndarray] = []
        failures: list[Failure] = []
        batches = 0
        with progress_bar("predict", len(paths), progress) as bar:
            for seen, (name, result) in enumerate(self.reader.read(paths), 1):
                if isinstance(result, InputError):
                    failures.append(Failure(name, result.message))
                else:
                    names.append(name)
                    crops.append(result)
                bar.advance()
                if len(crops) < self.batch_size and seen < len(paths):
                    continue
                embedded = [self.embed_crops(np.concatenate(crops))] if crops else []
                yield Predictions(names, self._rows(embedded), failures, self.precision or "fp32")
                names, crops, failures = [], [], []
                batches += 1
                if batches == 1 and self.compile_if_worth_it(len(paths) - seen):
                    bar.describe("predict (compiling the model: a minute, once)")
                elif batches == 2:
                    bar.describe("predict")

    def load_views(self, path: str | Path) -> np.ndarray | InputError:
        """One image file's views, or the error saying why it cannot be used (`ImageReader`)."""
        return self.reader.load_views(path)
