"""Read prompt corpora into rows: CSV/TSV, Parquet, JSONL, JSON, TXT, and folders of one's own
Stable Diffusion images, whose prompts are read from the files' metadata (`read_image_folder`).

Column conventions, shared by every table format:
- the prompt is the first of `prompt`, `text`, `caption`;
- the id is the first of `id`, `imgId` (Kaggle's prompts.csv), `image_name` (DiffusionDB); rows
  without one get `{file stem}:{line}`;
- `image` is a path relative to the table's folder. Without it, `--images DIR` gives
  `DIR/{id}` (with `.png`, `.jpg`, `.jpeg` or `.webp` when the id has no suffix) or DiffusionDB's
  `DIR/part-{part_id:06d}/{image_name}`;
- generation metadata (`prompt_id`, `seed`, `cfg`, `step`, `sampler`, `width`, `height`) is kept.

Every problem is an `InputError` naming the file and line (1-based; for Parquet and JSON the row),
handed to the `ErrorLog`, which raises it or counts it (`--on-error skip`).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from img2prompt.errors import ErrorLog, InputError

PROMPT_COLUMNS = ("prompt", "text", "caption")
ID_COLUMNS = ("id", "imgId", "image_name")
META_COLUMNS = ("prompt_id", "seed", "cfg", "step", "sampler", "width", "height")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".ndjson", ".json", ".txt")


@dataclass(slots=True)
class SourceRow:
    id: str
    prompt_raw: str
    image: str | None
    source: str
    """The file the row came from (error messages name it)."""
    line: int
    meta: dict[str, Any]
    origin: str = ""
    """The row's own `source` column when it has one (e.g. the repository of a scraped image),
    else the file: what `evaluate` breaks scores down by."""


def read_sources(
    paths: Iterable[str | Path], errors: ErrorLog, images_dir: str | Path | None = None
) -> list[SourceRow]:
    rows: list[SourceRow] = []
    for path in paths:
        rows.extend(read_source(path, errors, images_dir))
    return rows


def read_source(
    path: str | Path, errors: ErrorLog, images_dir: str | Path | None = None
) -> list[SourceRow]:
    """All good rows of one file (or image folder); bad ones go to `errors` (which may raise)."""
    path = Path(path)
    if path.is_dir():
        return read_image_folder(path, errors)
    rows = []
    for line, record in read_records(path, errors):
        try:
            rows.append(_row_from_record(path, line, record, images_dir))
        except InputError as error:
            errors.report(error)
    if not rows and errors.policy == "fail":
        raise InputError(path, "no prompts found (a header or blank lines only)")
    return rows


def read_image_folder(folder: Path, errors: ErrorLog) -> list[SourceRow]:
    """A folder of one's own generations: every image whose metadata holds its prompt (A1111,
    ComfyUI, InvokeAI, NovelAI, Fooocus, SwarmUI; `img2prompt.metadata`) becomes a row with that
    prompt, the image's path, and its seed, CFG, steps, sampler and size. An image without a
    prompt goes to `errors` (`--on-error skip` leaves it out). Row ids are the paths relative to
    the folder, without the suffix unless two images share a name (A1111 saving `x.png` and
    `x.jpg`); `source` is the front end that wrote the metadata."""
    from img2prompt.data.images import scan_images
    from img2prompt.metadata import read_metadata

    found_images = scan_images([folder]).images
    if not found_images:
        errors.report(
            InputError(folder, "a folder is read as SD images with embedded prompts; it has none")
        )
        return []
    names = Counter(image.relative_to(folder).with_suffix("") for image in found_images)
    rows = []
    for number, image in enumerate(found_images, 1):
        name = image.relative_to(folder)
        found = read_metadata(image)
        if found.prompt is None:
            why = found.error or "no prompt in its metadata (not an SD front end's file?)"
            errors.report(InputError(image, f"{why}; --on-error skip leaves such images out"))
            continue
        settings = found.settings
        size = str(settings.get("size", ""))
        width, _, height = size.partition("x")
        meta = {
            "seed": _whole(settings.get("seed")),
            "cfg": _real(settings.get("cfg_scale")),
            "step": _whole(settings.get("steps")),
            "sampler": None if settings.get("sampler") is None else str(settings["sampler"]),
            "width": _whole(width),
            "height": _whole(height),
        }
        rows.append(
            SourceRow(
                id=str(name.with_suffix("") if names[name.with_suffix("")] == 1 else name),
                prompt_raw=found.prompt,
                image=str(image.resolve()),
                source=str(image),
                line=number,
                meta={k: v for k, v in meta.items() if v is not None},
                origin=found.generator or str(folder),
            )
        )
    if not rows and errors.policy == "fail":
        raise InputError(folder, "no image in this folder carries a prompt in its metadata")
    return rows


def _whole(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _real(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def read_records(
    path: str | Path, errors: ErrorLog, extra_columns: tuple[str, ...] = ()
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, record) for each record of one file in any supported format, every column kept
    (Parquet: the known columns plus `extra_columns`). Problems with the file go to `errors`."""
    path = Path(path)
    if not path.is_file():
        problem = "is a folder; give the files in it" if path.is_dir() else "no such file"
        errors.report(InputError(path, problem))
        return iter(())
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        errors.report(
            InputError(path, f"unknown format {suffix!r}; expected one of {TABLE_SUFFIXES}")
        )
        return iter(())
    if path.stat().st_size == 0:
        errors.report(InputError(path, "file is empty"))
        return iter(())
    if suffix == ".parquet":
        return _parquet_records(path, errors, extra_columns)
    return {
        ".txt": _txt_records,
        ".csv": _csv_records,
        ".tsv": _csv_records,
        ".jsonl": _jsonl_records,
        ".ndjson": _jsonl_records,
        ".json": _json_records,
    }[suffix](path, errors)


