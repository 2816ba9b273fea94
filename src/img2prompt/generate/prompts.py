"""The prompts to draw: `data prepare`'s prompts.parquet, or any Parquet table with a prompt column
(read by `data.table.read_prepared`). The table's `target`, `group` and `fold`, where present,
are carried into the image index, so `data prepare` can pair the images with them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from img2prompt.data.table import PreparedTable, read_prepared

CARRIED_COLUMNS = ("target", "group", "fold")


def read_prompts(path: str | Path, limit: int | None = None) -> PreparedTable:
    return read_prepared(path, want=CARRIED_COLUMNS, limit=limit)


def prompts_fingerprint(prompts: PreparedTable) -> str:
    """sha256 of the ids and prompts in order: a run's prompts, whatever the file is called."""
    digest = hashlib.sha256()
    for prompt_id, text in zip(prompts.ids, prompts.prompts, strict=True):
        digest.update(f"{len(prompt_id)}:{prompt_id}{len(text)}:{text}".encode())
    return digest.hexdigest()
