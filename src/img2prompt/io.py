"""Crash-safe writes and the Parquet layout of embedding columns (list<float32>, one vector a row).

`atomic_path` writes one file, `atomic_dir` one folder: a crash (even SIGKILL or power loss)
leaves the old file or folder or the new one at the path, never half of one, never neither.
Every module that publishes a file or folder goes through these two; none renames by hand.
`keep_copy` keeps a file made from another (a cache: it can always be made again), and
`cache_folder` says where such files live unless a bank folder keeps them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        fsync_file(tmp)
        # mkstemp makes the file private (0600); what we write is the user's output, readable as
        # any file they would create (captions read by a trainer in another account, say).
        with contextlib.suppress(OSError):
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
        fsync_dir(path.parent)  # the rename itself must reach the disk, not just the bytes
    finally:
        tmp.unlink(missing_ok=True)


def cache_folder(name: str) -> Path:
    """Where img2prompt keeps what it can make again (`name`: embeddings, banks, weights...):
    $IMG2PROMPT_CACHE/name, else $XDG_CACHE_HOME (or ~/.cache)/img2prompt/name."""
    if root := os.environ.get("IMG2PROMPT_CACHE"):
        return Path(root) / name
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "img2prompt" / name


def keep_copy(copy: Path, write: Callable[[Path], object], earlier: str) -> None:
    """Keep a file made from another for later runs: `write` writes it to the path it is given,
    then it replaces `copy`, and the copies of earlier versions (`earlier`, a glob pattern in
    the same folder) are deleted. A copy is only a saving: where it cannot be written
    (a read-only folder, a full disk, whatever error the writer reports it in), nothing is
    kept and the run goes on."""
    with contextlib.suppress(Exception):  # safetensors reports a full disk as its own error
        with atomic_path(copy) as tmp:
            write(tmp)
        for stale in copy.parent.glob(earlier):
            if stale != copy:
                stale.unlink(missing_ok=True)


def remove_stale_temporaries(path: str | Path) -> int:
    """Delete the temporaries `atomic_path` left beside `path` when a process was killed while
    writing it (nothing else can remove them); returns how many. Call it where one writer owns
    `path`, before writing it again."""
    path = Path(path)
    stale = list(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return len(stale)


def _read_umask() -> int:
    """The process's umask. Reading it means setting it, so it is read once, at import, before
    any thread of ours creates a file."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def backup_dir(path: str | Path) -> Path:
    """Where `swap_dir` keeps the old folder for the instant between its two renames."""
    path = Path(path)
    return path.parent / f".{path.name}.old"


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; on success its files are fsynced and it
    replaces `path` (`swap_dir`). On an exception `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(path)
    tmp = _fresh_sibling(path)
    try:
        yield tmp
        swap_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fresh_sibling(path: Path) -> Path:
    """A new empty folder beside `path` with the usual permissions (umask), unlike mkdtemp's
    0700, which the published folder would keep."""
    for _ in range(100):
        candidate = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


def swap_dir(new: Path, path: Path) -> None:
    """Publish the finished folder `new` at `path` (same file system), replacing what is there.

    POSIX cannot rename a folder onto a non-empty one, so the old folder is first renamed to
    `backup_dir(path)`, then `new` renamed in, then the backup deleted. A crash between the two
    renames leaves only the backup, which `recover_dir` (called by every writer of
    such folders) renames back: at every instant the old or the new complete folder survives.
    """
    path = Path(path)
    recover_dir(path)
    fsync_tree(new)
    backup = backup_dir(path)
    had_old = path.exists()
    if had_old:
        os.replace(path, backup)
    os.replace(new, path)
    fsync_dir(path.parent)
    if had_old:
        shutil.rmtree(backup, ignore_errors=True)


def recover_dir(path: str | Path) -> None:
    """Undo a swap that was cut off between its renames: a backup with no folder at `path` is
    the last complete folder, so it goes back; a backup beside a folder is stale and goes.

    For writers, one per folder (a training run, a bank build); readers use `readable_dir`,
    which renames nothing."""
    path = Path(path)
    backup = backup_dir(path)
    if not backup.exists():
        return
    if path.exists():
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(backup, path)
        fsync_dir(path.parent)


def readable_dir(path: str | Path) -> Path:
    """The folder a reader should read: `path`, or, when a swap was cut off between its two
    renames, the backup beside it (the last complete folder). It renames nothing: a reader that
    put the backup back could make a writer between its renames fail; the next writer recovers
    the folder (`recover_dir`)."""
    path = Path(path)
    if path.exists():
        return path
    backup = backup_dir(path)
    return backup if backup.is_dir() else path


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(folder: str | Path) -> None:
    """Make renames and new names in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):  # pragma: no cover - not POSIX
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | Path) -> None:
    """fsync every file and folder under `folder` (and `folder` itself), deepest first."""
    for root, _, files in os.walk(folder, topdown=False):
        for name in files:
            fsync_file(Path(root) / name)
        fsync_dir(root)


def write_parquet(table: pa.Table, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_json(path: str | Path) -> Any:
    """A JSON file's value; a file that is not valid UTF-8 JSON is an InputError naming it."""
    from img2prompt.errors import InputError

    try:
        return json.loads(Path(path).read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise InputError(path, f"not valid UTF-8 at byte {e.start + 1}") from None
    except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON: {e.msg} (column {e.colno})", e.lineno) from None


def write_json(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def vector_column(vectors: np.ndarray) -> pa.ListArray:
    """(N, D) vectors as a list<float32> column, without a Python list per row."""
    n, dim = vectors.shape
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    values = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
    return pa.ListArray.from_arrays(offsets, values)


def vectors_from_column(column: pa.ChunkedArray | pa.Array, path: str | Path) -> np.ndarray:
    """A list column back to an (N, D) float32 array; rows of unequal length name the file."""
    from img2prompt.errors import InputError

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = set(column.value_lengths().to_pylist()) if len(column) else {0}
    if len(lengths) != 1 or 0 in lengths or column.null_count:
        raise InputError(path, f"vector rows must all have the same length, got {lengths}")
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(len(column), -1)
