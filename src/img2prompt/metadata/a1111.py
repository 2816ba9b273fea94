"""The text AUTOMATIC1111 and the web UIs that copy it (Forge, reForge, SD.Next) write: the
prompt, a `Negative prompt:` line, then one settings line (`Steps: 20, Sampler: Euler a, ...`).

SD.Next writes an empty `Negative prompt:` and can put a `Template:` block (several lines)
between the negative prompt and the settings; its settings line names the app (`App: SD.Next`)
and a git hash as `Version`, and often no `Sampler`. Forge's `Version` starts with `f` and a
number (`f2.0.1v1.10.1-previous-...`). The hires fix and ADetailer add their own prompts as
settings (`Hires prompt`, `ADetailer prompt`, `ADetailer prompt 2nd`): they become passes.

Parsed with `str` methods and one anchored pattern: quoted values are JSON strings (as A1111
writes them), read with `json.loads`; nothing is evaluated.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from img2prompt.metadata.passes import Pass

SETTINGS_LINE = re.compile(r"(?m)^[ \t]*Steps:[ \t]*\d+")
SETTING = re.compile(r'\s*(\w[\w \-/]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
"""One `Key: value` of the settings line (A1111's own pattern); a quoted value may hold commas."""
ORDINAL = re.compile(r" (\d+(?:st|nd|rd|th))$")
"""ADetailer's second and later detectors: `ADetailer prompt 2nd`."""
SD_NEXT_KEYS = ("Pipeline", "Operations", "Backend")
GIT_HASH = re.compile(r"^[0-9a-f]{7,12}$")


@dataclass
class ParametersText:
    prompt: str | None
    negative: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    generator: str = "AUTOMATIC1111"
    passes: list[Pass] = field(default_factory=list)


def parse_parameters(text: str) -> ParametersText | None:
    """The prompt, negative prompt, settings and passes of an A1111-style text; None when the
    text has neither a `Negative prompt:` line nor a settings line (it is no such text)."""
    # The last settings line: a prompt may hold a line that starts with "Steps:".
    settings_match = next(reversed(list(SETTINGS_LINE.finditer(text))), None)
    head = text if settings_match is None else text[: settings_match.start()]
    marker = "Negative prompt:"
    at = head.find(marker) if head.startswith(marker) else head.find("\n" + marker)
    if settings_match is None and at == -1:
        return None
    prompt, negative = (head, "") if at == -1 else (head[:at], head[at:].split(":", 1)[1])
    negative, template_marker, template = negative.partition("\nTemplate:")
    settings = {}
    if settings_match is not None:
        settings = parse_settings(text[settings_match.start() :].split("\n", 1)[0])
    if template_marker and template.strip():
        settings["Template"] = template.strip()
    parsed = ParametersText(prompt.strip() or None, negative.strip() or None, settings)
    parsed.generator = front_end(settings)
    parsed.passes = passes(parsed)
    return parsed


def parse_settings(line: str) -> dict[str, Any]:
    """`Key: value, Key: "quoted, value"` -> {key: value}, each key once (the first kept)."""
    settings: dict[str, Any] = {}
    for key, value in SETTING.findall(line):
        value = value.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        settings.setdefault(key.strip(), value)
    return settings


def front_end(settings: dict[str, Any]) -> str:
    """Which web UI wrote the text, from its `App` and `Version` fields."""
    app, version = str(settings.get("App", "")), str(settings.get("Version", ""))
    if app:
        return "SD.Next" if app.replace(" ", "").lower() in ("sd.next", "sdnext") else app
    lowered = version.lower()
    if "reforge" in lowered:
        return "reForge"
    if re.match(r"f\d", version):
        return "Forge"
    if lowered.startswith("comfyui"):
        return "ComfyUI"
    if "fooocus" in lowered:
        return "Fooocus"
    if any(key in settings for key in SD_NEXT_KEYS) and (GIT_HASH.match(version) or not version):
        return "SD.Next"
    return "AUTOMATIC1111"


def passes(parsed: ParametersText) -> list[Pass]:
    """The base pass, then the hires fix and each ADetailer detector where the text has them;
    a pass without its own prompt uses the base prompt (as the web UI does)."""
    settings = parsed.settings
    base = {k: v for k, v in settings.items() if not k.startswith(("Hires ", "ADetailer "))}
    found = [Pass("base", parsed.prompt, parsed.negative, base)]
    hires = {k[len("Hires ") :]: v for k, v in settings.items() if k.startswith("Hires ")}
    if hires:
        found.append(_extra_pass("hires", hires, parsed, settings.get("Denoising strength")))
    detectors: dict[str, dict[str, Any]] = {}
    for key, value in settings.items():
        if key.startswith("ADetailer "):
            name = key[len("ADetailer ") :]
            ordinal = ORDINAL.search(name)
            suffix = ordinal.group(1) if ordinal else ""
            name = name[: ordinal.start()] if ordinal else name
            detectors.setdefault(suffix, {})[name] = value
    for detector in detectors.values():
        found.append(_extra_pass("detailer", detector, parsed, detector.get("denoising strength")))
    return found


def _extra_pass(role: str, values: dict[str, Any], parsed: ParametersText, denoise: Any) -> Pass:
    prompt = str(values.pop("prompt", "") or "").strip() or parsed.prompt
    negative = str(values.pop("negative prompt", "") or "").strip() or parsed.negative
    if denoise is not None:
        values.setdefault("denoise", denoise)
    return Pass(role, prompt, negative, values)
