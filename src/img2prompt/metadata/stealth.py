""" "Stealth" PNG info: generation text hidden in the lowest bit of the pixels (the A1111/Forge
stealth-pnginfo extension; NovelAI writes its JSON the same way), which survives sites that strip
PNG text chunks.

Written here rather than taken from sd-parsers: its reader turns every pixel into a Python tuple
(hundreds of MB for one large image), knows one of the four variants, decompresses without a
size limit, and caches by `id()` of the image in module globals, so a later image that reuses a
freed image's id gets the earlier image's text.

Layout: bits run down each column, column by column; first a signature (`stealth_pnginfo` /
`stealth_pngcomp` in the alpha channel, one bit a pixel; `stealth_rgbinfo` / `stealth_rgbcomp` in
R, G and B, three bits a pixel), then the payload's length in bits (32-bit big-endian), then the
payload: UTF-8 text, gzip-compressed for the `comp` variants.
"""

from __future__ import annotations

import zlib

import numpy as np
from PIL import Image

SIGNATURES = {
    b"stealth_pnginfo": ("alpha", False),
    b"stealth_pngcomp": ("alpha", True),
    b"stealth_rgbinfo": ("rgb", False),
    b"stealth_rgbcomp": ("rgb", True),
}
SIGNATURE_BYTES = 15
MAX_PAYLOAD_BYTES = 1 << 20
"""Larger hidden payloads (or their decompressed text) are refused: generation text is a few KB."""


class StealthError(ValueError):
    """The signature is there but the payload is broken or too large."""


def _bits(image: Image.Image, channels: str) -> np.ndarray:
    """The lowest bits in reading order (down each column, column by column)."""
    if channels == "alpha":
        plane = np.asarray(image.getchannel("A"))
        return (plane.T & 1).reshape(-1)
    rgb = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
    return (rgb.transpose(1, 0, 2) & 1).reshape(-1)


def read_stealth(image: Image.Image) -> str | None:
    """The hidden text, None when the image carries none; `StealthError` when it is broken."""
    tried = []
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        tried.append("alpha")
    if image.mode in ("RGB", "RGBA"):
        tried.append("rgb")
    for channels in tried:
        source = image.convert("RGBA") if channels == "alpha" and image.mode != "RGBA" else image
        bits = _bits(source, channels)
        head = np.packbits(bits[: 8 * SIGNATURE_BYTES]).tobytes()
        if head not in SIGNATURES or SIGNATURES[head][0] != channels:
            continue
        compressed = SIGNATURES[head][1]
        start = 8 * SIGNATURE_BYTES
        length_bits = int.from_bytes(np.packbits(bits[start : start + 32]).tobytes(), "big")
        if length_bits <= 0 or length_bits // 8 > MAX_PAYLOAD_BYTES:
            raise StealthError(f"hidden payload of {length_bits:,} bits is out of bounds")
        payload_bits = bits[start + 32 : start + 32 + length_bits]
        if len(payload_bits) < length_bits:
            raise StealthError("hidden payload runs past the end of the image")
        payload = np.packbits(payload_bits).tobytes()
        if compressed:
            inflater = zlib.decompressobj(wbits=31)  # gzip
            try:
                payload = inflater.decompress(payload, MAX_PAYLOAD_BYTES)
            except zlib.error as e:
                raise StealthError(f"hidden payload is not valid gzip ({e})") from None
            if inflater.unconsumed_tail:
                raise StealthError(f"hidden text is over {MAX_PAYLOAD_BYTES:,} bytes")
        return payload.decode("utf-8", errors="replace")
    return None
