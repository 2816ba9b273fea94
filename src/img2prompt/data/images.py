"""Opening images the way a model expects them: 8-bit RGB, upright, with a clear error otherwise.

Pillow does the decoding; this module only decides what to do with the odd cases a real folder
holds (CMYK JPEGs, 16-bit PNGs, palettes with transparency, EXIF rotation, decompression bombs,
decoders that fail with any exception at all) and keeps huge images from multiplying memory:
a caller that needs only a small picture (`fit`) gets a reduced one, and a `PixelBudget` bounds
the pixels that worker threads decode at once.
"""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from img2prompt.errors import ConfigError, InputError

MAX_PIXELS = Image.MAX_IMAGE_PIXELS
"""Files with more pixels are refused as decompression bombs, not decoded: Pillow's own limit
(89.5 Mpx, 256 MiB of RGB). A caller may raise it up to twice that, where Pillow refuses a file
itself."""
UPLOAD_MAX_PIXELS = 64_000_000
"""An upload's limit (a server's default `--max-megapixels`): lower than a file's, as anyone
can send one."""
_BACKGROUND = (255, 255, 255)  # transparent pixels become white, as most viewers show them

FOLDER_FORMATS = (
    "AVIF",
    "BMP",
    "DDS",
    "DIB",
    "GIF",
    "HEIF",
    "ICNS",
    "ICO",
    "JPEG",
    "JPEG2000",
    "MPO",
    "PCX",
    "PNG",
    "PPM",
    "PSD",
    "QOI",
    "SGI",
    "TGA",
    "TIFF",
    "WEBP",
)
"""Still-image formats a folder search takes: those Pillow decodes that people keep. Left out:
EPS (Pillow runs Ghostscript on it), scientific and video containers (FITS, GRIB, HDF5, MPEG,
FLI), and formats Pillow only writes. A file named on the command line is tried whatever it is."""

REDUCE_ABOVE_PIXELS = 4096 * 4096
"""With `fit` given, an image over this many pixels is reduced (JPEG: decoded at 1/2, 1/4 or 1/8
scale; others: box-averaged after decoding) to no less than twice `fit` on its short side. Below
it every image is decoded exactly as it is, so ordinary photos give the same pixels either way."""


def _register_plugins() -> None:
    """HEIF/HEIC through pillow-heif, when that optional plugin is installed."""
    with contextlib.suppress(ImportError):
        from pillow_heif import register_heif_opener  # type: ignore[import-not-found]

        register_heif_opener()


_register_plugins()


def folder_suffixes() -> frozenset[str]:
    """File suffixes (lower case, with the dot) of `FOLDER_FORMATS`, as Pillow registers them."""
    return frozenset(
        suffix.lower()
        for suffix, fmt in Image.registered_extensions().items()
        if fmt in FOLDER_FORMATS
    )


