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


# Hostile files: headers that declare far more pixels than the file holds (under the pixel
# limit, so only a check of the data, or Pillow's allocation, stops them). A fuzzer finds such
# files; each one once made Pillow allocate hundreds of MB and then fail.
HOSTILE_SIDE = 9000
"""9000 x 9000 = 81 Mpx: under Pillow's decompression-bomb warning (89 Mpx)."""
TALL = (1, 83_886_338)
"""A one-pixel-wide column: Pillow writes a pointer per row, 8 bytes each (640 MB), before it
decodes anything."""
TALL_ROOM = 90_000
"""Bytes of data after a tall uncompressed header: more than its pixels need at the densest
(1,024 a byte), fewer than its rows (each takes a byte)."""


def _pillow_bytes(fmt: str, mode: str = "RGB", **options: object) -> bytes:
    data = _save(_gradient(mode, (8, 8)), fmt, dict(options))
    assert data is not None, fmt
    return data


def _patched(data: bytes, *fields: tuple[str, int, int]) -> bytes:
    """`data` with (struct format, offset, value) fields written over it."""
    out = bytearray(data)
    for fmt, offset, value in fields:
        struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def _hostile_blp(width: int, height: int, encoding: int = 1) -> bytes:
    """BLP2, uncompressed palette (encoding 1) or DXT1 blocks (2, as Pillow's fuzzed test
    files): 20-byte header, then 16 offsets and 16 lengths."""
    header = b"BLP2" + struct.pack("<i4b2I", 1, encoding, 0, 0, 0, width, height)
    offsets = struct.pack("<16I", 148 + 1024, *([0] * 15))
    lengths = struct.pack("<16I", width * height, *([0] * 15))
    return header + offsets + lengths + b"\0" * 1024 + b"\x01" * 64


def _hostile_fli(width: int, height: int) -> bytes:
    """FLC header (magic 0xAF12, 8-bit) and the start of a frame chunk."""
    header = bytearray(128)
    struct.pack_into("<IHHHHHHI", header, 0, 128 + 16, 0xAF12, 1, width, height, 8, 3, 5)
    frame = struct.pack("<IHH8x", 16 + 64, 0xF1FA, 1)
    return bytes(header) + frame + b"\0" * 12