def _row_from_record(
    path: Path, line: int, record: dict[str, Any], images_dir: str | Path | None
) -> SourceRow:
    prompt_column = _first_present(record, PROMPT_COLUMNS)
    if prompt_column is None:
        raise InputError(
            path, f"no prompt column: expected one of {PROMPT_COLUMNS}, got {sorted(record)}", line
        )
    prompt = record[prompt_column]
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise InputError(path, f"prompt is not text (got {type(prompt).__name__})", line)
    id_column = _first_present(record, ID_COLUMNS)
    row_id = record[id_column] if id_column else None
    row_id = f"{path.stem}:{line}" if row_id in (None, "") else str(row_id)
    meta = {name: record[name] for name in META_COLUMNS if name in record}
    return SourceRow(
        id=row_id,
        prompt_raw=prompt,
        image=_image_path(path, line, record, row_id, images_dir),
        source=str(path),
        line=line,
        meta=meta,
        origin=str(record.get("source") or path),
    )


def _image_path(
    path: Path, line: int, record: dict[str, Any], row_id: str, images_dir: str | Path | None
) -> str | None:
    if record.get("image"):
        candidates = [path.parent / str(record["image"])]
    elif images_dir is not None:
        part_id = record.get("part_id")
        if part_id not in (None, "") and not str(part_id).isdigit():
            raise InputError(path, f"part_id {part_id!r} is not a whole number", line)
        candidates = _image_candidates(Path(images_dir), row_id, part_id)
    else:
        return None
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate.resolve())
    raise InputError(path, f"image not found: {candidates[0]}", line)


def _image_candidates(images_dir: Path, row_id: str, part_id: Any) -> list[Path]:
    if Path(row_id).suffix.lower() in IMAGE_SUFFIXES:
        names = [row_id]
    else:
        names = [row_id + suffix for suffix in IMAGE_SUFFIXES]
    candidates = [images_dir / name for name in names]
    if part_id not in (None, ""):  # DiffusionDB keeps each part's images in its own folder
        candidates += [images_dir / f"part-{int(part_id):06d}" / name for name in names]
    return candidates


def _first_present(record: dict[str, Any], names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in record), None)


# --- one generator of (line, record) per format ----------------------------------------------