class PixelBudget:
    """Bounds the pixels being decoded at once by several threads: each decode holds its
    image's pixel count (at most `capacity`) until the image is reduced to model input, so a
    few huge images cannot be in memory together. An image over the capacity waits until it
    can go alone."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.in_use = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        want = min(max(pixels, 1), self.capacity)
        with self._changed:
            self._changed.wait_for(lambda: self.in_use + want <= self.capacity)
            self.in_use += want
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= want
                self._changed.notify_all()


def load_image(
    path: str | Path,
    max_pixels: int = MAX_PIXELS,
    fit: int | None = None,
    budget: PixelBudget | None = None,
) -> Image.Image:
    """Open `path` as an upright 8-bit RGB image; raise `InputError` naming the file and why.

    `fit`: the caller needs no more than this many pixels on the short side (a model's resize),
    so a huge image may come back reduced (`REDUCE_ABOVE_PIXELS`). `budget`: shared by threads
    that decode at the same time (`PixelBudget`)."""
    path = Path(path)
    try:
        return _decode(path, path, max_pixels, fit=fit, budget=budget)
    except FileNotFoundError:
        pass  # raised below, outside this block, so that it has no context
    raise InputError(path, "no such image file")


UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
"""What `load_image_bytes` opens by default: the common formats, none that runs a helper
program (Pillow hands EPS to Ghostscript)."""


def load_image_bytes(
    data: bytes,
    name: str = "upload",
    max_pixels: int = MAX_PIXELS,
    formats: Sequence[str] | None = UPLOAD_FORMATS,
) -> Image.Image:
    """`load_image` for an image held in memory (an upload); errors name it `name`."""
    return _decode(io.BytesIO(data), name, max_pixels, formats)


def image_header(
    data: bytes, name: str = "upload", formats: Sequence[str] | None = UPLOAD_FORMATS
) -> tuple[str, int, int]:
    """(format, width, height) from the header alone, without decoding pixels; `NotAnImage`
    when no allowed format recognises the bytes."""
    _prepare_pillow()
    try:
        with Image.open(io.BytesIO(data), formats=formats) as image:
            return str(image.format), image.width, image.height
    except Image.UnidentifiedImageError:
        raise NotAnImage(name, _not_an_image(formats)) from None
    except Image.DecompressionBombError as e:
        raise InputError(name, f"refused as a decompression bomb ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(name, f"cannot read the image header: {e}") from None


class NotAnImage(InputError):
    """The bytes are in no image format that is allowed (or that Pillow knows)."""


def _not_an_image(formats: Sequence[str] | None) -> str:
    if formats is None:
        return "cannot decode image: not in any image format Pillow knows"
    return f"not an image (accepted: {', '.join(formats)})"


def _decode(
    source: Path | BinaryIO,
    name: str | Path,
    max_pixels: int,
    formats: Sequence[str] | None = None,
    fit: int | None = None,
    budget: PixelBudget | None = None,
) -> Image.Image:
    """`_open_rgb`, with every way a decoder fails turned into an `InputError` that holds only
    its reason. The error is raised outside the `except` block, so it has no `__context__`:
    Pillow's exception, whose traceback holds the decoder's frames and through them a buffer
    as large as the file's header declared, is freed here, not kept by a failure record."""
    try:
        return _open_rgb(source, name, max_pixels, formats, fit, budget)
    except (InputError, FileNotFoundError):
        raise
    except Exception as e:  # every decoder failure is one bad file, never the end of a job
        reason, not_an_image = _failure_reason(e, formats)
    raise (NotAnImage if not_an_image else InputError)(name, reason)


def _failure_reason(error: BaseException, formats: Sequence[str] | None) -> tuple[str, bool]:
    """(why a file could not be decoded, was it in no allowed format at all)."""
    if isinstance(error, Image.UnidentifiedImageError):
        return _not_an_image(formats), True
    if isinstance(error, Image.DecompressionBombError):
        return f"refused as a decompression bomb ({error})", False
    if isinstance(error, OSError | SyntaxError | ValueError):  # Pillow's "not decodable"
        return f"cannot decode image: {error}", False
    if isinstance(error, MemoryError):
        return "cannot decode image: not enough memory for it", False
    # A decoder's own bug (DDS: NotImplementedError; struct.error, IndexError...) is one bad
    # file, never the end of a job.
    return f"cannot decode image: {type(error).__name__}: {error}", False


def _prepare_pillow() -> None:
    """Before each open:
    - every plugin registered, in Pillow's order (once; then a no-op): otherwise the first
      file's suffix decides which plugin is asked first (after a .tga file, TGA, whose check
      takes almost anything, opened an icon and failed to load it);
    - Pillow's decompression-bomb warning ignored: `max_pixels` refuses those files itself.
      Not inside `warnings.catch_warnings`, whose restore on leaving drops the filters another
      thread added meanwhile (int8's, set while images decode beside the model); again at
      each open, as a caller's own `catch_warnings` may have dropped it since."""
    Image.init()
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _open_rgb(
    source: Path | BinaryIO,
    name: str | Path,
    max_pixels: int,
    formats: Sequence[str] | None,
    fit: int | None,
    budget: PixelBudget | None,
) -> Image.Image:
    """Open, check the header's claims before any pixels are allocated, decode, make RGB."""
    available = _source_bytes(source)
    _prepare_pillow()
    with Image.open(source, formats=formats) as image:
        width, height = image.size
        if width * height > max_pixels:
            limit = f"over the {max_pixels:,}-pixel limit"
            raise InputError(name, f"image is {width}x{height}, {limit}")
        _check_data_suffices(image, available, name)
        holding = budget.hold(width * height) if budget else contextlib.nullcontext()
        with holding:
            reduce = fit is not None and width * height > REDUCE_ABOVE_PIXELS
            if reduce and image.format == "JPEG":
                image.draft("RGB", _at_least(image.size, 2 * fit))  # type: ignore[arg-type]
            image.load()
            if reduce:
                image = _reduce(image, 2 * fit)  # type: ignore[operator]
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)


