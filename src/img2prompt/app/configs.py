"""The options of the app's own commands (`describe`, `metadata`, `serve`, `demo`): what they add
to the library's prediction and decoding options, which they nest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from img2prompt.data.images import UPLOAD_MAX_PIXELS
from img2prompt.errors import ConfigError
from img2prompt.fields import POSITIONAL, at_least, check_choices
from img2prompt.metadata.use import MetadataUse, UploadMetadataUse
from img2prompt.predict.options import PredictOptions
from img2prompt.results import check_result_output
from img2prompt.text.options import DecodeOptions

SidecarKind = Literal["none", "txt", "caption"]
"""`txt`: IMAGE.txt (kohya-ss), `caption`: IMAGE.caption."""


@dataclass
class MetadataConfig:
    files: list[Path] = field(metadata=POSITIONAL)
    """Image files or folders (searched recursively)."""
    json: bool = False
    """One JSON object a line, in input order: image, prompt (the base pass's; null when the
    file has none or makes it at run time), negative_prompt, generator, settings, error,
    passes, composed, candidates, note."""


@dataclass
class DescribeConfig:
    images: list[Path] = field(metadata=POSITIONAL)
    """Image files or folders (searched recursively)."""
    metadata: MetadataUse = "auto"
    """`auto`: a file that carries its prompt (A1111, ComfyUI, InvokeAI, NovelAI, Fooocus,
    SwarmUI, Draw Things metadata) is answered with it, the model's guess beside it; `ignore`:
    pixels only; `only`: embedded prompts only, the model is not loaded."""
    sidecar: SidecarKind = "none"
    """Write each image's prompt beside it as a caption for LoRA training: `txt` (IMAGE.txt,
    kohya-ss) or `caption` (IMAGE.caption). Images that already have one are skipped, so an
    interrupted run goes on where it stopped."""
    overwrite: bool = False
    """Replace existing caption files (--sidecar) instead of keeping them."""
    prefix: str = ""
    """Put before every caption written by --sidecar (a trigger phrase: `--prefix "sks, "`)."""
    keep_markup: bool = False
    """Captions from embedded prompts keep AUTOMATIC1111's markup as written (`(word:1.2)`,
    `<lora:name:0.8>`, BREAK); by default it is taken out, as trainers read words literally."""
    model: str = "default"
    """A model folder (`RUN/model`, an index folder, `hf:owner/name`) or `default`."""
    bank: str = "default"
    """Prompt bank: `default` (shipped with the package) or a folder."""
    judge: str = ""
    """With a captioner --model: a model (folder, index, `default`, `hf:owner/name`) whose
    predicted embedding reranks the candidates by MiniLM cosine and decides between the best
    one and the bank's prompt for it."""
    out: Path | None = None
    """`.json` or `.parquet` (prompt, source, settings, match, embedding, neighbors...), or
    `.txt` (one line per described image, in input order; unreadable images are left out and
    listed on stderr)."""
    json: bool = False
    """Print JSON on stdout instead of the table."""
    skip_bad: bool = False
    """Exit 0 when some images could not be read but the others were."""
    predict: PredictOptions = field(default_factory=PredictOptions)
    """Prediction (spelled flat: `--batch-size`, `--tta`, `--device`...)."""
    decode: DecodeOptions = field(default_factory=lambda: DecodeOptions(neighbors=3))
    """Decoding (spelled flat: `--mode`, `--neighbors`...; `--decode.batch-size`)."""

    def __post_init__(self) -> None:
        if not self.images:
            raise ConfigError("give at least one image file or folder")
        check_choices(self)
        if self.sidecar == "none" and (self.overwrite or self.prefix or self.keep_markup):
            raise ConfigError(
                "--overwrite, --prefix and --keep-markup apply to captions: add --sidecar txt"
            )
        check_result_output(self.out)


@dataclass
class ServeLimits:
    """What one server accepts: the only definition of these limits (the app and the upload
    decoder read them from here)."""

    max_upload_mb: float = 20.0
    """Larger uploads are refused with 413."""
    max_megapixels: float = UPLOAD_MAX_PIXELS / 1_000_000
    """Images announcing more pixels are refused unread (400): the decompression-bomb guard."""
    max_batch: int = 8
    """Waiting uploads described together in one model call."""
    max_pending: int = 64
    """Uploads allowed to wait; more are answered 503."""

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0 or self.max_megapixels <= 0:
            raise ConfigError("--max-upload-mb and --max-megapixels must be > 0")
        at_least(1, max_batch=self.max_batch, max_pending=self.max_pending)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)


@dataclass
class ServeConfig:
    CLI_HIDDEN: ClassVar = ("predict.max_pixels",)  # uploads have --max-megapixels

    host: str = "127.0.0.1"
    """Address to listen on; 0.0.0.0 exposes it (no authentication)."""
    port: int = 8000
    """TCP port."""
    model: str = "default"
    """A model folder (`RUN/model`, an index folder, `hf:owner/name`) or `default`."""
    bank: str = "default"
    """Prompt bank: `default` (shipped with the package) or a folder."""
    judge: str = ""
    """With a captioner --model: a model that reranks its candidates (see `describe --judge`)."""
    log_level: str = "info"
    """uvicorn log level."""
    limits: ServeLimits = field(default_factory=ServeLimits)
    """Upload limits (spelled flat: `--max-upload-mb`, `--max-megapixels`...)."""
    predict: PredictOptions = field(default_factory=PredictOptions)
    """Prediction (spelled flat: `--device`, `--tta`...)."""
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    """Decoding (spelled flat: `--mode`...)."""
    metadata: UploadMetadataUse = "auto"
    """The default for uploads (a request may say `?metadata=ignore`): `auto` answers a file
    that carries its prompt with it, `ignore` reads pixels only."""

    def __post_init__(self) -> None:
        check_choices(self)
        if not 0 < self.port < 65536:
            raise ConfigError("--port must be in 1..65535")


@dataclass
class DemoConfig:
    out: Path = Path("demo-out")
    """Output folder."""
    mode: str = "best"
    """Decoding: fast, best (beam search), or max (highest round trip, not meant to be read)."""

    def __post_init__(self) -> None:
        if not self.mode:
            raise ConfigError("--mode needs a decode mode (fast, best, max)")
