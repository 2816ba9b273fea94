"""The prompts to draw: `data prepare`'s prompts.parquet, or any Parquet table with a prompt column.

Columns read: the prompt (`prompt`, `text` or `caption`, the first present; `data prepare` writes
the cleaned prompt there), the id (`id`, `imgId` or `image_name`; else the row number), and, to
carry into the image index, `target`, `group` and `fold` when present.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from img2prompt.data.sources import ID_COLUMNS, PROMPT_COLUMNS
from img2prompt.errors import InputError

CARRIED_COLUMNS = ("target", "group", "fold")


@dataclass
class PromptTable:
    ids: list[str]
    texts: list[str]
    carried: pa.Table
    """`target`, `group`, `fold` (those present), one row per prompt."""
    fingerprint: str
    """sha256 of the ids and texts in order: a run's prompts, whatever the file is called."""

    def __len__(self) -> int:
        return len(self.texts)


def read_prompts(path: str | Path, limit: int | None = None) -> PromptTable:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file" if not path.exists() else "not a file")
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(path, f"not a readable Parquet file ({e}); run `data prepare`") from e
    prompt_column = next((c for c in PROMPT_COLUMNS if c in schema.names), None)
    if prompt_column is None:
        raise InputError(path, f"no prompt column: expected one of {PROMPT_COLUMNS}")
    id_column = next((c for c in ID_COLUMNS if c in schema.names), None)
    carried = [c for c in CARRIED_COLUMNS if c in schema.names]
    columns = [c for c in (prompt_column, id_column, *carried) if c is not None]
    table = pq.read_table(path, columns=columns)
    if limit is not None:
        table = table.slice(0, limit)
    texts = table[prompt_column].to_pylist()
    if id_column is None:
        ids = [str(row) for row in range(len(texts))]
    else:
        ids = [None if v is None else str(v) for v in table[id_column].to_pylist()]
    for row, (prompt_id, text) in enumerate(zip(ids, texts, strict=True), start=1):
        if not prompt_id:
            raise InputError(path, f"empty {id_column}", row)
        if not isinstance(text, str) or not text.strip():
            raise InputError(path, "empty prompt", row)
    if len(set(ids)) != len(ids):
        duplicate, count = Counter(ids).most_common(1)[0]
        raise InputError(
            path, f"id {duplicate!r} appears {count} times; ids must be unique (seeds use them)"
        )
    if not texts:
        raise InputError(path, "no prompts")
    digest = hashlib.sha256()
    for prompt_id, text in zip(ids, texts, strict=True):
        digest.update(f"{len(prompt_id)}:{prompt_id}{len(text)}:{text}".encode())
    return PromptTable(ids, texts, table.select(carried), digest.hexdigest())