_DENSEST_RUN_LENGTH = 1024
"""Above any run-length or uncompressed decoder's densest legal data (PackBits of 1-bit
pixels: 512 per byte)."""
MAX_PIXELS_PER_BYTE = {
    **dict.fromkeys(
        ("raw", "dds_rgb", "bcn", "packbits", "tga_rle", "sgi_rle", "pcx", "ppm", "ppm_plain"),
        _DENSEST_RUN_LENGTH,
    ),
    # BLP's Python decoders (palette, BGRA, DXT blocks; not BLP1's JPEG, `_UNBOUNDED_ARGS`),
    # QOI (a run byte: 62 pixels) and Sun RLE: a fuzzed BLP declaring 1x83,886,338 in 284
    # bytes made Pillow allocate 640 MB of row pointers before failing.
    **dict.fromkeys(("BLP1", "BLP2", "qoi", "sun_rle"), _DENSEST_RUN_LENGTH),
    "gif": 4096,  # LZW: one 12-bit code gives at most 4,096 pixels
    "zip": 16 * 1024,  # PNG: deflate inflates 1,032x at most, 1-bit pixels 8 a byte
}
"""Pillow decoders whose output per byte of file is bounded, and the bound: a header declaring
far more pixels than the file could hold is refused before Pillow allocates them (a fuzzed TGA
or PNG header claims 81 Mpx in 60 bytes). Others (JPEG, WebP, JPEG 2000, FLI, BMP RLE, whose
escapes skip rows) can fill a picture from a few bytes; for them the pixel limit and the decode
budget are the bound."""
WHOLE_BYTE_ROWS = frozenset(("raw", "dds_rgb", "ppm", "ppm_plain"))
"""Uncompressed decoders: every row takes at least one byte of the file, so a header cannot
declare more rows than the file has bytes. Pillow writes an 8-byte pointer per row before
decoding: a 100 KB BMP or PGM declaring 1x83,886,338 cost 640 MB, then failed as truncated."""
_UNBOUNDED_ARGS = {("BLP1", 0)}
"""(decoder, first argument) that `MAX_PIXELS_PER_BYTE` does not bound: BLP1's compression 0,
a JPEG inside."""


def _pixels_per_byte(tile: tuple) -> int | None:
    """The bound on what a tile's decoder makes of one byte (`MAX_PIXELS_PER_BYTE`); None
    when it has none."""
    args = tile[3] if len(tile) > 3 else None
    if isinstance(args, tuple) and args and (tile[0], args[0]) in _UNBOUNDED_ARGS:
        return None
    return MAX_PIXELS_PER_BYTE.get(tile[0])


def _check_data_suffices(image: Image.Image, available: int | None, name: str | Path) -> None:
    """An `InputError` when a tile of a bounded decoder (`MAX_PIXELS_PER_BYTE`) declares more
    pixels (or, uncompressed, `WHOLE_BYTE_ROWS`, more rows) than the bytes after its offset
    could hold."""
    if available is None:
        return
    for tile in getattr(image, "tile", None) or []:
        extents, offset, density = tile[1], tile[2], _pixels_per_byte(tile)
        if density is None or extents is None:
            continue
        rows = max(0, extents[3] - extents[1])
        pixels = max(0, extents[2] - extents[0]) * rows
        room = max(0, available - (offset or 0))
        if pixels > room * density or (tile[0] in WHOLE_BYTE_ROWS and rows > room):
            width, height = image.size
            raise InputError(
                name,
                f"cannot decode image: its header declares {width}x{height} pixels but the "
                f"file holds only {available:,} bytes (truncated or corrupt)",
            )