def _decoded_lines(path: Path, errors: ErrorLog) -> Iterator[tuple[int, str]]:
    """Lines decoded one at a time, so a bad byte is reported with its line, not the whole file."""
    with open(path, "rb") as f:
        if f.read(4).startswith((b"\xff\xfe", b"\xfe\xff")):
            errors.report(InputError(path, "file is UTF-16 or UTF-32; save it as UTF-8"))
            return
        f.seek(0)
        for number, raw in enumerate(f, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if b"\x00" in raw:  # UTF-16 without a byte-order mark, or a binary file
                errors.report(InputError(path, "NUL byte: not a UTF-8 text line", number))
                continue
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                bad = raw[e.start : e.start + 4]
                message = f"not valid UTF-8 at byte {e.start + 1} of the line ({bad!r})"
                errors.report(InputError(path, message, number))


def _txt_records(path: Path, errors: ErrorLog) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, text in _decoded_lines(path, errors):
        if text.strip():
            yield number, {"prompt": text.rstrip("\r\n")}


class _LineTracker:
    """Feeds csv.reader and remembers which line each record started on."""

    def __init__(self, lines: Iterator[tuple[int, str]]) -> None:
        self._lines = lines
        self.record_start = 0

    def __iter__(self) -> Iterator[str]:
        for number, text in self._lines:
            if self.record_start == 0:
                self.record_start = number
            yield text


def _csv_records(path: Path, errors: ErrorLog) -> Iterator[tuple[int, dict[str, Any]]]:
    tracker = _LineTracker(_decoded_lines(path, errors))
    if path.suffix.lower() == ".tsv":  # TSV has no quoting: a quote is part of the text
        reader = csv.reader(tracker, delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
    else:
        reader = csv.reader(tracker, strict=True)
    header: list[str] | None = None
    while True:
        tracker.record_start = 0
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            errors.report(InputError(path, f"malformed CSV: {e}", tracker.record_start))
            continue
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank line
        if header is None:
            header = [name.strip() for name in fields]
            continue
        if len(fields) != len(header):
            message = f"expected {len(header)} fields like the header, found {len(fields)}"
            errors.report(InputError(path, message, tracker.record_start))
            continue
        yield tracker.record_start, dict(zip(header, fields, strict=True))


def _jsonl_records(path: Path, errors: ErrorLog) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, text in _decoded_lines(path, errors):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            errors.report(InputError(path, f"invalid JSON: {e.msg} (column {e.colno})", number))
            continue
        except RecursionError:
            errors.report(InputError(path, "JSON nested too deeply", number))
            continue
        record = _as_record(path, number, value, errors)
        if record is not None:
            yield number, record


def _json_records(path: Path, errors: ErrorLog) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        value = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        errors.report(InputError(path, f"not valid UTF-8 at byte {e.start + 1} of the file"))
        return
    except json.JSONDecodeError as e:
        errors.report(InputError(path, f"invalid JSON: {e.msg}", e.lineno))
        return
    except RecursionError:
        errors.report(InputError(path, "JSON nested too deeply"))
        return
    if not isinstance(value, list):
        errors.report(InputError(path, "expected a JSON list of prompts or of objects"))
        return
    for number, item in enumerate(value, start=1):
        record = _as_record(path, number, item, errors)
        if record is not None:
            yield number, record


def _as_record(path: Path, number: int, value: Any, errors: ErrorLog) -> dict[str, Any] | None:
    if isinstance(value, str):
        return {"prompt": value}
    if isinstance(value, dict):
        return value
    errors.report(
        InputError(
            path, f"expected a prompt string or an object, got {type(value).__name__}", number
        )
    )
    return None


def _parquet_records(
    path: Path, errors: ErrorLog, extra_columns: tuple[str, ...] = ()
) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        errors.report(InputError(path, f"not a readable Parquet file: {e}"))
        return
    names = parquet.schema_arrow.names
    if not set(PROMPT_COLUMNS) & set(names):
        message = f"no prompt column: expected one of {PROMPT_COLUMNS}, got {names}"
        errors.report(InputError(path, message))
        return
    wanted = set(PROMPT_COLUMNS + ID_COLUMNS + META_COLUMNS + ("image", "part_id") + extra_columns)
    columns = [name for name in names if name in wanted]
    number = 0
    for batch in parquet.iter_batches(batch_size=65536, columns=columns):
        for record in batch.to_pylist():
            number += 1
            yield number, record
