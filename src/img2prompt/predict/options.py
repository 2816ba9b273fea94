"""The options of prediction (`predict`, and the prediction inside `describe` and `serve`), and of
the commands that read predictions: `evaluate`, `submission check`, `ensemble fit/apply`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from img2prompt.data.images import MAX_PIXELS
from img2prompt.device import Device, Precision, refuse_precision
from img2prompt.errors import ConfigError
from img2prompt.fields import POSITIONAL, check_choices

TTAName = Literal["none", "hflip", "zoom", "hflip+zoom"]
"""Test-time views: the image, its mirror, a 15% zoom, or all of these."""


@dataclass
class PredictOptions:
    batch_size: int = 0
    """Images per forward pass (each TTA view adds one row per image). 0: chosen for the model (on
    CPU ~4k tokens per pass for a ViT: 16 images for ViT-L/14, 64 for ViT-B/32; 32 for conv
    nets; 64 rows on a GPU)."""
    precision: Precision = "auto"
    """auto: bf16 where the device computes it natively and it keeps cosine >= 0.9995 to fp32
    on the job's first images; on a CPU without native bf16, int8 where it keeps cosine >= 0.999
    (transformers: a convolutional model's few linear layers gain nothing); else fp32. int8:
    linear layers with int8 weights (convolutions stay fp32), CPU only. fp16 is refused here
    (bf16 keeps fp32's range)."""
    tta: TTAName = "none"
    """Test-time views, averaged after normalising each: mirror, 15% zoom."""
    workers: int = -1
    """Threads decoding images while the model runs; -1: one per CPU core, at most 4; 0: none."""
    device: Device = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`..."""
    max_pixels: int = MAX_PIXELS
    """Image files with more pixels are refused as decompression bombs; default Pillow's own
    limit, 89.5 Mpx; at most twice that, where Pillow refuses a file itself (uploads to `serve`
    have their own, lower limit: --max-megapixels)."""
    compile: bool | None = None
    """torch.compile the model (inductor, weights frozen): faster after a one-off compile.
    Default (auto): compile a transformer when the first batch shows the job has 10+ minutes of
    model work left (a failed auto compile falls back to eager)."""
    k: int = 0
    """Retrieval index models only: prompts blended per image (0: the index's own)."""
    temperature: float = 0.0
    """Retrieval index models only: softmax temperature (0: the index's own)."""

    def __post_init__(self) -> None:
        if self.k < 0 or self.temperature < 0:
            raise ConfigError("--k and --temperature must be > 0 (or 0: the index's own)")
        refuse_precision("fp16", precision=self.precision)
        if self.batch_size < 0:
            raise ConfigError("--batch-size must be >= 1 (or 0: chosen for the model)")
        if self.workers < -1:
            raise ConfigError(
                f"--workers must be >= 0 (or -1: one per CPU core), got {self.workers}"
            )
        if self.max_pixels < 1:
            raise ConfigError(f"--max-pixels must be >= 1, got {self.max_pixels}")
        check_choices(self)
        self.compile = {"auto": None, "on": True, "off": False}.get(self.compile, self.compile)  # type: ignore[call-overload]
        if self.compile not in (None, True, False):
            raise ConfigError(f"compile must be on, off or auto, got {self.compile!r}")


@dataclass
class PredictConfig:
    model: str = field(metadata=POSITIONAL)
    """A model folder (`RUN/model`, an index folder, `hf:owner/name`) or `default`."""
    images: list[Path] = field(metadata=POSITIONAL)
    """Image files or folders (searched recursively)."""
    out: Path | None = None
    """Parquet of `image` (as given) and `embedding` (384 floats, unit). With neither --out nor
    --submission: predictions.parquet."""
    submission: Path | None = None
    """Kaggle CSV `imgId_eId,val`; imgId is the file name without suffix."""
    options: PredictOptions = field(default_factory=PredictOptions)
    """How to predict (spelled flat: `--batch-size`, `--precision`, `--tta`...)."""
    skip_bad: bool = False
    """Exit 0 even when some images could not be read (they are listed)."""
    restart: bool = False
    """Discard the rows an interrupted run of this job saved (OUT.partial)."""

    def __post_init__(self) -> None:
        if not self.images:
            raise ConfigError("give at least one image file or folder")
        if self.out is None and self.submission is None:
            self.out = Path("predictions.parquet")


@dataclass
class EvaluateConfig:
    predictions: Path = field(metadata=POSITIONAL)
    """predict/ensemble Parquet, training oof.parquet or a CSV."""
    truth: Path
    """Prepared data folder (prompts.parquet) or a Kaggle sample_submission."""
    report: Path | None = None
    """Folder for report.json and cosine_histogram.png (default: beside the predictions)."""
    strict: bool = False
    """Fail when a prediction has no truth (by default such rows are named and left out, e.g.
    images whose prompt data prepare dropped as a near duplicate)."""


@dataclass
class SubmissionCheckConfig:
    file: Path = field(metadata=POSITIONAL)
    """The submission CSV to check."""
    sample: Path | None = None
    """sample_submission.csv: the ids and order Kaggle expects."""
    truth: Path | None = None
    """True vectors in submission format: prints the score."""
    dim: int = 384
    """Values per image."""


@dataclass
class EnsembleFitConfig:
    oof: list[Path] = field(metadata=POSITIONAL)
    """Out-of-fold prediction files, one per member model."""
    truth: Path
    """Prepared data folder or truth file."""
    out: Path = Path("ensemble.json")
    """Where to write the weights (JSON)."""

    def __post_init__(self) -> None:
        if not self.oof:
            raise ConfigError("give the out-of-fold files")


@dataclass
class EnsembleApplyConfig:
    weights: Path = field(metadata=POSITIONAL)
    """Weights from `ensemble fit`."""
    predictions: list[Path] = field(metadata=POSITIONAL)
    """Prediction files, in the members' order."""
    out: Path | None = None
    """Parquet of the blended embeddings."""
    submission: Path | None = None
    """Kaggle CSV of the blend."""

    def __post_init__(self) -> None:
        if not self.predictions:
            raise ConfigError("give the prediction files")
        if self.out is None and self.submission is None:
            raise ConfigError("give --out and/or --submission")
