"""The prompt of a ComfyUI image: the texts that reached its base pass, and every pass listed.

ComfyUI's `prompt` metadata is the executed graph: `{node_id: {"class_type": ..., "inputs":
{...}}}`, an input being a value or a link `[source_node_id, output_slot]` (group nodes appear
expanded, with ids like `"12:3"`). The editor's `workflow` graph is turned into the same shape by
`comfy_workflow.workflow_to_graph` and read when `prompt` is missing or broken.

**The rule**: samplers are put in execution order (a sampler that feeds another comes first;
branches in input order from the saved output); the base pass is the first that starts from
noise (an empty latent, full denoise, `add_noise` with start step 0), else the first pass.
`prompt`/`negative_prompt` are the base pass's texts; every pass is listed with its role.

**Never made up**: text is taken only from a text encoder's literal input, or from a chain of
string nodes whose every input is literal (primitives, concatenations). Where a text is made at
run time (wildcards, random choice, LLMs, prompt readers, files), the prompt is None, `note`
names the node and `candidates` holds the literal texts seen on the way (no file names).

Every walk is iterative and bounded (`MAX_VISITS`): a hostile graph with cycles or millions of
nodes costs linear time and never recurses deeply.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from img2prompt.metadata.passes import Pass

Graph = dict[str, dict[str, Any]]

MAX_VISITS = 2000
"""Nodes visited at most by one walk through a graph (a hostile graph may hold millions)."""
MAX_ORDERED = 50_000
"""Nodes put in execution order at most."""
MAX_PASSES = 64
"""Samplers read at most (each costs a few walks)."""
MAX_STRING_DEPTH = 48
"""String nodes followed at most in one chain (concatenations of concatenations)."""

TEXT_KEYS = ("text", "text_g", "text_l", "prompt", "positive_prompt", "string", "value")
"""Inputs that hold prompt text on text encoders not listed in `ENCODERS` (the first found)."""
ENCODERS: dict[str, tuple[str, ...]] = {
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeSDXL": ("text_g", "text_l"),
    "CLIPTextEncodeSDXLRefiner": ("text",),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl"),
    "CLIPTextEncodeSD3": ("clip_l", "clip_g", "t5xxl"),
    "CLIPTextEncodeHiDream": ("clip_l", "clip_g", "t5xxl", "llama"),
    "CLIPTextEncodeHunyuanDiT": ("bert", "mt5xl"),
    "CLIPTextEncodeLumina2": ("user_prompt",),
    "CLIPTextEncodePixArtAlpha": ("text",),
    "TextEncodeHunyuanVideo_ImageToVideo": ("prompt",),
    "TextEncodeQwenImageEdit": ("prompt",),
    "TextEncodeQwenImageEditPlus": ("prompt",),
    "BNK_CLIPTextEncodeAdvanced": ("text",),
    "smZ CLIPTextEncode": ("text",),
    "WanVideoTextEncode": ("positive_prompt",),
    "ImpactWildcardEncode": ("populated_text",),  # the expanded text, stored (see POPULATED)
    "Power Prompt - Simple (rgthree)": ("prompt",),
}
"""Text encoders -> their text inputs, in the order their texts are joined."""
ZERO_OUT = {"ConditioningZeroOut"}
"""Conditioning made empty: no text (a negative of `ConditioningZeroOut(positive)` is empty)."""
GUIDERS: dict[str, tuple[str, str | None]] = {
    "CFGGuider": ("positive", "negative"),
    "BasicGuider": ("conditioning", None),
    "DualCFGGuider": ("cond1", "negative"),
    "PerpNegGuider": ("positive", "negative"),
}
"""Guiders of SamplerCustomAdvanced -> (positive input, negative input)."""
PIPE_FIELDS = ("model", "clip", "vae", "positive", "negative")
SDXL_TUPLE = ("model", "clip", "positive", "negative")
PIPE_UNPACK: dict[str, tuple[str, tuple[str, ...]]] = {
    "FromBasicPipe": ("basic_pipe", PIPE_FIELDS),
    "FromBasicPipe_v2": ("basic_pipe", ("pipe", *PIPE_FIELDS)),
    "FromDetailerPipe": ("detailer_pipe", PIPE_FIELDS),
    "FromDetailerPipe_v2": ("detailer_pipe", ("pipe", *PIPE_FIELDS)),
    "FromDetailerPipeSDXL": ("detailer_pipe", ("pipe", *PIPE_FIELDS)),
    "Unpack SDXL Tuple": ("sdxl_tuple", SDXL_TUPLE),
    "easy pipeOut": ("pipe", ("pipe", "model", "positive", "negative")),
}
"""Pipe unpackers (Impact Pack, Efficiency, Easy-Use) -> (pipe input, the field each output slot
carries; `pipe` for the pipe handed on)."""
PIPE_INPUTS = (
    "basic_pipe",
    "detailer_pipe",
    "pipe",
    "refiner_basic_pipe_opt",
    "sdxl_tuple",
    "base_ctx",
    "ctx_01",
    "ctx_02",
    "ctx_03",
    "ctx_04",
    "ctx_05",
)
"""Inputs that carry a pipe: followed to find a field that a pipe node does not set itself
(rgthree's contexts: a Context's own input, else its `base_ctx`; a switch's first context)."""
CONTEXTS: dict[str, dict[int, str]] = {
    "Context (rgthree)": {4: "positive", 5: "negative"},
    "Context Big (rgthree)": {4: "positive", 5: "negative"},
    "Context Switch (rgthree)": {4: "positive", 5: "negative"},
    "Context Switch Big (rgthree)": {4: "positive", 5: "negative"},
}
"""rgthree's context nodes -> the output slots of the positive and negative they carry (slot 0 is
the context, then model, clip, vae, positive, negative, latent...)."""
PIPE_ALIASES = {
    "positive": ("positive", "base_positive"),
    "negative": ("negative", "base_negative"),
}
"""The inputs that set a pipe field (Pack SDXL Tuple names them `base_...`)."""
TEXT_LOADERS: dict[str, dict[int, str]] = {
    "Efficient Loader": {1: "positive", 2: "negative"},
    "Eff. Loader SDXL": {},
    "easy fullLoader": {4: "positive", 5: "negative"},
    "easy a1111Loader": {},
    "easy comfyLoader": {},
    "easy fluxLoader": {},
    "easy kolorsLoader": {},
    "easy hunyuanDiTLoader": {},
    "easy pixArtLoader": {},
    "ttN pipeLoader": {},
    "ttN pipeLoader_v2": {},
    "ttN pipeLoaderSDXL": {},
    "ttN pipeLoaderSDXL_v2": {},
    "WanVideoTextEncode": {},
    "WanVideoTextEncodeCached": {},
    "WanVideoTextEncodeSingle": {},
}
"""Loaders that encode their own `positive` and `negative` text inputs -> the output slots of
that conditioning (a pipe's field reaches them through the pipe: `PIPE_TEXT_SLOTS`)."""
LOADER_INPUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "WanVideoTextEncode": {
        "positive": ("positive_prompt", "prompt"),
        "negative": ("negative_prompt",),
    },
    "WanVideoTextEncodeCached": {
        "positive": ("positive_prompt",),
        "negative": ("negative_prompt",),
    },
    "WanVideoTextEncodeSingle": {"positive": ("prompt",), "negative": ()},
}
"""Text loaders whose text inputs have other names than `positive` and `negative` (WanVideoWrapper
encoders: their one output carries both texts to WanVideoSampler's `text_embeds`)."""
PIPE_TEXT_SLOTS = {"positive": -1, "negative": -2, "model": -3}
"""Slots that stand for a loader's own field when it is reached through the pipe it packs."""
PASS_THROUGH: dict[str, dict[int, str]] = {
    "KSampler (Efficient)": {1: "positive", 2: "negative"},
    "KSampler Adv. (Efficient)": {1: "positive", 2: "negative"},
    "ApplyInstantID": {1: "positive", 2: "negative"},
    "ApplyInstantIDAdvanced": {1: "positive", 2: "negative"},
    "CR Apply Multi-ControlNet": {0: "base_positive", 1: "base_negative"},
}
"""Nodes that hand on a positive and a negative at other slots or under other input names than
ControlNetApplyAdvanced's (`positive` -> 0, `negative` -> 1): output slot -> the input it
carries (the Efficiency KSamplers and InstantID: model, positive, negative...)."""
TEXT_FILTERS: dict[str, tuple[int, str, re.Pattern[str]]] = {
    "LoraTagLoader": (2, "text", re.compile(r"<[0-9a-zA-Z:_\-.\s/()\\]+>")),
}
"""Nodes that hand on a text input with a pattern taken out -> (output slot, input, pattern):
LoraTagLoader loads the `<lora:...>` tags and outputs the rest."""


