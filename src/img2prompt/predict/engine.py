"""The model forward of prediction: batch size, device and memory layout, precision (bf16, int8
or fp32, decided on the first batch) and `torch.compile`. It runs rows of pixels and knows nothing
of files, views or what the outputs mean. Measurements behind the constants: docs/predict.md."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from img2prompt.data.transforms import PreprocessConfig, normalise_pixels
from img2prompt.device import check_int8_device, native_bf16
from img2prompt.errors import ConfigError
from img2prompt.int8 import int8_linears
from img2prompt.metrics import cosines
from img2prompt.models.backbones import Backbone
from img2prompt.predict.options import PredictOptions

BF16_MIN_COSINE = 0.9995
"""`--precision auto` keeps bf16 only if every checked image keeps this cosine to float32."""
INT8_MIN_COSINE = 0.999
"""Where bf16 is not native (a CPU), `--precision auto` runs int8 linears only if every checked
image keeps this cosine to float32."""
CALIBRATION_IMAGES = 8
COMPILE_AUTO_SECONDS = 600.0
"""`--compile auto` compiles a transformer when the job has this much eager model work left:
the one-off compile is then a small part of the job. Convolutional models stay eager."""
CPU_TOKENS_PER_BATCH = 4096
"""Auto batch size for transformers on CPU where they run in bf16: about this many tokens per
forward pass, which keeps a ViT's activations near the CPU's cache size. In float32 (and int8,
whose activations are float32) half as many: a ViT-B/32 ran 8% faster in 32-image batches
than in 64 (docs/predict.md)."""
MAX_AUTO_BATCH = 64
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def auto_batch_size(
    backbone: Backbone, views: int, device: torch.device, precision: str = "auto"
) -> int:
    """Images per forward pass when `--batch-size` is not given: 64 rows on a GPU; on a CPU,
    ~`CPU_TOKENS_PER_BATCH` tokens for a transformer in bf16, half as many in 4-byte
    activations, and 32 rows for anything else. Each TTA view is one more row per image."""
    if device.type == "cuda":
        rows = MAX_AUTO_BATCH
    elif backbone.tokens_per_image:
        bf16 = precision == "bf16" or (precision == "auto" and native_bf16(str(device)))
        tokens = CPU_TOKENS_PER_BATCH if bf16 else CPU_TOKENS_PER_BATCH // 2
        rows = min(MAX_AUTO_BATCH, round(tokens / backbone.tokens_per_image))
    else:
        rows = 32
    return max(1, rows // views)


class Engine:
    """Runs a model's `network` on batches of `batch_rows` rows: cast to bf16 (or, on a CPU
    without native bf16, its linear layers quantized to int8) where that keeps the job's
    accuracy (`per_image` groups rows as the job will for that check), compiled when asked or
    worth it. A short last batch is padded when compiled, so the shape never changes."""

    def __init__(
        self,
        network: nn.Module,
        options: PredictOptions,
        device: torch.device,
        *,
        batch_rows: int,
        rows_per_image: int,
        per_image: Callable[[torch.Tensor], torch.Tensor],
        own_precision: bool = False,
    ) -> None:
        if options.precision == "int8":
            check_int8_device(device)
        if own_precision and options.precision not in ("auto", "fp32"):
            raise ConfigError(
                f"--precision {options.precision}: this model sets its own precision "
                "(a captioner generates in the dtype it was loaded in); use auto"
            )
        self.own_precision = own_precision
        self.options = options
        self.device = device
        self.batch_rows = batch_rows
        self.rows_per_image = rows_per_image
        self.per_image = per_image
        # oneDNN prefers channels-last activations for convolutions.
        convolutional = network.backbone.convolutional
        self.layout = torch.channels_last if convolutional else torch.contiguous_format
        self.network: nn.Module = network.to(memory_format=self.layout)
        self.precision: str | None = None  # decided on the first batch
        self.precision_note = ""
        self._forward = self.network
        self.compiled = False
        self.compile_note = ""
        self._seconds_per_row = 0.0  # of the latest forward pass
        self._first_batch = threading.Lock()

    def pixels(self, crops: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
        """(N, H, W, 3) uint8 crops -> (N, 3, H, W) normalised pixels on the device."""
        tensor = torch.from_numpy(crops)
        if self.device.type == "cuda":  # uint8 crosses the bus: 4x fewer bytes than float32
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        return normalise_pixels(tensor, cfg, self.layout)

    @torch.inference_mode()
    def run(self, pixels: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(N, 3, H, W) normalised pixels -> (N, D) network outputs, on the device."""
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
        outputs = self._run(pixels)[:rows]
        if self.device.type == "cuda":  # the clock must see the work, not its launch
            torch.cuda.synchronize(self.device)
        self._seconds_per_row = (time.perf_counter() - start) / rows
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
        if len(pixels) < self.batch_rows:  # same layout as a full batch, or inductor recompiles
            padded = pixels.new_zeros((self.batch_rows, *pixels.shape[1:]))
            padded = padded.contiguous(memory_format=self.layout)
            padded[: len(pixels)] = pixels
            pixels = padded
        return pixels

    def _prepare(self, pixels: torch.Tensor) -> None:
        """On the first batch: choose the precision, then compile if asked."""
        self._choose_precision(pixels)
        self._forward = self.network
        if self.options.compile is True and self.own_precision:
            self.compile_note = "not compiled: the model runs as it was loaded"
        elif self.options.compile is True and self.precision == "int8":
            self.compile_note = "not compiled: int8 runs eagerly"
        elif self.options.compile is True:
            self._compile()
            self.compile_note = "compiled"

    def compile_if_worth_it(self, rows_left: int) -> bool:
        """`--compile auto`, called after a job's first batch: compile a transformer when the
        rows left would keep the eager model busy `COMPILE_AUTO_SECONDS` or more."""
        if self.options.compile is not None or self.compiled or not self._seconds_per_row:
            return False
        if self.precision == "int8" or self.own_precision:  # they run eagerly, as loaded
            return False
        if not self.network.backbone.tokens_per_image:  # not a transformer: see above
            return False
        expected = rows_left * self._seconds_per_row
        if expected < COMPILE_AUTO_SECONDS:
            return False
        self._compile()
        self.compile_note = f"compiled, as the model had ~{expected / 60:.0f} min of work left"
        return True

    def _compile(self) -> None:
        if self.device.type == "cpu":
            # Compiled, plain matmul + softmax attention beats the CPU flash-attention kernel:
            # inductor fuses the softmax. On GPUs the flash kernels win, so they stay.
            self.network.backbone.set_attention("eager")
        # Frozen weights are constants that inductor pre-packs for oneDNN, fusing bias,
        # activation and casts into the matmuls. The compile itself happens on the next call.
        self._forward = torch.compile(self.network, dynamic=False, options={"freezing": True})
        self.compiled = True

    def _choose_precision(self, pixels: torch.Tensor) -> None:
        """fp32, bf16 *weights* (not autocast: it re-casts every weight on every call) or int8
        linears; `auto` checks its choice against fp32 on the job's first images."""
        requested = self.options.precision
        if self.own_precision:
            first = next(self.network.backbone.parameters(), None)
            dtype = torch.float32 if first is None else first.dtype
            self.precision = DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))
            self.precision_note = "the model sets its own precision"
            return
        if requested == "fp32":
            self.precision, self.precision_note = "fp32", ""
            return
        if requested in ("bf16", "int8"):
            self._use(requested)
            return
        if native_bf16(str(self.device)):
            self._try("bf16", BF16_MIN_COSINE, pixels)
        elif self.device.type == "cpu" and self.network.backbone.convolutional:
            # Its linear layers are a head's, well under 1% of the work: int8 would gain
            # nothing, and its check costs more than the image (`describe one.png`: ~0.1 s).
            self.precision = "fp32"
            self.precision_note = "no native bf16 on this device; int8 not tried: convolutional"
        elif self.device.type == "cpu":
            self._try("int8", INT8_MIN_COSINE, pixels, why="no native bf16 on this device; ")
        else:
            self.precision, self.precision_note = "fp32", "no native bf16 on this device"

    def _try(self, precision: str, threshold: float, pixels: torch.Tensor, why: str = "") -> None:
        """Run at `precision` if the first images keep `threshold` cosine to fp32, else fp32."""
        candidate = self._converted(precision)
        worst = self._agreement(candidate, precision, pixels)
        if worst < threshold:
            self.precision = "fp32"
            self.precision_note = (
                f"{why}{precision} checked and refused: cosine {worst:.5f} to fp32 < {threshold}"
            )
            return
        self.network, self.precision = candidate, precision
        self.precision_note = f"{why}{precision} checked: cosine {worst:.5f} to fp32"

    def _use(self, precision: str) -> None:
        self.network, self.precision = self._converted(precision), precision
        self.precision_note = ""

    def _converted(self, precision: str) -> nn.Module:
        """A copy of the network at `precision` (bf16 weights or int8 linear layers)."""
        if precision == "int8":
            return int8_linears(self.network)
        return copy.deepcopy(self.network).to(torch.bfloat16)

    def _agreement(self, candidate: nn.Module, precision: str, pixels: torch.Tensor) -> float:
        """The worst cosine between fp32 and `candidate` results of the first
        `CALIBRATION_IMAGES` images, each grouped as the job will group it (`per_image`)."""
        sample = pixels[: CALIBRATION_IMAGES * self.rows_per_image]
        reference = self.per_image(self.network(sample))
        inputs = sample.to(torch.bfloat16) if precision == "bf16" else sample
        candidate_rows = self.per_image(candidate(inputs))
        return cosines(reference, candidate_rows, normalised=False).min().item()