def _source_bytes(source: Path | BinaryIO) -> int | None:
    """The size of a file or of an in-memory stream; None when it cannot be told."""
    try:
        if isinstance(source, Path):
            return source.stat().st_size
        if isinstance(source, io.BytesIO):
            return source.getbuffer().nbytes
    except OSError:
        return None
    return None


def detached(error: InputError) -> InputError:
    """`error` without its traceback and context, for a failure record kept past the decode:
    those hold the frames (and the buffers) of whatever raised it."""
    error.__context__ = error.__cause__ = None
    return error.with_traceback(None)


def _at_least(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """The size `size` scaled so that its short side is `short_side` (never enlarged)."""
    scale = min(1.0, short_side / min(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _reduce(image: Image.Image, short_side: int) -> Image.Image:
    """Box-average by the largest integer factor that keeps the short side >= `short_side`."""
    factor = min(image.size) // short_side
    if factor < 2:
        return image
    if image.mode == "1":
        image = image.convert("L")
    elif image.mode == "PA" or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")  # averaging palette indices would mix unrelated colours
    elif image.mode == "P":
        image = image.convert("RGB")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")
    return image.reduce(factor)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: 16-bit scaled down, transparency composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16/32-bit greyscale and float: Pillow's convert("L") clips instead of scaling.
        array = np.asarray(image, dtype=np.float32)
        peak = float(np.nanmax(array)) if array.size else 0.0
        if image.mode.startswith("I;16") or peak > 255:
            top = 65535.0
        elif image.mode == "F" and peak <= 1.0:
            top = 1.0  # float images in 0..1
        else:
            top = 255.0
        scaled = np.nan_to_num(array / top * 255.0 + 0.5, nan=0.0)
        image = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, _BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB") if image.mode != "RGB" else image


@dataclass
class ImageSearch:
    """What `scan_images` found: the images, in order, and the folder files it passed over."""

    images: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    """Files inside the folders given whose suffix is no still-image format (`FOLDER_FORMATS`)."""

    def summary(self) -> str:
        """'' or, when files were passed over, '; 3 files skipped as non-images (.txt, .json)'."""
        if not self.skipped:
            return ""
        kinds = sorted({p.suffix.lower() or "no suffix" for p in self.skipped})
        shown = ", ".join(kinds[:6]) + (", ..." if len(kinds) > 6 else "")
        return f"; {len(self.skipped):,} files skipped as non-images ({shown})"

    def require_images(self, inputs: Sequence[str | Path]) -> None:
        """A ConfigError when nothing under `inputs` was an image (saying what was passed over)."""
        if not self.images:
            where = ", ".join(map(str, inputs))
            raise ConfigError(f"no image files under {where}{self.summary()}")


def scan_images(paths: Sequence[str | Path]) -> ImageSearch:
    """Files as given and folders searched recursively (sorted), keeping the order of `paths`.
    In folders only still-image files are taken (`FOLDER_FORMATS`, by suffix; hidden files and
    folders are passed over); a file named directly is always taken, whatever its suffix."""
    search = ImageSearch()
    for path in map(Path, paths):
        if path.is_dir():
            # Only folders need them: Pillow's full list of formats imports all its plugins.
            suffixes = folder_suffixes()
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if any(part.startswith(".") for part in file.relative_to(path).parts):
                    continue
                taken = file.suffix.lower() in suffixes
                (search.images if taken else search.skipped).append(file)
        elif path.exists():
            search.images.append(path)
        else:
            raise InputError(path, "no such file or folder")
    return search
