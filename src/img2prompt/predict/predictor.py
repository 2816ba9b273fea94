"""Batched prediction: image files -> L2-normalised prompt embeddings, fast on CPU and GPU.

Where the time goes on a CPU, and what this module does about it:
- the matmuls: run in bfloat16 where the CPU has native bf16 units (2-4x the float32 rate), but
  only after checking on the job's own first images that bf16 keeps cosine >= 0.9995 to float32;
- one image at a time leaves the matrix units idle: images go through in batches;
- decoding and resizing: done by worker threads while the model runs (Pillow releases the GIL),
  in input order, with a bounded read-ahead so memory stays flat on huge folders;
- convolutional backbones run in channels-last memory format, which oneDNN prefers.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from img2prompt.data.embed import native_bf16, resolve_device
from img2prompt.data.images import MAX_PIXELS, load_image, to_rgb
from img2prompt.errors import InputError
from img2prompt.models.model import ImageToPromptModel, load_model
from img2prompt.predict.tta import TTA_CHOICES, merge_views, render_views, tta_views
from img2prompt.progress import progress_bar

PRECISIONS = ("auto", "fp32", "bf16")
BF16_MIN_COSINE = 0.9995
"""`--precision auto` keeps bf16 only if every checked image's bf16 embedding has at least this
cosine to its float32 one: far below any difference the competition metric can see."""
CALIBRATION_IMAGES = 8


@dataclass
class PredictOptions:
    batch_size: int = 32
    """Images per forward pass (each TTA view adds one row per image)."""
    precision: str = "auto"
    """auto: bf16 where the device computes it natively and it holds accuracy, else fp32."""
    tta: str = "none"
    """Test-time views: none, hflip, zoom or hflip+zoom (averaged after normalising each)."""
    workers: int = -1
    """Threads decoding images while the model runs; -1: one per CPU core, at most 4; 0: none."""
    device: str = "auto"
    """auto (cuda when available), cpu, cuda, cuda:1 ..."""
    max_pixels: int = MAX_PIXELS
    """Larger images are refused as decompression bombs."""
    compile: bool = False
    """torch.compile the model (inductor, weights frozen): fuses the element-wise work between
    matmuls, ~25% faster for a ViT-B/32 on CPU, after a one-off compile of 30-60 s. Worth it for
    thousands of images."""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.batch_size < 1:
            raise ValueError("--batch-size must be >= 1")
        if self.tta not in TTA_CHOICES:
            raise ValueError(f"--tta must be one of {', '.join(TTA_CHOICES)}, got {self.tta!r}")


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


class Predictor:
    """A loaded model plus everything about running it: device, precision, TTA views, batching.

    `predict_files` is the command-line path (files, worker threads, failures reported);
    `embed_images` serves callers that already hold images (the web app, `describe`).
    A model object passed in is adapted in place (device, memory format, attention kernel); the
    bf16 copy is a new one."""

    def __init__(
        self, model: ImageToPromptModel | str | Path, options: PredictOptions | None = None
    ) -> None:
        self.options = options or PredictOptions()
        self.device = torch.device(resolve_device(self.options.device))
        if not isinstance(model, ImageToPromptModel):
            model = load_model(model, self.device)
        self.model = model.to(self.device).eval()
        self.channels_last = model.backbone.convolutional
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.views = tta_views(model.preprocess, self.options.tta)
        self.precision: str | None = None  # decided on the first batch
        self.precision_note = ""
        self._forward = self.model
        self._first_batch = threading.Lock()

    # -- the model side ----------------------------------------------------------------------

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(B * V, 3, H, W) normalised pixels, the V views of an image adjacent -> (B, D) unit
        vectors in float32 on the CPU."""
        pixels = torch.as_tensor(pixels)
        if self.device.type == "cuda":
            pixels = pixels.pin_memory().to(self.device, non_blocking=True)
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        if self.precision is None:
            with self._first_batch:  # the web app calls from several threads
                if self.precision is None:
                    self._prepare(pixels)
        if self.precision == "bf16":
            pixels = pixels.to(torch.bfloat16)
        rows = len(pixels)
        if self.options.compile:
            pixels = self._pad_to_batch(pixels)
        return merge_views(self._forward(pixels)[:rows], len(self.views)).cpu()

    def _pad_to_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        """A compiled model keeps one input shape: a short last batch is padded, not recompiled."""
        full = self.options.batch_size * len(self.views)
        if len(pixels) < full:
            padding = pixels.new_zeros((full - len(pixels), *pixels.shape[1:]))
            pixels = torch.cat([pixels, padding])
        return pixels

    def _prepare(self, pixels: torch.Tensor) -> None:
        """On the first batch: choose the precision, then compile if asked."""
        if self.options.compile and self.device.type == "cpu":
            # Compiled, plain matmul + softmax attention beats the CPU flash-attention kernel
            # (8% on a whole ViT-L/14): inductor fuses the softmax and runs both products as
            # bf16 GEMMs. On GPUs the flash kernels win, so they stay.
            self.model.backbone.set_attention("eager")
        self._choose_precision(pixels)
        self._forward = self.model
        if self.options.compile:
            # Frozen weights are constants that inductor pre-packs for oneDNN, fusing bias,
            # activation and casts into the matmuls.
            self._forward = torch.compile(self.model, dynamic=False, options={"freezing": True})

    def _choose_precision(self, pixels: torch.Tensor) -> None:
        """bf16 *weights*, not autocast: autocast re-casts every weight on every call, which
        cost a ViT-B/32 60% more time than a bf16 copy of the model on this CPU."""
        requested = self.options.precision
        if requested == "fp32" or (requested == "auto" and not native_bf16(str(self.device))):
            self.precision = "fp32"
            self.precision_note = "" if requested == "fp32" else "no native bf16 on this device"
            return
        bf16_model = copy.deepcopy(self.model).to(torch.bfloat16)
        if requested == "auto":
            sample = pixels[: CALIBRATION_IMAGES * len(self.views)]
            reference = merge_views(self.model(sample), len(self.views))
            candidate = merge_views(bf16_model(sample.to(torch.bfloat16)), len(self.views))
            worst = F.cosine_similarity(reference, candidate).min().item()
            if worst < BF16_MIN_COSINE:
                self.precision = "fp32"
                self.precision_note = (
                    f"bf16 checked and refused: cosine {worst:.5f} to fp32 < {BF16_MIN_COSINE}"
                )
                return
            self.precision_note = f"bf16 checked: cosine {worst:.5f} to fp32"
        self.model, self.precision = bf16_model, "bf16"

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Images already in memory (any mode) -> (N, D) unit vectors, in batches."""
        return self.embed_views([render_views(to_rgb(image), self.views) for image in images])

    def embed_views(self, views: Sequence[np.ndarray]) -> np.ndarray:
        """Per-image (V, 3, H, W) views (`render_views`, `load_views`) -> (N, D) unit vectors."""
        size = self.options.batch_size
        return self._rows(
            [
                self.embed_pixels(np.concatenate(views[start : start + size]))
                for start in range(0, len(views), size)
            ]
        )

    def _rows(self, chunks: list[torch.Tensor]) -> np.ndarray:
        if not chunks:
            return np.zeros((0, self.model.cfg.out_dim), np.float32)
        return torch.cat(chunks).numpy()

    # -- the file side -----------------------------------------------------------------------

    def predict_files(self, paths: Sequence[str | Path], progress: bool = True) -> Predictions:
        """Embed image files in input order; undecodable ones are reported, not fatal."""
        start = time.perf_counter()
        images: list[str] = []
        chunks: list[torch.Tensor] = []
        failures: list[Failure] = []
        batch_names: list[str] = []
        batch_pixels: list[np.ndarray] = []

        def flush() -> None:
            if batch_pixels:
                chunks.append(self.embed_pixels(np.concatenate(batch_pixels)))
                images.extend(batch_names)
                batch_names.clear()
                batch_pixels.clear()

        with progress_bar("predict", len(paths), progress) as bar:
            for name, result in self._decoded(paths):
                if isinstance(result, InputError):
                    failures.append(Failure(name, result.message))
                else:
                    batch_names.append(name)
                    batch_pixels.append(result)
                    if len(batch_pixels) == self.options.batch_size:
                        flush()
                bar.advance()
            flush()
        return Predictions(
            images,
            self._rows(chunks),
            failures,
            self.precision or "fp32",
            time.perf_counter() - start,
        )

    def load_views(self, path: str | Path) -> np.ndarray | InputError:
        """(V, 3, H, W) views of one image file, or the error saying why it cannot be used."""
        try:
            return render_views(load_image(path, self.options.max_pixels), self.views)
        except InputError as e:
            return e

    def _decoded(
        self, paths: Sequence[str | Path]
    ) -> Iterator[tuple[str, np.ndarray | InputError]]:
        """(path, views or error) in input order, decoded ahead by worker threads."""
        workers = self.options.workers
        if workers < 0:
            workers = min(4, os.cpu_count() or 1)
        if workers == 0:
            for path in paths:
                yield str(path), self.load_views(path)
            return
        read_ahead = 2 * self.options.batch_size + workers  # bounded: memory stays flat
        queue = iter(paths)
        pending: deque = deque()
        with ThreadPoolExecutor(workers, thread_name_prefix="img2prompt-decode") as pool:

            def submit_next() -> None:
                path = next(queue, None)
                if path is not None:
                    pending.append((str(path), pool.submit(self.load_views, path)))

            for _ in range(read_ahead):
                submit_next()
            while pending:
                name, future = pending.popleft()
                submit_next()
                yield name, future.result()
