"""The generation metadata that Stable Diffusion front ends embed in their files.

| front end | where | read by |
|---|---|---|
| AUTOMATIC1111, Forge, reForge, SD.Next | PNG `parameters` text | own (`a1111.py`) |
| the same, JPEG/WebP | EXIF UserComment | own extraction (below), then `a1111.py` |
| the same, "stealth" | the pixels' lowest bits | own (`stealth.py`), then `a1111.py` |
| ComfyUI | PNG `prompt`, `workflow`; WebP EXIF; GIF comment; video tags | own (`comfy*.py`) |
| InvokeAI (3 formats) | PNG `Dream`, `sd-metadata`, `invokeai_metadata` | sd-parsers |
| NovelAI | PNG `Description` + `Comment` (or stealth JSON) | sd-parsers |
| Fooocus | PNG `parameters` JSON (`fooocus_scheme`) | sd-parsers |
| SwarmUI | PNG `parameters` JSON (`sui_image_params`) | own (a JSON lookup) |
| Easy Diffusion | PNG text chunks, `prompt` in plain text | own (one chunk a setting) |
| Draw Things | XMP (PNG, JPEG, WebP): `exif:UserComment` JSON, `dc:description` | own |

The EXIF UserComment is read here rather than by sd-parsers: it caches the comment by `id()` of
the image in a module global (a later image reusing a freed image's id gets its text) and
ignores the comment's charset prefix (an ASCII comment comes out as UTF-16 garbage).

Everything in a file is untrusted text: it is parsed as JSON or split as text, never evaluated;
each text field is capped (`MAX_TEXT_CHARS`); a broken field is reported in `error`, never
raised. Only people's requests for a prompt read it (`metadata`, `describe`, `serve`, `data
prepare` of one's own generations); `predict`, `evaluate`, training and `index tune` read pixels
only, as the competition's task requires.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import logging
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from img2prompt.metadata.a1111 import parse_parameters
from img2prompt.metadata.comfy_workflow import workflow_to_graph
from img2prompt.metadata.comfyui import GraphReading, read_graph
from img2prompt.metadata.passes import Pass
from img2prompt.metadata.stealth import StealthError, read_stealth
from img2prompt.metadata.video import video_chunks

MAX_TEXT_CHARS = 50_000
"""A prompt, negative prompt or setting longer than this is cut (and the cut reported)."""
MAX_JSON_CHARS = 8_000_000
"""A JSON chunk (ComfyUI graph, InvokeAI, Fooocus) over this is not parsed."""
PIXEL_READ_MAX_PIXELS = 4096 * 4096
"""Text after the pixel data and stealth text need the pixels decoded: looked for in images up to
this size (SD outputs, upscaled ones included), and by at most `PIXEL_READS` threads at once, so
a server answering many uploads does not hold many decoded images for their metadata."""
PIXEL_READS = threading.BoundedSemaphore(2)
MAX_PASSES = 64
"""Passes listed at most."""
MAX_CANDIDATES = 20
"""Candidate texts listed at most."""
NOT_AN_IMAGE = "not an image Pillow can open"
"""How `error` begins for a file that is no image at all."""
USER_COMMENT = 0x9286
EXIF_IFD = 0x8769
SETTING_KEYS = {  # what each front end calls a setting -> the name in `settings`
    "sampler_name": "sampler", "sampler": "sampler", "scheduler": "scheduler",
    "schedule_type": "scheduler", "steps": "steps", "cfg": "cfg_scale", "cfg_scale": "cfg_scale",
    "cfg_conds": "cfg_scale",
    "scale": "cfg_scale", "guidance_scale": "cfg_scale", "seed": "seed", "noise_seed": "seed",
    "denoise": "denoise", "denoising_strength": "denoise", "strength": "denoise",
    "size": "size", "model": "model", "model_hash": "model_hash", "clip_skip": "clip_skip",
    "vae": "vae", "width": "width", "height": "height", "num_inference_steps": "steps",
}  # fmt: skip

logging.getLogger("sd_parsers").setLevel(logging.CRITICAL)  # its parse errors are ours to report


@dataclass
class GenerationMetadata:
    """What a file says about how it was made. `prompt` is None when it says nothing."""

    image: str
    prompt: str | None = None
    negative_prompt: str | None = None
    generator: str | None = None
    """AUTOMATIC1111, ComfyUI, InvokeAI, NovelAI, Fooocus or SwarmUI."""
    settings: dict[str, Any] = field(default_factory=dict)
    """model, model_hash, sampler, scheduler, steps, cfg_scale, seed, size (WxH), and what else
    the front end wrote."""
    error: str | None = None
    """Why metadata that is there could not be read (or was cut), else None."""
    passes: list[Pass] = field(default_factory=list)
    """Every sampling pass, in execution order: the base pass (whose texts are `prompt` and
    `negative_prompt`), then refiner, hires, detailer, inpaint and upscale passes. Empty when
    the file names no prompt or settings."""
    composed: bool = False
    """True where `prompt` joins several texts (Combine, Concat, area prompts), in order."""
    candidates: list[str] = field(default_factory=list)
    """Where `prompt` is None because the text is made at run time (wildcards, LLM or prompt
    reader nodes): the literal texts met on the way, for a person to judge. Never a prompt."""
    note: str | None = None
    """Why `prompt` is None though the file carries a graph, or how it was chosen."""

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "generator": self.generator,
            "settings": self.settings,
            "error": self.error,
            "passes": [p.to_json() for p in self.passes],
            "composed": self.composed,
            "candidates": self.candidates,
            "note": self.note,
        }


def read_metadata(source: str | Path | bytes, name: str | None = None) -> GenerationMetadata:
    """The generation metadata of an image file (a path, or the file's bytes). Never raises for
    a bad file: a file that is no image, or whose metadata is broken, says so in `error`."""
    label = name or (str(source) if not isinstance(source, bytes) else "upload")
    result = GenerationMetadata(label)
    try:
        opened = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except FileNotFoundError:
        result.error = "no such file"
        return result
    except Exception as e:  # any file a person keeps: reported, never raised
        if not _read_video(source, result):
            result.error = f"{NOT_AN_IMAGE} ({type(e).__name__})"
        return result
    try:
        with opened as image:
            _read(image, result)
    except Exception as e:  # a broken file or a parser's bug: one bad file, reported
        result.error = f"unreadable metadata: {type(e).__name__}: {str(e)[:200]}"
    _finish(result)
    _cap(result)
    return result


def _read_video(source: str | Path | bytes, result: GenerationMetadata) -> bool:
    """A video file (MP4, WebM) with a ComfyUI graph in its container metadata."""
    try:
        chunks = video_chunks(source, max_chars=MAX_JSON_CHARS)
        if not chunks:
            return False
        _comfyui(chunks, result)
    except Exception as e:  # a parser's bug on a hostile file: reported, never raised
        result.error = f"unreadable metadata: {type(e).__name__}: {str(e)[:200]}"
    _finish(result)
    _cap(result)
    return True


def _read(image: Image.Image, result: GenerationMetadata) -> None:
    chunks = _text_chunks(image)
    chunks.update({k: v for k, v in _graph_tags(image).items() if k not in chunks})
    comment = _user_comment(image)
    if comment and "parameters" not in chunks:
        chunks["parameters"] = comment
    xmp = _xmp(image)
    if xmp is not None and "Draw Things" in xmp:
        chunks[DRAW_THINGS] = xmp
    if not any(key in chunks for key in _KNOWN_KEYS) and _may_hide_stealth(image):
        try:
            with PIXEL_READS:
                hidden = read_stealth(image)
        except StealthError as e:
            result.error = f"stealth metadata: {e}"
            return
        if hidden:
            decoded = _json(hidden)
            if isinstance(decoded, dict) and "Comment" in decoded:  # NovelAI's stealth JSON
                chunks.update({k: str(v) for k, v in decoded.items()})
                chunks.setdefault("Source", "NovelAI")
            else:
                chunks["parameters"] = hidden
    for keys, parse in _PARSERS:  # the first reader that recognises the file answers
        if any(key in chunks for key in keys) and parse(chunks, result):
            return


def _text_chunks(image: Image.Image) -> dict[str, str]:
    """Text fields of the file: what Pillow put in `info`, plus PNG text chunks written after
    the pixel data (Pillow reads those only on `image.text`, which decodes the pixels)."""
    chunks = {k: v for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)}
    small = image.width * image.height <= PIXEL_READ_MAX_PIXELS
    if image.format == "PNG" and small and not any(key in chunks for key in _KNOWN_KEYS):
        with contextlib.suppress(Exception), PIXEL_READS:
            text = image.text  # type: ignore[attr-defined]
            chunks.update({k: v for k, v in text.items() if isinstance(v, str)})
    return chunks


GRAPH_TAGS = range(0x0110, 0x00FF, -1)
"""EXIF tags where ComfyUI's WebP savers put `key:json`: Model (0x0110) holds `prompt:{...}`,
Make (0x010F) `workflow:{...}`, and further extra keys count down from there."""
GRAPH_TAG = re.compile(r"^([A-Za-z_][\w ]{0,40}):\s*(?=[{\[])")


def _graph_tags(image: Image.Image) -> dict[str, str]:
    """ComfyUI's graphs in EXIF tags (WebP, animated too), and in a comment (GIF, JPEG) that
    holds `{"prompt": ..., "workflow": ...}` as VideoHelperSuite writes it."""
    found: dict[str, str] = {}
    comment = image.info.get("comment")
    if isinstance(comment, bytes) and comment.lstrip().startswith(b"{"):
        decoded = _json(comment.decode("utf-8", "replace"))
        if isinstance(decoded, dict):
            for key in ("prompt", "workflow"):
                value = decoded.get(key)
                if isinstance(value, dict):
                    found[key] = json.dumps(value)
                elif isinstance(value, str):
                    found[key] = value
    if "exif" not in image.info:
        return found  # for PNG, Pillow would decode the whole image looking for EXIF
    try:
        exif = image.getexif()
    except Exception:  # broken EXIF is no metadata
        return found
    for tag in GRAPH_TAGS:
        value = exif.get(tag)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        match = GRAPH_TAG.match(value) if isinstance(value, str) else None
        if match and match.group(1) not in found:
            found[match.group(1)] = value[match.end() :]
    return found


def _user_comment(image: Image.Image) -> str | None:
    """EXIF UserComment (JPEG, WebP, PNG eXIf): 8 bytes naming the charset, then the text."""
    if image.format == "PNG" and "exif" not in image.info:
        return None  # Pillow would decode the whole image looking for EXIF after the pixels
    try:
        exif = image.getexif()
        raw = exif.get_ifd(EXIF_IFD).get(USER_COMMENT)
    except Exception:  # broken EXIF is no metadata
        return None
    if isinstance(raw, str):
        return raw.strip("\0").strip() or None
    if not isinstance(raw, bytes) or len(raw) <= 8:
        return None
    prefix, body = raw[:8], raw[8:]
    if prefix.startswith(b"UNICODE"):
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            text = body.decode("utf-16", errors="replace")
        else:  # no byte-order mark: ASCII-range text has its zero bytes first in big-endian
            even_zeros, odd_zeros = body[0::2].count(0), body[1::2].count(0)
            if even_zeros == odd_zeros:  # no ASCII to tell: the EXIF block's own byte order
                big = getattr(exif, "endian", ">") != "<"
            else:
                big = even_zeros > odd_zeros
            text = body.decode("utf-16-be" if big else "utf-16-le", errors="replace")
    else:  # ASCII, JIS or undefined: UTF-8 is what front ends write there
        text = body.decode("utf-8", errors="replace")
    text = text.strip("\0").strip()
    return text or None


def _xmp(image: Image.Image) -> str | None:
    """The XMP packet (PNG iTXt, JPEG APP1, WebP chunk), as text, when it is not oversized."""
    raw = image.info.get("xmp")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    return raw if isinstance(raw, str) and len(raw) <= MAX_JSON_CHARS else None


def _may_hide_stealth(image: Image.Image) -> bool:
    return image.format in ("PNG", "WEBP") and image.width * image.height <= PIXEL_READ_MAX_PIXELS


def _json(text: str) -> Any:
    if len(text) > MAX_JSON_CHARS:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


# --- one reader per front end -------------------------------------------------------------------


def _from_sd_parsers(parser_class: type, parameters: dict[str, Any], result: GenerationMetadata):
    """Run one sd-parsers parser; its PromptInfo becomes prompt, negative and settings."""
    from sd_parsers.exceptions import ParserError

    try:
        info = parser_class().parse(parameters)
    except (ParserError, KeyError, TypeError, ValueError, AttributeError) as e:
        return str(e) or type(e).__name__
    result.generator = str(info.generator.value)
    prompts = [str(p) for p in info.prompts]
    negatives = [str(p) for p in info.negative_prompts]
    result.prompt = ", ".join(prompts) if prompts else None
    result.negative_prompt = ", ".join(negatives) if negatives else None
    settings: dict[str, Any] = {}
    for sampler in info.samplers[:1]:
        settings["sampler"] = sampler.name
        settings.update(sampler.parameters)
        if sampler.model is not None:
            settings["model"] = sampler.model.name
            settings["model_hash"] = sampler.model.hash
    for key, value in info.metadata.items():
        if isinstance(value, str | int | float | bool) and not str(key).startswith("full_"):
            settings.setdefault(str(key), value)
    full = info.metadata.get("full_prompt")
    if isinstance(full, list):  # Fooocus: the prompt after its style and expansion steps
        full = ", ".join(map(str, full))
    if isinstance(full, str) and full.strip() and full.strip() != result.prompt:
        settings["full_prompt"] = full.strip()
    result.settings = _settings(settings)
    return None


def _a1111(chunks: dict[str, str], result: GenerationMetadata) -> bool:
    """A1111-style text (also Fooocus's and SwarmUI's JSON in the same field). Any other text
    there (a camera's UserComment, a stray JSON object) is not taken for a prompt."""
    from sd_parsers.parsers import FooocusParser

    text = chunks["parameters"]
    decoded = _json(text) if text.lstrip().startswith("{") else None
    if isinstance(decoded, dict) and "sui_image_params" in decoded:
        _swarmui(decoded, result)
        return True
    if isinstance(decoded, dict):
        return _from_sd_parsers(FooocusParser, chunks, result) is None
    parsed = parse_parameters(text)  # without a negative prompt or settings line: no prompt
    if parsed is None:
        return False
    result.generator = parsed.generator
    result.prompt, result.negative_prompt = parsed.prompt, parsed.negative
    result.settings = _settings(parsed.settings)
    result.passes = parsed.passes
    return True


def _swarmui(decoded: dict[str, Any], result: GenerationMetadata) -> None:
    params = decoded.get("sui_image_params")
    if not isinstance(params, dict):
        result.error = "SwarmUI metadata without sui_image_params"
        return
    result.generator = "SwarmUI"
    prompt, negative = params.get("prompt"), params.get("negativeprompt")
    result.prompt = prompt.strip() if isinstance(prompt, str) and prompt.strip() else None
    result.negative_prompt = negative.strip() if isinstance(negative, str) else None
    other = {k: v for k, v in params.items() if k not in ("prompt", "negativeprompt")}
    result.settings = _settings({k: v for k, v in other.items() if not isinstance(v, dict | list)})


def _comfyui(chunks: dict[str, str], result: GenerationMetadata) -> bool:
    """ComfyUI's graphs; a `prompt` chunk of plain text is another front end's (Easy Diffusion).
    The executed graph (`prompt`) answers; the editor's (`workflow`) where it is missing or
    yields no pass."""
    if "workflow" not in chunks and not chunks["prompt"].lstrip().startswith("{"):
        return False
    result.generator = "ComfyUI"
    problems, chosen = [], None
    for key in ("prompt", "workflow"):
        if key not in chunks:
            continue
        decoded = _json(chunks[key])
        if not isinstance(decoded, dict):
            problems.append(f"the {key} chunk is not a JSON object")
            continue
        reading = read_graph(decoded if key == "prompt" else workflow_to_graph(decoded))
        if chosen is None or (_useful(reading) and not _useful(chosen)):
            chosen = reading
        if _useful(chosen):
            break
    if chosen is not None:
        result.prompt, result.negative_prompt = chosen.prompt, chosen.negative
        result.settings = _settings(chosen.settings)
        result.passes, result.composed = chosen.passes, chosen.composed
        result.candidates, result.note = chosen.candidates, chosen.note
    result.error = "; ".join(problems) or None
    return True


def _useful(reading: GraphReading) -> bool:
    return bool(reading.passes) or reading.prompt is not None


DRAW_THINGS = "Draw Things XMP"  # our key for its XMP packet among the text chunks


def _xmp_text(xmp: str, tag: str) -> str | None:
    """The text of XMP property `tag` (a plain value or an `rdf:Alt`'s first item), entities
    decoded. Found with `str.find`, not an XML parser or a lazy pattern: the packet is untrusted,
    so no entity expansion or DTD ever runs on it, and a packet of unclosed tags costs one pass
    (a `<tag>(.*?)</tag>` search rescans the rest from every opening tag)."""
    inner = _element(xmp, tag)
    if inner is None:
        return None
    item = _element(inner, "rdf:li")
    return html.unescape(item if item is not None else inner).strip() or None


def _element(text: str, tag: str) -> str | None:
    """What the first `<tag ...>` element holds, up to its first `</tag>`; None if not there."""
    start = text.find(f"<{tag}")
    while start != -1 and text[start + len(tag) + 1 : start + len(tag) + 2] not in (">", " ", "\n"):
        start = text.find(f"<{tag}", start + 1)  # `<rdf:li` must not match `<rdf:list`
    if start == -1:
        return None
    opened = text.find(">", start)
    closed = text.find(f"</{tag}>", opened)
    return None if opened == -1 or closed == -1 else text[opened + 1 : closed]


def _draw_things(chunks: dict[str, str], result: GenerationMetadata) -> bool:
    """Draw Things (iOS, macOS): XMP whose `exif:UserComment` is JSON (`c` the prompt, `uc` the
    negative prompt, then the settings); `dc:description` holds an A1111-style text, read when
    the JSON is missing."""
    xmp = chunks[DRAW_THINGS]
    comment = _xmp_text(xmp, "exif:UserComment") or ""
    decoded = _json(comment[comment.find("{") :]) if "{" in comment else None
    if isinstance(decoded, dict) and isinstance(decoded.get("c"), str):
        result.generator = "Draw Things"
        result.prompt = decoded["c"]
        negative = decoded.get("uc")
        result.negative_prompt = negative if isinstance(negative, str) else None
        result.settings = _settings({k: v for k, v in decoded.items() if k not in ("c", "uc")})
        return True
    description = _xmp_text(xmp, "dc:description")
    if description is None:
        return False
    if not _a1111({"parameters": description}, result):
        result.prompt = description  # no settings in it: the description is the prompt
    result.generator = "Draw Things"
    return True


EASY_DIFFUSION_KEYS = ("num_inference_steps", "guidance_scale", "use_stable_diffusion_model")


def _easy_diffusion(chunks: dict[str, str], result: GenerationMetadata) -> bool:
    """Easy Diffusion: one PNG text chunk a setting, `prompt` in plain text."""
    if not any(key in chunks for key in EASY_DIFFUSION_KEYS):
        return False  # a lone `prompt` text is too little to call it a front end's
    result.generator = "Easy Diffusion"
    result.prompt = chunks["prompt"].strip() or None
    result.negative_prompt = chunks.get("negative_prompt", "").strip() or None
    names = {"use_stable_diffusion_model": "model", "num_inference_steps": "steps"}
    settings = {
        names.get(key, key): value
        for key, value in chunks.items()
        if key not in ("prompt", "negative_prompt") and len(value) < 1000
    }
    result.settings = _settings(settings)
    return True


def _invokeai(chunks: dict[str, str], result: GenerationMetadata) -> bool:
    from sd_parsers.parsers import InvokeAIParser

    problem = _from_sd_parsers(InvokeAIParser, dict(chunks), result)
    if problem is not None:
        result.error = f"InvokeAI metadata: {problem}"
    return True


def _novelai(chunks: dict[str, str], result: GenerationMetadata) -> bool:
    """NovelAI: the prompt in `Description`, the settings as JSON in `Comment`. A `Comment`
    that is no JSON object is an ordinary comment (GIMP writes one), not NovelAI's."""
    from sd_parsers.parsers import NovelAIParser

    if not isinstance(_json(chunks["Comment"]), dict):
        return False
    chunks = {"Source": "", **chunks}
    problem = _from_sd_parsers(NovelAIParser, chunks, result)
    if problem is not None:
        result.generator = "NovelAI"
        result.prompt = chunks.get("Description", "").strip() or None
        if result.prompt is None:
            result.error = f"NovelAI metadata: {problem}"
    return True


_PARSERS = (
    ((DRAW_THINGS,), _draw_things),
    (("invokeai_metadata", "sd-metadata", "Dream"), _invokeai),
    (("prompt", "workflow"), _comfyui),
    (("parameters",), _a1111),
    (("Comment",), _novelai),
    (("prompt",), _easy_diffusion),
)
_KNOWN_KEYS = {key for keys, _ in _PARSERS for key in keys}


def _settings(raw: dict[str, Any]) -> dict[str, Any]:
    """Front ends' names for the common settings made one (`SETTING_KEYS`), numbers as numbers;
    other keys kept as they are (lower case, spaces as underscores)."""
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None or value == "":
            continue
        name = str(key).strip().lower().replace(" ", "_")
        name = SETTING_KEYS.get(name, name)
        if name in ("steps", "seed", "clip_skip", "width", "height"):
            value = _number(value, int)
        elif name in ("cfg_scale", "denoise"):
            value = _number(value, float)
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)  # NaN and infinity are not JSON
        settings.setdefault(_printable(name), value)
    width, height = settings.get("width"), settings.get("height")
    if "size" not in settings and isinstance(width, int) and isinstance(height, int):
        settings["size"] = f"{width}x{height}"
    return settings


_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]{0,4096}(?:\x07|\x1b\\)?|[@-_])")
"""Terminal escape sequences whole (CSI `ESC[31m`, OSC `ESC]0;title BEL`, two-byte ones), so
none leaves `[31m` debris once its ESC is gone."""
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Control characters but tab and newline (a terminal would obey them), and the bidirectional
overrides that make a terminal show text in another order than it is."""


def _printable(text: str) -> str:
    return _CONTROL.sub("", _ESCAPES.sub("", text))


def _number(value: Any, kind: type) -> Any:
    """`value` as an int or float where it is one; as it was otherwise. Whole numbers are read
    exactly (a 64-bit seed through a float would lose its last digits)."""
    try:
        if kind is int:
            text = str(value).strip()
            return int(text) if text.lstrip("+-").isdigit() else int(float(text))
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        return value


def _finish(result: GenerationMetadata) -> None:
    """Every pass's settings named as the top level's; a front end that states one pass gets it
    listed as the base pass, so `passes` has the same shape whatever wrote the file."""
    for step in result.passes:
        step.settings = _settings(step.settings)
    if not result.passes and result.prompt is not None:
        result.passes = [Pass("base", result.prompt, result.negative_prompt, dict(result.settings))]
    del result.passes[MAX_PASSES:]
    del result.candidates[MAX_CANDIDATES:]


def _clean(value: Any, name: str, cut: list[str], *, strip: bool = True) -> Any:
    """A text without control characters (and outer spaces), cut at `MAX_TEXT_CHARS` (the cut
    noted in `cut`)."""
    if not isinstance(value, str):
        return value
    value = _printable(value).strip() if strip else _printable(value)
    if len(value) > MAX_TEXT_CHARS:
        cut.append(name)
        return value[:MAX_TEXT_CHARS]
    return value


def _cap(result: GenerationMetadata) -> None:
    """Metadata is untrusted input: control characters go (a terminal would obey them), every
    text over `MAX_TEXT_CHARS` is cut (and the cut said), and an empty prompt is no prompt."""
    cut: list[str] = []
    for name in ("prompt", "negative_prompt", "generator", "note"):
        value = _clean(getattr(result, name), name, cut)
        setattr(result, name, value or None)
    for key, value in list(result.settings.items()):
        result.settings[key] = _clean(value, key, cut, strip=False)
    cleaned = (_clean(c, "candidates", cut) for c in result.candidates)
    result.candidates = [c for c in cleaned if isinstance(c, str) and c]
    for step in result.passes:
        step.positive = _clean(step.positive, "passes", cut) or None
        step.negative = _clean(step.negative, "passes", cut) or None
        for key, value in list(step.settings.items()):
            step.settings[key] = _clean(value, "passes", cut, strip=False)
    if cut:
        note = f"cut at {MAX_TEXT_CHARS:,} characters: {', '.join(dict.fromkeys(cut))}"
        result.error = f"{result.error}; {note}" if result.error else note
