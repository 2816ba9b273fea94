"""ComfyUI graphs in video files (MP4/MOV, WebM/MKV) that Pillow cannot open.

Video nodes store the graph as container metadata: ComfyUI's SaveVideo writes one tag a key
(`prompt`, `workflow`) holding its JSON; VideoHelperSuite writes a `comment` tag holding
`{"prompt": ..., "workflow": ...}`. Both sit in the container's header, at the start of the file
or (MP4 written without "faststart") at its end, as plain UTF-8. Rather than parse the
container (a new dependency), the first and last `SCAN_BYTES` are searched for a JSON object
that has the shape of a graph: bounded reads, at most `MAX_TRIES` decodes, nothing evaluated.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

SCAN_BYTES = 4 << 20
"""Bytes read from each end of a video file."""
MAX_TRIES = 16
"""JSON objects tried at most in one file."""
MAGIC = ((4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"))
"""MP4/MOV (`ftyp` box) and Matroska/WebM (EBML header)."""
START = re.compile(rb'\{\s*"(?:\d+(?::\d+)*|prompt|workflow|last_node_id|id|nodes)"\s*:')
"""Where a graph's JSON may begin: a node id, or a key of the wrapper or the editor graph."""


def is_video(head: bytes) -> bool:
    return any(head[at : at + len(magic)] == magic for at, magic in MAGIC)


def _ends(source: str | Path | bytes) -> bytes | None:
    """The first and last `SCAN_BYTES` of a video file (all of a smaller one); None when the
    file is no MP4/WebM."""
    if isinstance(source, bytes):
        if not is_video(source[:16]):
            return None
        return (
            source if len(source) <= 2 * SCAN_BYTES else source[:SCAN_BYTES] + source[-SCAN_BYTES:]
        )
    with open(source, "rb") as file:
        head = file.read(SCAN_BYTES)
        if not is_video(head[:16]):
            return None
        size = file.seek(0, io.SEEK_END)
        if size <= SCAN_BYTES:
            return head
        file.seek(max(SCAN_BYTES, size - SCAN_BYTES))
        return head + file.read(SCAN_BYTES)


def video_chunks(source: str | Path | bytes, *, max_chars: int) -> dict[str, str]:
    """`prompt` and `workflow` JSON texts found in a video file; empty when none (or no video)."""
    try:
        data = _ends(source)
    except OSError:
        return {}
    if not data:
        return {}
    chunks: dict[str, str] = {}
    decoder = json.JSONDecoder()
    tries, decoded_until = 0, 0
    for match in START.finditer(data):
        if tries >= MAX_TRIES or ("prompt" in chunks and "workflow" in chunks):
            break
        if match.start() < decoded_until:
            continue  # inside an object already decoded (a workflow's nodes)
        tries += 1
        text = data[match.start() : match.start() + max_chars].decode("utf-8", "replace")
        try:
            value, end = decoder.raw_decode(text)
        except (ValueError, RecursionError):
            continue
        decoded_until = match.start() + len(text[:end].encode("utf-8"))
        _sort(value, chunks)
    return chunks


def _sort(value: Any, chunks: dict[str, str]) -> None:
    """Files a decoded object as the executed graph, the editor graph, or a wrapper of both."""
    if not isinstance(value, dict):
        return
    if isinstance(value.get("nodes"), list):
        chunks.setdefault("workflow", json.dumps(value))
    elif any(isinstance(v, dict) and "class_type" in v for v in value.values()):
        chunks.setdefault("prompt", json.dumps(value))
    else:
        for key in ("prompt", "workflow"):
            inner = value.get(key)
            if isinstance(inner, str):
                inner = _loads(inner)
            if isinstance(inner, dict):
                _sort(inner, chunks)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None