@dataclass(frozen=True)
class Shape:
    """How a sampler node gets its conditioning: its own `positive`/`negative`, a `guider`, or a
    pipe input; `role` where the node type says it (detailers, tiled upscalers)."""

    via: str = "direct"
    pipe: str | None = None
    role: str | None = None


SAMPLERS: dict[str, Shape] = {
    "KSampler": Shape(),
    "KSamplerAdvanced": Shape(),
    "SamplerCustom": Shape(),
    "SamplerCustomAdvanced": Shape(via="guider"),
    "KSampler (Efficient)": Shape(),
    "KSampler Adv. (Efficient)": Shape(),
    "KSampler SDXL (Eff.)": Shape(via="pipe", pipe="sdxl_tuple"),
    "easy fullkSampler": Shape(via="pipe", pipe="pipe"),
    "easy kSampler": Shape(via="pipe", pipe="pipe"),
    "easy kSamplerTiled": Shape(via="pipe", pipe="pipe"),
    "easy kSamplerCustom": Shape(via="pipe", pipe="pipe"),
    "easy kSamplerInpainting": Shape(via="pipe", pipe="pipe"),
    "easy kSamplerDownscaleUnet": Shape(via="pipe", pipe="pipe"),
    "easy kSamplerLayerDiffusion": Shape(via="pipe", pipe="pipe"),
    "easy kSamplerSDTurbo": Shape(via="pipe", pipe="pipe"),
    "easy fullCascadeKSampler": Shape(via="pipe", pipe="pipe"),
    "easy cascadeKSampler": Shape(via="pipe", pipe="pipe"),
    "ttN pipeKSampler": Shape(via="pipe", pipe="pipe"),
    "ttN pipeKSampler_v2": Shape(via="pipe", pipe="pipe"),
    "ttN pipeKSamplerAdvanced": Shape(via="pipe", pipe="pipe"),
    "ttN pipeKSamplerAdvanced_v2": Shape(via="pipe", pipe="pipe"),
    "ttN pipeKSamplerSDXL": Shape(via="pipe", pipe="sdxl_pipe"),
    "ttN pipeKSamplerSDXL_v2": Shape(via="pipe", pipe="sdxl_pipe"),
    "ImpactKSamplerBasicPipe": Shape(via="pipe", pipe="basic_pipe"),
    "ImpactKSamplerAdvancedBasicPipe": Shape(via="pipe", pipe="basic_pipe"),
    "FaceDetailer": Shape(role="detailer"),
    "FaceDetailerPipe": Shape(via="pipe", pipe="detailer_pipe", role="detailer"),
    "DetailerForEach": Shape(role="detailer"),
    "DetailerForEachDebug": Shape(role="detailer"),
    "DetailerForEachPipe": Shape(via="pipe", pipe="basic_pipe", role="detailer"),
    "DetailerForEachDebugPipe": Shape(via="pipe", pipe="basic_pipe", role="detailer"),
    "DetailerForEachPipeForAnimateDiff": Shape(via="pipe", pipe="basic_pipe", role="detailer"),
    "MaskDetailerPipe": Shape(via="pipe", pipe="basic_pipe", role="detailer"),
    "WanVideoSampler": Shape(via="pipe", pipe="text_embeds"),
    "UltimateSDUpscale": Shape(role="upscale"),
    "UltimateSDUpscaleNoUpscale": Shape(role="upscale"),
    "UltimateSDUpscaleCustomSample": Shape(role="upscale"),
    "RegionalSampler": Shape(via="pipe", pipe="base_sampler"),
    "RegionalSamplerAdvanced": Shape(via="pipe", pipe="base_sampler"),
    "TwoSamplersForMask": Shape(via="pipe", pipe="base_sampler"),
    "TwoAdvancedSamplersForMask": Shape(via="pipe", pipe="base_sampler"),
}
"""Sampler node types -> how their conditioning is found (Impact's regional and masked samplers
through their `base_sampler`, a KSampler(Advanced)Provider over a basic pipe). Other nodes with a
linked `positive` (or `guider`) and a seed, steps or cfg are taken for samplers too (`Shape()`).
A sampler with no linked input at all never ran (a stray node in a saved graph): it is none."""

