"""`describe --sidecar`: a caption file beside each image, as LoRA trainers read them.

kohya-ss and OneTrainer read `IMAGE.txt` (or `IMAGE.caption`) beside `IMAGE.png`: the image's
file name with the caption's suffix. An image whose caption exists is left alone (unless
`overwrite`), so a run that was interrupted goes on where it stopped; each caption is written
atomically, in batches as the work goes, so an interruption loses at most one batch.

The caption is the file's embedded prompt where it has one (unless `metadata="ignore"`), else
the model's readable prompt; the model is loaded only when some image needs it. An embedded
prompt is written as plain text (`plain_prompt`: AUTOMATIC1111's emphasis, LoRA tags and BREAK
taken out), since trainers read a caption's words literally; `keep_markup` writes it as it is.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from img2prompt.data.images import ImageSearch
from img2prompt.describer import Describer, find_inputs
from img2prompt.errors import ConfigError
from img2prompt.io import atomic_path
from img2prompt.metadata import read_metadata
from img2prompt.predict.predictor import Failure
from img2prompt.progress import progress_bar

BATCH = 32
"""Images the model describes at a time; their captions are written before the next batch."""


@dataclass
class CaptionRun:
    from_metadata: int = 0
    """Captions written from the files' embedded prompts."""
    from_model: int = 0
    """Captions written from the model's prompts."""
    kept: int = 0
    """Images whose caption file was already there (kept: no --overwrite)."""
    no_prompt: int = 0
    """Images left without a caption: `metadata="only"` and the file carries no prompt."""
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    search: ImageSearch = field(default_factory=ImageSearch)

    def summary(self, kind: str) -> str:
        written = self.from_metadata + self.from_model
        parts = [
            f"{written:,} .{kind} captions written ({self.from_metadata:,} from embedded "
            f"prompts, {self.from_model:,} from the model) in {self.seconds:.1f} s"
        ]
        if self.kept:
            parts.append(f"{self.kept:,} kept (already captioned; --overwrite replaces them)")
        if self.no_prompt:
            parts.append(f"{self.no_prompt:,} without an embedded prompt left uncaptioned")
        return "; ".join(parts) + self.search.summary()


def caption_path(image: Path, kind: str) -> Path:
    return image.with_suffix(f".{kind}")


def write_captions(
    inputs: Sequence[str | Path],
    kind: str,
    describer: Callable[[], Describer],
    *,
    metadata: str = "auto",
    prefix: str = "",
    overwrite: bool = False,
    progress: bool = True,
    keep_markup: bool = False,
) -> CaptionRun:
    """Caption every image under `inputs` (see the module docstring). `describer` is called
    once, and only if some image needs the model; it should ignore metadata (this function
    applies `metadata` itself)."""
    if kind not in ("txt", "caption"):
        raise ConfigError(f"--sidecar must be txt or caption, got {kind!r}")
    started = time.perf_counter()
    search, failures = find_inputs(inputs)
    run = CaptionRun(failures=failures, search=search)
    todo = _images_to_caption(search.images, kind, overwrite, run)
    writer = _CaptionWriter(
        kind=kind,
        describer=describer,
        metadata=metadata,
        prefix=prefix,
        keep_markup=keep_markup,
        run=run,
    )
    with progress_bar(f"captions (.{kind})", len(todo), progress) as bar:
        for start in range(0, len(todo), BATCH):
            writer.write_batch(todo[start : start + BATCH], bar.advance)
    run.seconds = time.perf_counter() - started
    return run


def _images_to_caption(
    images: Sequence[Path], kind: str, overwrite: bool, run: CaptionRun
) -> list[Path]:
    """The images whose caption is to be written; those already captioned are counted as kept,
    and two images that would share one caption file are failures (the second one)."""
    owner: dict[Path, Path] = {}
    todo: list[Path] = []
    for image in images:
        target = caption_path(image, kind)
        if target in owner:  # photo.png and photo.jpg would share photo.txt
            reason = f"its caption {target.name} is already {owner[target].name}'s"
            run.failures.append(Failure(str(image), reason))
            continue
        owner[target] = image
        if target.exists() and not overwrite:
            run.kept += 1
        else:
            todo.append(image)
    return todo


@dataclass(kw_only=True)
class _CaptionWriter:
    """Writes a batch's captions: embedded prompts first, the model (loaded once, when first
    needed) for the rest; counts them in `run`."""

    kind: str
    describer: Callable[[], Describer]
    metadata: str
    prefix: str
    keep_markup: bool
    run: CaptionRun
    loaded: Describer | None = None

    def write_batch(self, batch: Sequence[Path], advance: Callable[..., None]) -> None:
        need_model = []
        for image in batch:
            if self._from_metadata(image):
                advance()
            else:
                need_model.append(image)
        if need_model:
            self._from_model(need_model)
            advance(len(need_model))

    def _from_metadata(self, image: Path) -> bool:
        """Caption `image` from its embedded prompt, or leave it uncaptioned under
        `metadata="only"`; False when the model must say it."""
        embedded = read_metadata(image).prompt if self.metadata != "ignore" else None
        if embedded is not None:
            text = embedded if self.keep_markup else plain_prompt(embedded)
            _write(caption_path(image, self.kind), caption_text(text, self.prefix))
            self.run.from_metadata += 1
            return True
        if self.metadata == "only":
            self.run.no_prompt += 1
            return True
        return False

    def _from_model(self, images: list[Path]) -> None:
        self.loaded = self.loaded or self.describer()
        described = self.loaded.describe_files(images, progress=False)
        for description in described.descriptions:
            target = caption_path(Path(description.image), self.kind)
            _write(target, caption_text(description.prompt or "", self.prefix))
            self.run.from_model += 1
        self.run.failures += described.failures


def caption_text(prompt: str, prefix: str = "") -> str:
    """One line: trainers such as kohya-ss read a caption file's first line only, and embedded
    prompts often span several (A1111's `BREAK` on a line of its own)."""
    lines = [line.strip() for line in prompt.splitlines() if line.strip()]
    return prefix + " ".join(lines)


_NETWORK_TAG = re.compile(r"<\s*(?:lora|lyco|lycoris|hypernet|embedding)\s*:[^<>]{0,300}>", re.I)
_EDIT = re.compile(r"\[([^\[\]:|]*):([^\[\]:|]*):\s*[\d.]+\s*\]")  # [from:to:when] -> to
_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d+)?\s*(?=\))")  # "(word:1.2)"
_BREAK = re.compile(r"\bBREAK\b")


def plain_prompt(prompt: str) -> str:
    """An AUTOMATIC1111 prompt as plain words: LoRA/hypernetwork tags, emphasis brackets and
    weights, `[from:to:when]` edits (the `to` part) and BREAK taken out; escaped brackets
    (`\\(`) kept as brackets. `(masterpiece:1.2), <lora:x:0.8> a \\(cat\\)` ->
    `masterpiece, a (cat)`."""
    text = prompt.replace("\\(", "\0").replace("\\)", "\1")  # escaped: literal brackets
    text = _NETWORK_TAG.sub(" ", text)
    text = _EDIT.sub(r"\2", text)
    text = _WEIGHT.sub("", text)
    text = re.sub(r"[()\[\]]", " ", text)
    text = _BREAK.sub(",", text)
    text = text.replace("\0", "(").replace("\1", ")")
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s*,(?:\s*,)*\s*", ", ", text)
    return text.strip(" ,")


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text.strip() + "\n", encoding="utf-8")
