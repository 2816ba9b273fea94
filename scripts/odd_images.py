"""A folder of odd image files: every format and mode Pillow writes, plus broken, mislabelled,
huge and animated ones. The tests and `benchmarks/bench_odd_images.py` run the commands over it;
`python scripts/odd_images.py DIR` writes it for anyone who wants to try their own tools.

Each file's name says what it is; `write_odd_images` returns which files a reader must decode
(`True`) and which it must report as bad (`False`) without stopping.
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (48, 32)


def _gradient(mode: str, size: tuple[int, int] = SIZE) -> Image.Image:
    """A picture with some content (not flat), in `mode`."""
    x = np.linspace(0, 1, size[0])[None, :]
    y = np.linspace(0, 1, size[1])[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1)
    base = Image.fromarray((rgb * 255).astype(np.uint8), "RGB")
    if mode == "I;16":
        return Image.fromarray((x * y * 65535).astype(np.uint16))
    if mode == "I":
        return Image.fromarray((x * y * 1_000_000).astype(np.int32), "I")
    if mode == "F":
        return Image.fromarray((x * y).astype(np.float32), "F")
    if mode == "RGBA":
        rgba = base.convert("RGBA")
        rgba.putalpha(Image.fromarray((y * 255 + 0 * x).astype(np.uint8), "L"))
        return rgba
    if mode == "P":
        return base.quantize(16)
    return base.convert(mode)


# (file name, mode, Pillow format, save options): each must decode.
GOOD: list[tuple[str, str, str, dict]] = [
    ("png-1bit.png", "1", "PNG", {}),
    ("png-grey.png", "L", "PNG", {}),
    ("png-grey-alpha.png", "LA", "PNG", {}),
    ("png-palette.png", "P", "PNG", {}),
    ("png-palette-transparent.png", "P", "PNG", {"transparency": 0}),
    ("png-rgb.png", "RGB", "PNG", {}),
    ("png-rgba.png", "RGBA", "PNG", {}),
    ("png-16bit-grey.png", "I;16", "PNG", {}),
    ("png-32bit-int.png", "I", "PNG", {}),
    ("jpeg-grey.jpg", "L", "JPEG", {}),
    ("jpeg-rgb.jpg", "RGB", "JPEG", {}),
    ("jpeg-cmyk.jpg", "CMYK", "JPEG", {}),
    ("jpeg-progressive.jpeg", "RGB", "JPEG", {"progressive": True}),
    ("webp-rgb.webp", "RGB", "WEBP", {}),
    ("webp-rgba-lossless.webp", "RGBA", "WEBP", {"lossless": True}),
    ("gif-palette.gif", "P", "GIF", {}),
    ("bmp-1bit.bmp", "1", "BMP", {}),
    ("bmp-palette.bmp", "P", "BMP", {}),
    ("bmp-rgb.bmp", "RGB", "BMP", {}),
    ("tiff-rgb.tif", "RGB", "TIFF", {}),
    ("tiff-rgba-lzw.tiff", "RGBA", "TIFF", {"compression": "tiff_lzw"}),
    ("tiff-cmyk.tif", "CMYK", "TIFF", {}),
    ("tiff-16bit-grey.tif", "I;16", "TIFF", {}),
    ("tiff-float.tif", "F", "TIFF", {}),
    ("jpeg2000.jp2", "RGB", "JPEG2000", {}),
    ("targa.tga", "RGB", "TGA", {}),
    ("targa-rgba.tga", "RGBA", "TGA", {}),
    ("icon.ico", "RGBA", "ICO", {}),
    ("pixmap.ppm", "RGB", "PPM", {}),
    ("greymap.pgm", "L", "PPM", {}),
    ("pcx.pcx", "RGB", "PCX", {}),
    ("sgi.sgi", "RGB", "SGI", {}),
    ("qoi.qoi", "RGBA", "QOI", {}),
    ("dds-rgba.dds", "RGBA", "DDS", {}),
    ("avif.avif", "RGB", "AVIF", {}),
]


def _save(image: Image.Image, fmt: str, options: dict) -> bytes | None:
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt, **options)
    except (KeyError, OSError, ValueError):  # a format this Pillow build cannot write
        return None
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header announces `width` x `height` (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _dds_unknown_fourcc() -> bytes:
    """A DDS header with a pixel format no decoder has: Pillow raises NotImplementedError."""
    header = bytearray(128)
    header[0:4] = b"DDS "
    struct.pack_into("<7I", header, 4, 124, 0x1007, 8, 8, 0, 0, 0)
    struct.pack_into("<2I4s", header, 76, 32, 0x4, b"ZZZZ")
    return bytes(header) + b"\0" * 64


def write_odd_images(folder: str | Path, huge: tuple[int, int] | None = (6000, 4000)) -> dict:
    """Write the odd files into `folder`; return {file name: must it decode?}. `huge`: also a
    legal image of that size (None: none)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, bool] = {}

    def put(name: str, data: bytes, decodes: bool) -> None:
        (folder / name).write_bytes(data)
        expected[name] = decodes

    for name, mode, fmt, options in GOOD:
        data = _save(_gradient(mode), fmt, options)
        if data is not None:
            put(name, data, True)

    rgb = _gradient("RGB")
    png, jpeg = _save(rgb, "PNG", {}), _save(rgb, "JPEG", {})
    assert png is not None and jpeg is not None
    put("png-named.jpg", png, True)  # wrong extension: Pillow reads the content
    put("jpeg-named.png", jpeg, True)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the reader must turn it upright
    put("jpeg-exif-rotated.jpg", _save(rgb, "JPEG", {"exif": exif.tobytes()}) or b"", True)
    frames = [_gradient("RGB").rotate(a) for a in (0, 90, 180)]
    for name, fmt in (("animated.gif", "GIF"), ("animated.webp", "WEBP"), ("animated.png", "PNG")):
        buffer = io.BytesIO()
        frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], duration=100)
        put(name, buffer.getvalue(), True)
    if huge is not None:
        flat = Image.new("RGB", huge, (90, 140, 200))
        put(f"huge-{huge[0]}x{huge[1]}.png", _save(flat, "PNG", {}) or b"", True)

    put("zero-bytes.png", b"", False)
    put("truncated.png", png[: len(png) // 2], False)
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    noisy_jpeg = _save(noisy, "JPEG", {}) or b""
    put("truncated.jpg", noisy_jpeg[: len(noisy_jpeg) // 3], False)
    put("text-named.png", b"this is not an image\n", False)
    put("html-named.jpg", b"<html><body>not an image</body></html>", False)
    put("bomb-100000x100000.png", _png_header_only(100_000, 100_000), False)
    put("dds-unknown-format.dds", _dds_unknown_fourcc(), False)
    put("random-bytes.bmp", b"BM" + np.random.default_rng(1).bytes(200), False)
    return expected


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/odd_images.py DIR")
    written = write_odd_images(sys.argv[1])
    print(f"wrote {len(written)} files to {sys.argv[1]} ({sum(written.values())} decodable)")