STRING_NODES: dict[str, tuple[str, ...]] = {
    "PrimitiveNode": ("value",),
    "PrimitiveString": ("value",),
    "PrimitiveStringMultiline": ("value",),
    "String": ("value", "string"),
    "String Literal": ("string",),
    "Text Multiline": ("text",),
    "Text box": ("Text", "text"),
    "CR Text": ("text",),
    "CR Prompt Text": ("prompt",),
    "ttN text": ("text",),
    "Reroute": ("input", "value", ""),
    "ShowText|pysssss": ("text",),
    "easy showAnything": ("anything",),
    "PromptText": ("text",),
    "TextInput_": ("text",),
    "Power Prompt - Simple (rgthree)": ("prompt",),
}
"""Nodes that hand on a literal text -> the input holding it."""
POPULATED: dict[str, str] = {"ImpactWildcardProcessor": "populated_text"}
"""Wildcard nodes that store the text they expanded in the saved graph (Impact Pack fills
`populated_text` before the graph runs, and the node outputs exactly it) -> that input. Empty,
the text was never stored: then it is made at run time."""
JOINERS: dict[str, tuple[tuple[str, ...], str | None, str]] = {
    "StringConcatenate": (("string_a", "string_b"), "delimiter", ""),
    "Text Concatenate": (("text_a", "text_b", "text_c", "text_d"), "delimiter", ", "),
    "CR Text Concatenate": (("text1", "text2"), "separator", ""),
    "JoinStrings": (("string1", "string2"), "delimiter", " "),
    "easy stylesSelector": ((), None, ""),
}
"""String concatenation nodes -> (text inputs in order, delimiter input, default delimiter),
built as the node builds it. A missing optional text is left out."""
STRING_FUNCTIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "StringFunction|pysssss": ("action", "tidy_tags", ("text_a", "text_b", "text_c")),
}
"""pysssss' String Function -> (action input, tidy input, text inputs): `append` joins the
non-empty texts (with ", " when tidy), `replace` replaces text_b by text_c in text_a (a `/regex/`
is left to run time), tidy then mends doubled spaces and commas, as the node does."""
STYLERS: dict[str, tuple[str, str, str]] = {
    "SDXLPromptStyler": ("text_positive", "style", "text_negative"),
}
"""Stylers -> (text input, style input, negative text input); output slot 0 is the styled
text, slot 1 the styled negative. Only styles whose template is known are built."""
KNOWN_STYLES = {"base": ("{prompt}", ""), "none": ("{prompt}", ""), "None": ("{prompt}", "")}
"""Style -> (template, the template's negative), as the styler's JSON files hold them."""
SHOWN_TEXT: dict[str, dict[int, int]] = {"SDPromptReader": {2: 3, 3: 4}}
"""Run-time nodes whose editor widgets show the text they produced last -> output slot: widget
index. Such a text is a candidate, never the prompt (the file it came from is not stored)."""

