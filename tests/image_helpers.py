"""Images made in the tests: drawn pictures, broken files, decompression bombs."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageDraw


def drawn_png(width: int = 160, height: int = 120, seed: int = 0) -> bytes:
    """A small picture (sky, sun, hills) as PNG bytes; `seed` shifts its colours."""
    image = Image.new("RGB", (width, height), (70 + seed * 20 % 150, 140, 220))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.6, height * 0.1, width * 0.8, height * 0.35), fill=(255, 210, 60))
    draw.polygon([(0, height), (width * 0.4, height * 0.5), (width, height)], fill=(40, 120, 50))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but holds no pixel data: a decompression bomb's
    header (a real one would hold a few MB of zlib that inflate to gigabytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