def _hostile_psd(width: int, height: int) -> bytes:
    """PSD, RGB, raw: header, three empty sections, compression 0, 64 bytes of pixels."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    return header + struct.pack(">IIIH", 0, 0, 0, 0) + b"\x80" * 64


def _hostile_icns() -> bytes:
    """ICNS whose one block (ic10: 1024x1024@2x PNG) declares 100 MB and holds 16 bytes."""
    block = b"ic10" + struct.pack(">I", 100_000_000) + b"\x89PNG\r\n\x1a\n" + b"\0" * 8
    return b"icns" + struct.pack(">I", 100_000_008) + block


def _hostile_jpeg2000(side: int) -> bytes:
    """A JP2 written by Pillow whose `ihdr` box and SIZ marker declare `side` x `side`."""
    data = bytearray(_pillow_bytes("JPEG2000"))
    ihdr = data.index(b"ihdr") + 4
    struct.pack_into(">II", data, ihdr, side, side)
    siz = data.index(b"\xff\x51") + 6
    struct.pack_into(">II", data, siz, side, side)
    return bytes(data[: len(data) - 32])


def _hostile_tiff(side: int) -> bytes:
    """A TIFF written by Pillow whose width, length and rows per strip say `side`."""
    data = _pillow_bytes("TIFF")
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    fields = []
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257, 278):  # ImageWidth, ImageLength, RowsPerStrip
            fields.append(("<H" if kind == 3 else "<I", entry + 8, side))
    return _patched(data, *fields)


def hostile_images() -> dict[str, bytes]:
    """{file name: bytes} of files whose headers declare far more pixels than they hold; every
    one must be reported as bad, and none may keep memory after it. BLP and FLI, no folder
    formats, are named as ones (Pillow reads the content, whatever the name says)."""
    side = HOSTILE_SIDE
    tga = _pillow_bytes("TGA")
    return {
        "hostile-blp-1x83886338-named.png": _hostile_blp(*TALL),
        "hostile-blp-9000x9000-named.png": _hostile_blp(side, side),
        "hostile-blp-dxt-1x83886338-named.png": _hostile_blp(*TALL, encoding=2),
        "hostile-dds-9000x9000.dds": _patched(
            _pillow_bytes("DDS", "RGBA"), ("<I", 12, side), ("<I", 16, side)
        ),
        "hostile-dds-128x659463.dds": _patched(
            _pillow_bytes("DDS", "RGBA"), ("<I", 12, 659_463), ("<I", 16, 128)
        ),
        "hostile-fli-9000x9000-named.png": _hostile_fli(side, side),
        "hostile-fli-65535x1300-named.gif": _hostile_fli(65535, 1300),
        "hostile-tga-9000x9000.tga": _patched(tga, ("<H", 12, side), ("<H", 14, side)),
        "hostile-tga-rle-9000x9000.tga": _patched(
            _pillow_bytes("TGA", compression="tga_rle"), ("<H", 12, side), ("<H", 14, side)
        ),
        "hostile-tga-1x65535.tga": _patched(tga, ("<H", 12, 1), ("<H", 14, 65535)),
        "hostile-pcx-9000x9000.pcx": _patched(
            _pillow_bytes("PCX"), ("<H", 8, side - 1), ("<H", 10, side - 1)
        ),
        "hostile-sgi-9000x9000.sgi": _patched(
            _pillow_bytes("SGI"), (">H", 6, side), (">H", 8, side)
        ),
        "hostile-sgi-rle-9000x9000.sgi": _patched(
            _pillow_bytes("SGI", bpc=1, rle=True), (">H", 6, side), (">H", 8, side)
        ),
        "hostile-psd-9000x9000.psd": _hostile_psd(side, side),
        "hostile-psd-1x83886338.psd": _hostile_psd(*TALL),
        "hostile-icns-ic10.icns": _hostile_icns(),
        "hostile-tiff-9000x9000.tif": _hostile_tiff(side),
        "hostile-jpeg2000-9000x9000.jp2": _hostile_jpeg2000(side),
        "hostile-bmp-9000x9000.bmp": _patched(
            _pillow_bytes("BMP"), ("<i", 18, side), ("<i", 22, side)
        ),
        "hostile-png-9000x9000.png": _png_header_only(side, side),
        "hostile-ppm-9000x9000.ppm": b"P6 9000 9000 255\n" + b"\x80" * 64,
        "hostile-pgm-1x83886338.pgm": b"P5 1 %d 255\n" % TALL[1] + b"\0" * TALL_ROOM,
        "hostile-bmp-1x83886338.bmp": _patched(
            _pillow_bytes("BMP", "L"), ("<i", 18, TALL[0]), ("<i", 22, TALL[1])
        )
        + b"\0" * TALL_ROOM,
    }


def write_odd_images(
    folder: str | Path, huge: tuple[int, int] | None = (6000, 4000), hostile: bool = True
) -> dict:
    """Write the odd files into `folder`; return {file name: must it decode?}. `huge`: also a
    legal image of that size (None: none). `hostile`: also `hostile_images()`."""
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
    # Legal, 118 bytes: resizing all of it to a model's 224 px short side once took 4 GB.
    put("png-tall-1x20000.png", _save(_gradient("L", (1, 20_000)), "PNG", {}) or b"", True)
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
    for name, data in hostile_images().items() if hostile else ():
        put(name, data, False)
    return expected


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/odd_images.py DIR")
    written = write_odd_images(sys.argv[1])
    print(f"wrote {len(written)} files to {sys.argv[1]} ({sum(written.values())} decodable)")