NOT_CONDITIONING = {
    "clip", "model", "vae", "image", "images", "pixels", "mask", "control_net", "style_model",
    "clip_vision", "clip_vision_output", "samples", "latent", "latent_image", "upscale_model",
    "noise", "sigmas", "sampler", "stage_c", "start_image", "init_image", "guider",
}  # fmt: skip
"""Inputs never followed when tracing conditioning back to its text: they carry other things."""
LATENT_INPUTS = ("samples", "latent", "latent_image", "samples_to", "pixels", "image", "images")
"""Inputs followed when tracing a sampler's latent back to where it started."""
INPAINT_NODES = {"VAEEncodeForInpaint", "SetLatentNoiseMask", "InpaintModelConditioning"}
SEED_KEYS = ("seed", "noise_seed")
MODEL_KEYS = ("ckpt_name", "unet_name", "model_name", "base_ckpt_name")
LINKED_SETTINGS = ("noise", "sampler", "sigmas", "guider")
"""SamplerCustom(Advanced) inputs whose nodes hold settings (seed, sampler, steps, cfg)."""
SKIPPED_SETTINGS = {"positive", "negative", "model", "latent_image", "image", "vae", "clip"}
FILE_NAME = re.compile(
    r"(?i)^[^\n]{0,300}\.(png|jpe?g|webp|gif|bmp|tiff?|avif|heic|txt|json|csv|yaml|yml|"
    r"safetensors|ckpt|pt|pth|bin|gguf|mp4|webm|mov|mkv|wav|mp3)$"
)
NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and isinstance(value[1], int)
    )


def _inputs(graph: Graph, node_id: Any) -> dict[str, Any]:
    node = graph.get(str(node_id))
    inputs = node.get("inputs") if isinstance(node, dict) else None
    return inputs if isinstance(inputs, dict) else {}


def _class(graph: Graph, node_id: Any) -> str:
    node = graph.get(str(node_id))
    return str(node.get("class_type", "")) if isinstance(node, dict) else ""


