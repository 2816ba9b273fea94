"""decode's and describe's output files, written one way whatever the command.

A result is a JSON-ready dict (`Decoded.to_json`, `Description.to_json`). By `--out`'s suffix:
- `.txt`: each result's `prompt`, one a line in input order (an empty line for none; inputs
  that failed have no result, so no line: they are in `.json`'s failures);
- `.json`: `{"results": [...], "failures": [...]}`, the same objects `--json` prints;
- `.parquet`: one column per field the results have, typed by the caller's schema; a field that
  is a mapping or a list in a text column (describe's `settings`, `passes`) is stored as JSON
  text, since its keys vary by file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from typing_extensions import TypedDict  # pydantic reads it for the HTTP schema (Python < 3.12)

from img2prompt.errors import ConfigError
from img2prompt.io import atomic_path, write_parquet

RESULT_SUFFIXES = (".txt", ".json", ".parquet")
"""What decode's and describe's `--out` may end in."""


class Neighbor(TypedDict):
    """A bank entry near an embedding, as the JSON says it."""

    text: str
    cosine: float


NEIGHBORS = pa.list_(pa.struct([("text", pa.string()), ("cosine", pa.float32())]))
"""`neighbors`: the nearest bank entries, `{text, cosine}` each, as in the JSON."""


def write_results(
    out: Path,
    results: Sequence[dict[str, Any]],
    schema: pa.Schema,
    failures: Sequence[dict[str, str]] = (),
) -> None:
    """Write `results` (and, in `.json`, `failures`) to `out` atomically (module docstring)."""
    out = Path(out)
    check_result_output(out)
    suffix = out.suffix.lower()
    if suffix == ".txt":
        with atomic_path(out) as tmp:
            lines = "".join((r.get("prompt") or "").replace("\n", " ") + "\n" for r in results)
            tmp.write_text(lines, encoding="utf-8")
    elif suffix == ".json":
        body = {"results": list(results), "failures": list(failures)}
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n", "utf-8")
    else:
        present = {key for r in results for key in r}
        kept = pa.schema([f for f in schema if f.name in present or not results])
        text_columns = {f.name for f in kept if pa.types.is_string(f.type)}
        rows = [
            {k: _as_text(v) if k in text_columns else v for k, v in r.items() if k in kept.names}
            for r in results
        ]
        write_parquet(pa.Table.from_pylist(rows, schema=kept), out)


def check_result_output(out: Path | None) -> None:
    """Refuse an `--out` that `write_results` cannot write, before any work."""
    if out is not None and Path(out).suffix.lower() not in RESULT_SUFFIXES:
        raise ConfigError(f"--out must end in {', '.join(RESULT_SUFFIXES)}, got {Path(out).name!r}")


def _as_text(value: Any) -> Any:
    """A mapping or list stored in a text column (settings, passes: their keys vary by file) is
    JSON text."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
