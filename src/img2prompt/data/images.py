"""Opening images the way a model expects them: 8-bit RGB, upright, with a clear error otherwise.

Pillow does the decoding; this module only decides what to do with the odd cases a real folder
holds (CMYK JPEGs, 16-bit PNGs, palettes with transparency, EXIF rotation, decompression bombs).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from img2prompt.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_PIXELS = 16384 * 16384  # larger is treated as a decompression bomb, not decoded
_BACKGROUND = (255, 255, 255)  # transparent pixels become white, as most viewers show them


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open `path` as an upright 8-bit RGB image; raise `InputError` naming the file and why."""
    path = Path(path)
    try:
        return _decode(path, path, max_pixels)
    except FileNotFoundError:
        raise InputError(path, "no such image file") from None


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
) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=formats) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise InputError(
                        name, f"image is {width}x{height}, over the {max_pixels:,}-pixel limit"
                    )
                image.load()
                image = ImageOps.exif_transpose(image)
                return to_rgb(image)
    except (InputError, FileNotFoundError):
        raise
    except Image.UnidentifiedImageError:
        raise NotAnImage(name, _not_an_image(formats)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(name, f"refused as a decompression bomb ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's ways of saying "not decodable"
        raise InputError(name, f"cannot decode image: {e}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: 16-bit scaled down, transparency composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: Pillow's convert("L") clips instead of scaling, so scale here.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, _BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB") if image.mode != "RGB" else image


def find_images(paths: list[Path]) -> list[Path]:
    """Files as given and folders searched recursively (sorted), keeping the order of `paths`."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.exists():
            found.append(path)
        else:
            raise InputError(path, "no such file or folder")
    return found