def _sort_key(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if str(node_id).isdigit() else (1 << 62, str(node_id))


def _label(graph: Graph, node_id: str) -> str:
    return f"{_class(graph, node_id) or 'an unknown node'} (node {node_id})"


def is_candidate(text: Any) -> bool:
    """A literal text worth showing as a possible part of a prompt: words, not a file name,
    a number, or an option of a list."""
    if not isinstance(text, str):
        return False
    text = text.strip()
    if len(text) < 3 or NUMBER.match(text) or FILE_NAME.match(text) or "\\" in text:
        return False
    return " " in text or "," in text


# --- texts --------------------------------------------------------------------------------------


@dataclass
class Texts:
    """Texts that reach one conditioning input: literal `parts` in order; `runtime` names the
    nodes that make text at run time (then there is no prompt); `candidates` their literal
    texts."""

    parts: list[str] = field(default_factory=list)
    runtime: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        text = text.strip()
        if text and text not in self.parts:
            self.parts.append(text)

    def add_candidate(self, text: Any) -> None:
        if is_candidate(text) and text.strip() not in self.candidates:
            self.candidates.append(text.strip())

    @property
    def text(self) -> str | None:
        return None if self.runtime else (", ".join(self.parts) or None)

    @property
    def composed(self) -> bool:
        return len(self.parts) > 1


def string_value(graph: Graph, value: Any, texts: Texts, depth: int = 0) -> str | None:
    """The text an input holds: a literal, or what a chain of string nodes with literal inputs
    builds. None (and the node named in `texts.runtime`) where it is made at run time."""
    if isinstance(value, str):
        return value
    if not _is_link(value):
        return None if value is None else str(value)
    node, kind, inputs = str(value[0]), _class(graph, value[0]), _inputs(graph, value[0])
    if depth >= MAX_STRING_DEPTH or node not in graph:
        texts.runtime.append(_label(graph, node))
        return None
    if kind in STRING_NODES:
        key = next((k for k in STRING_NODES[kind] if k in inputs), None)
        if key is not None:
            return string_value(graph, inputs[key], texts, depth + 1)
    if kind in JOINERS:
        return _joined(graph, node, texts, depth)
    if kind in STYLERS:
        return _styled(graph, value, texts, depth)
    if kind in STRING_FUNCTIONS:
        return _string_function(graph, node, texts, depth)
    if kind in POPULATED and str(inputs.get(POPULATED[kind]) or "").strip():
        return string_value(graph, inputs[POPULATED[kind]], texts, depth + 1)
    if kind in TEXT_FILTERS and value[1] == TEXT_FILTERS[kind][0]:
        _, key, pattern = TEXT_FILTERS[kind]
        text = string_value(graph, inputs.get(key), texts, depth + 1)
        return None if text is None else pattern.sub("", text)
    _runtime(graph, node, value[1], texts)
    return None


def _joined(graph: Graph, node: str, texts: Texts, depth: int) -> str | None:
    keys, delimiter_key, default = JOINERS[_class(graph, node)]
    inputs = _inputs(graph, node)
    delimiter = string_value(graph, inputs.get(delimiter_key), texts, depth + 1)
    parts = []
    for key in keys:
        if key in inputs:
            part = string_value(graph, inputs[key], texts, depth + 1)
            if part is None:
                return None
            parts.append(part)
    if not keys:
        _runtime(graph, node, 0, texts)
        return None
    return (default if delimiter is None else delimiter).join(parts)


def _string_function(graph: Graph, node: str, texts: Texts, depth: int) -> str | None:
    """What a String Function node outputs, where its action and every text are literal."""
    action_key, tidy_key, keys = STRING_FUNCTIONS[_class(graph, node)]
    inputs = _inputs(graph, node)
    action, tidy = inputs.get(action_key), inputs.get(tidy_key) == "yes"
    parts = []
    for key in keys:
        part = string_value(graph, inputs.get(key, ""), texts, depth + 1)
        if part is None:
            return None
        parts.append("" if part == "undefined" else part)
    a, b, c = parts
    if action == "append":
        out = (", " if tidy else "").join(p for p in parts if p)
    elif action == "replace" and not (b.startswith("/") and b.endswith("/")):
        out = a.replace(b, c)
    else:
        _runtime(graph, node, 0, texts)
        return None
    if tidy:
        out = out.replace("  ", " ").replace(" ,", ",").replace(",,", ",").replace(",,", ",")
    return out


def _styled(graph: Graph, link: list, texts: Texts, depth: int) -> str | None:
    """A styler's output: slot 0 the template around the text, slot 1 the template's negative
    joined to the negative text, as the node joins them."""
    node = str(link[0])
    text_key, style_key, negative_key = STYLERS[_class(graph, node)]
    inputs = _inputs(graph, node)
    text = string_value(
        graph, inputs.get(negative_key if link[1] == 1 else text_key), texts, depth + 1
    )
    template = KNOWN_STYLES.get(str(inputs.get(style_key)))
    if text is not None and template is not None:
        if link[1] != 1:
            return template[0].replace("{prompt}", text)
        return ", ".join(t for t in (template[1], text) if t) if text or template[1] else ""
    if text is not None:
        texts.add_candidate(text)
        texts.runtime.append(f"{_label(graph, node)} with style {inputs.get(style_key)!r}")
    return None


def _runtime(graph: Graph, node: str, slot: int, texts: Texts) -> None:
    """A node whose text exists only at run time: named, its literal texts kept as candidates."""
    kind, inputs = _class(graph, node), _inputs(graph, node)
    texts.runtime.append(_label(graph, node))
    shown = inputs.get("_widgets")
    index = SHOWN_TEXT.get(kind, {}).get(slot)
    if index is not None and isinstance(shown, tuple | list) and index < len(shown):
        texts.add_candidate(shown[index])
        return
    for key, value in inputs.items():
        if key != "_widgets" and isinstance(value, str):
            texts.add_candidate(value)


def _encoder_keys(graph: Graph, node: str) -> tuple[str, ...] | None:
    kind, inputs = _class(graph, node), _inputs(graph, node)
    if kind in ENCODERS:
        return ENCODERS[kind]
    if "clip" in inputs or "encode" in kind.lower():
        keys = [k for k in TEXT_KEYS if k in inputs]
        return tuple(keys[:1]) if keys else None
    return None


def conditioning(graph: Graph, start: Any) -> Texts:
    """The texts that flow into a conditioning input, in input order, each once: through
    Combine/Concat/SetArea, ControlNet, guidance and other conditioning nodes, and pipes, back
    to the text encoders. A node with `positive` and `negative` inputs (ControlNetApplyAdvanced,
    InpaintModelConditioning...) passes on the one its output slot carries: slot 1 the
    negative, others the positive. ConditioningZeroOut gives no text."""
    texts = Texts()
    seen: set[tuple[str, int]] = set()
    stack = [start]
    while stack and len(seen) < MAX_VISITS:
        link = stack.pop()
        if not _is_link(link) or (str(link[0]), link[1]) in seen:
            continue
        node, slot = str(link[0]), link[1]
        seen.add((node, slot))
        kind, inputs = _class(graph, node), _inputs(graph, node)
        if node not in graph or kind in ZERO_OUT:
            continue
        if kind in TEXT_LOADERS and _loader_text(graph, node, slot, texts):
            continue
        keys = _encoder_keys(graph, node)
        if keys is not None:
            for key in keys:
                if key in inputs:
                    text = string_value(graph, inputs[key], texts)
                    if text is not None:
                        texts.add(text)
            continue
        if kind in CONTEXTS:
            if slot in CONTEXTS[kind]:
                stack.append(pipe_field(graph, [node, 0], CONTEXTS[kind][slot]))
            continue
        if kind in PIPE_UNPACK:
            pipe, fields = PIPE_UNPACK[kind]
            name = fields[slot] if 0 <= slot < len(fields) else None
            if name in ("positive", "negative"):
                stack.append(pipe_field(graph, inputs.get(pipe), name))
            continue
        if kind in PASS_THROUGH or ("positive" in inputs and "negative" in inputs):
            slots = PASS_THROUGH.get(kind, {1: "negative"})
            stack.append(inputs.get(slots.get(slot, "positive")))
            continue
        followed = [v for k, v in inputs.items() if k not in NOT_CONDITIONING]
        stack.extend(reversed(followed))  # depth first, in input order
    return texts


def _loader_text(graph: Graph, node: str, slot: int, texts: Texts) -> bool:
    """The text a loader encodes itself (Efficient Loader, Easy-Use, ttN, WanVideoWrapper): its
    `positive` or `negative` input, by the output slot (or pipe field) asked for. False where
    that slot carries no text of the loader's own."""
    kind, inputs = _class(graph, node), _inputs(graph, node)
    slots = {**TEXT_LOADERS[kind], **{v: k for k, v in PIPE_TEXT_SLOTS.items()}}
    name = slots.get(slot)
    if name not in ("positive", "negative"):
        return False
    keys = LOADER_INPUTS.get(kind, {}).get(name, (name,))
    key = next((k for k in keys if k in inputs), None)
    text = string_value(graph, inputs[key], texts) if key is not None else None
    if text is not None:
        texts.add(text)
    return True


def pipe_field(graph: Graph, start: Any, name: str) -> Any:
    """The link a pipe carries as `name` (model, positive, negative...): the nearest pipe node
    that sets it (ToBasicPipe, EditBasicPipe, ToDetailerPipe, Pack SDXL Tuple, a component or
    group node that packs one), found walking back through the pipe inputs; a loader that
    encodes its own text answers with a `PIPE_TEXT_SLOTS` slot."""
    queue, seen = deque([start]), set()
    while queue and len(seen) < MAX_VISITS:
        link = queue.popleft()
        if not _is_link(link) or str(link[0]) in seen:
            continue
        node = str(link[0])
        seen.add(node)
        kind, inputs = _class(graph, node), _inputs(graph, node)
        if kind in PIPE_UNPACK:  # a pipe handed on (a _v2's pipe slot)
            fields = PIPE_UNPACK[kind][1]
            if 0 <= link[1] < len(fields) and fields[link[1]] == "pipe":
                queue.append(inputs.get(PIPE_UNPACK[kind][0]))
                continue
        if kind in TEXT_LOADERS and name in PIPE_TEXT_SLOTS:  # its `positive` is a text
            return [node, PIPE_TEXT_SLOTS[name]]
        key = next((k for k in PIPE_ALIASES.get(name, (name,)) if _is_link(inputs.get(k))), None)
        if key is not None:
            return inputs[key]
        queue.extend(inputs[k] for k in PIPE_INPUTS if k in inputs)
        queue.extend(v for k, v in inputs.items() if "pipe" in k.lower() and k not in PIPE_INPUTS)
    return None


# --- samplers, their order and their passes -----------------------------------------------------


def sampler_shape(graph: Graph, node: str) -> Shape | None:
    """How `node` samples, None when it is no sampler."""
    kind, inputs = _class(graph, node), _inputs(graph, node)
    if kind in SAMPLERS:
        return SAMPLERS[kind] if any(_is_link(v) for v in inputs.values()) else None
    if _is_link(inputs.get("guider")) and any(k in inputs for k in ("noise", "sigmas")):
        return Shape(via="guider")
    latent = any(_is_link(inputs.get(k)) for k in ("latent_image", "latent", "samples"))
    settings = any(k in inputs for k in ("steps", "cfg", *SEED_KEYS, "sigmas"))
    if _is_link(inputs.get("positive")) and latent and settings:
        return Shape()  # not a saver node with a `positive` text and a seed
    return None


def execution_order(graph: Graph) -> list[str]:
    """The nodes in an order ComfyUI can run them: each node after the nodes it reads from;
    outputs taken SaveImage-like first, then by id; each output's inputs in input order.
    Iterative (no recursion), each node once."""
    consumed = {str(v[0]) for n in graph for v in _inputs(graph, n).values() if _is_link(v)}
    outputs = sorted(
        (n for n in graph if n not in consumed),
        key=lambda n: ("Save" not in _class(graph, n), _sort_key(n)),
    )
    order: list[str] = []
    entered: set[str] = set()  # a node is expanded once: a cycle cannot loop
    for output in [*outputs, *sorted(graph, key=_sort_key)]:  # then nodes only in cycles
        if output in entered or len(order) >= MAX_ORDERED:
            continue
        stack = [(output, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if node in entered:
                continue
            entered.add(node)
            stack.append((node, True))
            sources = [str(v[0]) for v in _inputs(graph, node).values() if _is_link(v)]
            stack.extend((s, False) for s in reversed(sources) if s in graph and s not in entered)
    return order[:MAX_ORDERED]


def _scalar(graph: Graph, value: Any) -> Any:
    """A setting's value: a literal, or the value of the primitive nodes it is linked to (never a
    text taken from another kind of node)."""
    for _ in range(MAX_STRING_DEPTH):
        if not _is_link(value):
            return None if isinstance(value, dict | list) else value
        kind, inputs = _class(graph, value[0]), _inputs(graph, value[0])
        keys = STRING_NODES.get(kind) or (
            ("value", "seed", "int", "float", "number")
            if any(w in kind.lower() for w in ("primitive", "seed", "int", "float", "number"))
            else ()
        )
        key = next((k for k in keys if k in inputs), None)
        if key is None:
            return None
        value = inputs[key]
    return None


def _trace_scalar(graph: Graph, link: Any, keys: tuple[str, ...]) -> Any:
    """The first of `keys` found walking back from `link` (a model name through LoRA loaders,
    a size through latent upscales)."""
    queue, seen = deque([link]), set()
    while queue and len(seen) < MAX_VISITS:
        current = queue.popleft()
        if not _is_link(current) or str(current[0]) in seen:
            continue
        seen.add(str(current[0]))
        inputs = _inputs(graph, str(current[0]))
        for key in keys:
            value = _scalar(graph, inputs.get(key))
            if value is not None and not isinstance(value, bool):
                return value
        queue.extend(v for v in inputs.values() if _is_link(v))
    return None


@dataclass
class Origin:
    """Where a sampler's latent comes from: earlier samplers, through a resize or an inpaint
    mask."""

    samplers: list[str] = field(default_factory=list)
    resized: bool = False
    inpaint: bool = False


def latent_origin(graph: Graph, node: str, *, samplers: set[str]) -> Origin:
    """Walks back from a sampler's latent (or image) input, stopping at earlier samplers."""
    inputs = _inputs(graph, node)
    origin = Origin()
    queue = deque(inputs[k] for k in LATENT_INPUTS if k in inputs)
    seen: set[str] = set()
    while queue and len(seen) < MAX_VISITS:
        link = queue.popleft()
        if not _is_link(link) or str(link[0]) in seen or str(link[0]) not in graph:
            continue
        source = str(link[0])
        seen.add(source)
        kind = _class(graph, source)
        if source in samplers:
            origin.samplers.append(source)
            continue
        origin.inpaint |= kind in INPAINT_NODES
        origin.resized |= "upscale" in kind.lower() or "scale" in kind.lower()
        queue.extend(v for k, v in _inputs(graph, source).items() if k in LATENT_INPUTS)
    return origin


def starts_from_noise(graph: Graph, node: str, shape: Shape) -> bool:
    """Whether a sampler starts from pure noise: full denoise, `add_noise` with start step 0,
    full sigmas and real noise for the custom samplers. Detailers and upscalers never do."""
    if shape.role is not None:
        return False
    inputs = _inputs(graph, node)
    denoise = _scalar(graph, inputs.get("denoise", 1.0))
    if isinstance(denoise, int | float) and denoise < 1.0:
        return False
    if str(_scalar(graph, inputs.get("add_noise"))).lower() in ("disable", "false"):
        return False
    start = _scalar(graph, inputs.get("start_at_step", 0))
    if isinstance(start, int | float) and start > 0:
        return False
    noise = inputs.get("noise")
    if _is_link(noise) and _class(graph, noise[0]) == "DisableNoise":
        return False
    sigmas = inputs.get("sigmas")
    if _is_link(sigmas):
        kind, source = _class(graph, sigmas[0]), _inputs(graph, sigmas[0])
        if kind.startswith("SplitSigmas") and sigmas[1] == 1:
            return False
        sigma_denoise = _scalar(graph, source.get("denoise", 1.0))
        if isinstance(sigma_denoise, int | float) and sigma_denoise < 1.0:
            return False
    return True


def _links_of(graph: Graph, node: str, shape: Shape) -> tuple[Any, Any, Any]:
    """(positive link, negative link, model link) of a sampler, through its guider or pipe."""
    inputs = _inputs(graph, node)
    if shape.via == "guider":
        guider = inputs.get("guider")
        source = _inputs(graph, guider[0]) if _is_link(guider) else {}
        keys = GUIDERS.get(_class(graph, guider[0]) if _is_link(guider) else "")
        if keys is None:
            positive_key = next(
                (k for k in ("positive", "conditioning", "cond1") if k in source), ""
            )
            keys = (positive_key, "negative")
        negative = source.get(keys[1]) if keys[1] else None
        return source.get(keys[0]), negative, source.get("model", inputs.get("model"))
    if shape.via == "pipe":  # a linked input of the sampler's own goes before the pipe's
        pipe = inputs.get(shape.pipe or "basic_pipe")
        return tuple(
            inputs[name] if _is_link(inputs.get(name)) else pipe_field(graph, pipe, name)
            for name in ("positive", "negative", "model")
        )
    return inputs.get("positive"), inputs.get("negative"), inputs.get("model")


def pass_settings(graph: Graph, node: str, model: Any) -> dict[str, Any]:
    """A sampler's own scalar inputs, then those of its noise, sampler, sigmas and guider nodes
    (SamplerCustomAdvanced keeps its seed, steps and cfg there); model and latent size traced."""
    inputs = _inputs(graph, node)
    settings: dict[str, Any] = {}
    sources = [inputs] + [
        _inputs(graph, inputs[k][0]) for k in LINKED_SETTINGS if _is_link(inputs.get(k))
    ]
    for source in sources:
        for key, value in source.items():
            if key in SKIPPED_SETTINGS or key.startswith("_"):
                continue
            value = _scalar(graph, value)
            if value is not None and not isinstance(value, dict | list):
                settings.setdefault(key, value)
    model_name = _trace_scalar(graph, model, MODEL_KEYS)
    if model_name is not None:
        settings["model"] = model_name
    latent = inputs.get("latent_image")
    width = _trace_scalar(graph, latent, ("width",))
    height = _trace_scalar(graph, latent, ("height",))
    if isinstance(width, int) and isinstance(height, int):
        settings["size"] = f"{width}x{height}"
    settings["class_type"] = _class(graph, node)
    return settings


@dataclass
class GraphReading:
    """What a ComfyUI graph says: the base pass's texts, every pass, and why a prompt is
    missing (`note`, with the literal `candidates`)."""

    prompt: str | None = None
    negative: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    passes: list[Pass] = field(default_factory=list)
    composed: bool = False
    candidates: list[str] = field(default_factory=list)
    note: str | None = None


def _role(shape: Shape, origin: Origin, *, base: bool) -> str:
    if shape.role is not None:
        return shape.role
    if base:
        return "base"
    if origin.inpaint:
        return "inpaint"
    return "hires" if origin.samplers and origin.resized else "refiner"


def read_graph(graph: Graph) -> GraphReading:
    """The passes of an executed ComfyUI graph, the base pass's texts as the prompt."""
    graph = {str(k): v for k, v in graph.items() if isinstance(v, dict)}
    order = execution_order(graph)
    shapes = {n: s for n in order if (s := sampler_shape(graph, n)) is not None}
    samplers = list(shapes)[:MAX_PASSES]
    if not samplers:
        return _without_sampler(graph, order)
    noisy = [n for n in samplers if starts_from_noise(graph, n, shapes[n])]
    base = noisy[0] if noisy else samplers[0]
    reading = GraphReading()
    for node in samplers:
        positive, negative, model = _links_of(graph, node, shapes[node])
        texts, negatives = conditioning(graph, positive), conditioning(graph, negative)
        origin = latent_origin(graph, node, samplers=set(samplers))
        step = Pass(
            _role(shapes[node], origin, base=node == base),
            positive=texts.text,
            negative=negatives.text,
            settings=pass_settings(graph, node, model),
            composed=texts.composed,
            node=node,
        )
        reading.passes.append(step)
        if node == base:
            reading.prompt, reading.negative = step.positive, step.negative
            reading.settings, reading.composed = step.settings, step.composed
            _explain(reading, texts, node=node)
    return reading


def _explain(reading: GraphReading, texts: Texts, *, node: str) -> None:
    """Why the base pass has no prompt, and the literal texts met on the way."""
    if texts.runtime:
        names = ", ".join(dict.fromkeys(texts.runtime))
        reading.note = (
            f"the prompt of the base pass (node {node}) is made at run time by {names}: "
            "it is not stored in the file"
        )
        reading.candidates = [*texts.parts, *(c for c in texts.candidates if c not in texts.parts)]
    elif reading.prompt is None:
        reading.note = f"no prompt text reaches the base pass (node {node})"


def _without_sampler(graph: Graph, order: list[str]) -> GraphReading:
    """No sampler found (a custom sampler of an unknown kind): the first text encoder's literal
    text, said so in `note`."""
    for node in order:
        keys = _encoder_keys(graph, node)
        if keys is None:
            continue
        texts = Texts()
        for key in keys:
            text = string_value(graph, _inputs(graph, node).get(key), texts)
            if text is not None:
                texts.add(text)
        if texts.text:
            note = f"no sampler found: the text of the first text encoder, {_label(graph, node)}"
            return GraphReading(prompt=texts.text, composed=texts.composed, note=note)
    return GraphReading(note="no sampler and no text encoder in the graph")
