"""The prepared table (`data prepare`'s `prompts.parquet`), read in one place.

Training, `index build`, `index tune` and `generate` all read it here, each naming the columns
it needs. The prompt is the first of `prompt`, `text`, `caption` present and the id the first of
`id`, `imgId`, `image_name` (else the row number), so a plain Parquet table of prompts serves
`generate` too. Needed columns are checked when the table is read, so a missing or broken one
stops a job before any work, naming the file; the others present are decoded on first use.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from img2prompt.data.sources import ID_COLUMNS, PROMPT_COLUMNS
from img2prompt.errors import InputError
from img2prompt.io import vectors_from_column
from img2prompt.metrics import unit
from img2prompt.targets.encoder import DEFAULT_ENCODER

TABLE_FILE = "prompts.parquet"
COLUMNS = ("target", "fold", "group", "image", "source")
"""The columns a stage may ask for beside the prompt and its id."""


@dataclass(eq=False)
class PreparedTable:
    """Rows of a prepared table: ids and prompts, and the other columns read (decoded lazily)."""

    path: Path
    ids: list[str]
    prompts: list[str]
    columns: pa.Table
    """The columns read besides the prompt and id, one row per row here."""
    encoder: str = DEFAULT_ENCODER
    """The sentence encoder the targets come from (the folder's manifest.json says)."""
    rows_read: int = 0
    """Rows in the file (before `distinct_prompts` or a subset)."""

    def __len__(self) -> int:
        return len(self.ids)

    def has(self, name: str) -> bool:
        return name in self.columns.column_names

    @cached_property
    def targets(self) -> np.ndarray:
        """(N, D) float32 unit rows."""
        vectors = vectors_from_column(self._column("target"), self.path)
        bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1) | ~vectors.any(axis=1))
        if len(bad):
            raise InputError(self.path, f"row {bad[0] + 1}: target is zero, NaN or infinite")
        return unit(vectors)

    @cached_property
    def folds(self) -> np.ndarray:
        return self._integers("fold")

    @cached_property
    def groups(self) -> np.ndarray | None:
        """Near-duplicate groups (`data prepare --group-threshold`); None when the table has none
        (each stage decides what that means)."""
        return self._integers("group") if self.has("group") else None

    @cached_property
    def images(self) -> list[Path]:
        """Image paths; relative ones resolve against the table's folder."""
        images = self._column("image").to_pylist()
        if None in images:
            row = images.index(None)
            raise InputError(self.path, f"row {row + 1} ({self.ids[row]}) has no image")
        # `folder / absolute` is the absolute path itself, so both kinds resolve in one step.
        return [self.path.parent / image for image in images]

    @cached_property
    def sources(self) -> list[str] | None:
        return [str(s) for s in self._column("source").to_pylist()] if self.has("source") else None

    def subset(self, rows: np.ndarray) -> PreparedTable:
        """The rows at `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return PreparedTable(
            self.path,
            [self.ids[i] for i in rows],
            [self.prompts[i] for i in rows],
            self.columns.take(pa.array(rows)),
            self.encoder,
            self.rows_read,
        )

    def distinct_prompts(self) -> PreparedTable:
        """The first row of each distinct prompt (several images per prompt share one)."""
        first: dict[str, int] = {}
        for row, prompt in enumerate(self.prompts):
            first.setdefault(prompt, row)
        return self.subset(np.fromiter(first.values(), np.int64, len(first)))

    def _column(self, name: str) -> pa.ChunkedArray:
        if not self.has(name):
            raise InputError(self.path, f"no `{name}` column (a `data prepare` table?)")
        return self.columns.column(name)

    def _integers(self, name: str) -> np.ndarray:
        column = self._column(name)
        if column.null_count or not pa.types.is_integer(column.type):
            raise InputError(self.path, f"`{name}` must be whole numbers on every row")
        return column.to_numpy().astype(np.int64)


def table_path(source: str | Path) -> Path:
    """A prepared folder's table, or the file itself."""
    source = Path(source)
    return source / TABLE_FILE if source.is_dir() else source


def read_prepared(
    source: str | Path,
    need: Iterable[str] = (),
    want: Iterable[str] = (),
    limit: int | None = None,
) -> PreparedTable:
    """Read a prepared folder or table with the columns in `need` (checked now) and those in
    `want` that are present (checked on first use); see the module docstring."""
    need, want = tuple(need), tuple(want)
    unknown = set(need + want) - set(COLUMNS)
    assert not unknown, f"not a prepared-table column: {unknown}"
    path = table_path(source)
    if not path.is_file():
        raise InputError(path, "no prepared table here; run `img2prompt data prepare` first")
    try:
        names = pq.read_schema(path).names
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(path, f"not a readable Parquet file ({e}); run `data prepare`") from e
    prompt_column = next((c for c in PROMPT_COLUMNS if c in names), None)
    id_column = next((c for c in ID_COLUMNS if c in names), None)
    missing = [c for c in need if c not in names]
    if prompt_column is None:
        missing.insert(0, "prompt")
    if missing:
        hint = " (prepare with --images DIR)" if "image" in missing else " (a prepared table?)"
        raise InputError(path, f"missing columns {missing}{hint}")
    extra = [c for c in dict.fromkeys(need + want) if c in names]
    read = [prompt_column, *([id_column] if id_column else []), *extra]
    table = pq.read_table(path, columns=read)
    rows_read = table.num_rows
    if limit is not None:
        table = table.slice(0, limit)
    if table.num_rows == 0:
        raise InputError(path, "the table has no rows")
    prompts = table.column(prompt_column).to_pylist()
    ids = (
        [None if v is None else str(v) for v in table.column(id_column).to_pylist()]
        if id_column
        else [str(row) for row in range(table.num_rows)]
    )
    _check_rows(path, ids, prompts, id_column)
    prepared = PreparedTable(
        path, ids, prompts, table.select(extra), _target_encoder(path), rows_read
    )
    for name in need:  # decode now: a broken column stops the job before any work
        getattr(prepared, _DECODED_AS[name])
    return prepared


# The PreparedTable property that decodes (and checks) each column.
_DECODED_AS = {
    "target": "targets",
    "fold": "folds",
    "group": "groups",
    "image": "images",
    "source": "sources",
}


def _check_rows(path: Path, ids: list, prompts: list, id_column: str | None) -> None:
    """Every row has an id and a prompt, and no id appears twice."""
    for row, (prompt_id, prompt) in enumerate(zip(ids, prompts, strict=True), start=1):
        if not prompt_id:
            raise InputError(path, f"row {row}: empty {id_column}")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(path, f"row {row}: empty prompt")
    if len(set(ids)) != len(ids):
        duplicate, count = Counter(ids).most_common(1)[0]
        raise InputError(path, f"id {duplicate!r} appears {count} times; ids must be unique")


def _target_encoder(path: Path) -> str:
    manifest = path.parent / "manifest.json"
    if not manifest.is_file():
        return DEFAULT_ENCODER
    try:
        return json.loads(manifest.read_text()).get("encoder", {}).get("spec", DEFAULT_ENCODER)
    except (ValueError, AttributeError):
        return DEFAULT_ENCODER  # not data prepare's manifest: the targets' encoder is unknown
