"""The prompt of a ComfyUI image: the text that reached the sampler which made the saved image.

Written here rather than taken from sd-parsers because sd-parsers needs both the `prompt` and the
`workflow` chunks (it follows the editor's links; files saved through the API carry `prompt`
alone) and it joins the prompts of every sampler in the graph, where a two-pass or upscale graph
wants the one sampler that produced the output.

ComfyUI's `prompt` chunk is the executed graph: `{node_id: {"class_type": ..., "inputs": {...}}}`,
an input being a value or a link `[source_node_id, output_slot]`. The `workflow` chunk is the
editor's graph (nodes with `widgets_values`, links as a list); it is turned into the same shape
for the node types whose widget order is known, and read when `prompt` is missing or broken.
"""

from __future__ import annotations

from collections import deque
from typing import Any

Graph = dict[str, dict[str, Any]]

TEXT_KEYS = ("text", "text_g", "text_l", "prompt", "positive_prompt", "string", "value")
"""Inputs that hold prompt text on text-encoder and text-primitive nodes (the first string)."""
NOT_CONDITIONING = {
    "clip", "model", "vae", "image", "images", "pixels", "mask", "control_net", "style_model",
    "clip_vision", "clip_vision_output", "samples", "latent", "latent_image", "upscale_model",
    "noise", "sigmas", "sampler",
}  # fmt: skip
"""Inputs never followed when tracing conditioning back to its text: they carry other things."""
SEED_KEYS = ("seed", "noise_seed")
MODEL_KEYS = ("ckpt_name", "unet_name", "model_name", "base_ckpt_name")
MAX_VISITS = 2000
"""Nodes visited at most by one walk through a graph (a hostile graph may hold millions)."""
MAX_SAMPLERS_COMPARED = 64
"""With more samplers than this, which feed which is not worked out (it costs a walk each)."""

# The editor graph stores widget values by position; their names, for the nodes that matter.
WIDGETS = {
    "CLIPTextEncode": ["text"],
    "CLIPTextEncodeSDXL": [
        "width", "height", "crop_w", "crop_h", "target_width", "target_height", "text_g", "text_l",
    ],
    "KSampler": ["seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"],
    "KSamplerAdvanced": [
        "add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "start_at_step",
        "end_at_step", "return_with_leftover_noise",
    ],
    "CheckpointLoaderSimple": ["ckpt_name"],
    "CheckpointLoader": ["config_name", "ckpt_name"],
    "UNETLoader": ["unet_name", "weight_dtype"],
    "EmptyLatentImage": ["width", "height", "batch_size"],
    "EmptySD3LatentImage": ["width", "height", "batch_size"],
}  # fmt: skip
SEED_CONTROL = {"fixed", "increment", "decrement", "randomize"}
"""The editor's "control after generate" widget (a bool in old versions), stored after a seed
but not an input."""


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def _inputs(graph: Graph, node_id: str) -> dict[str, Any]:
    node = graph.get(str(node_id))
    inputs = node.get("inputs") if isinstance(node, dict) else None
    return inputs if isinstance(inputs, dict) else {}


def _class(graph: Graph, node_id: str) -> str:
    node = graph.get(str(node_id))
    return str(node.get("class_type", "")) if isinstance(node, dict) else ""


def _value(graph: Graph, value: Any, keys: tuple[str, ...] = TEXT_KEYS) -> Any:
    """A scalar input value, following links to primitive nodes (a seed or text widget turned
    into an input): breadth first, each node once, so a hostile graph costs linear time."""
    queue, seen = deque([value]), set()
    while queue and len(seen) < MAX_VISITS:
        current = queue.popleft()
        if not _is_link(current):
            if current is not None and not isinstance(current, dict | list):
                return current
            continue
        node = str(current[0])
        if node in seen:
            continue
        seen.add(node)
        inputs = _inputs(graph, node)
        ordered = [k for k in keys if k in inputs] + [k for k in inputs if k not in keys]
        queue.extend(inputs[k] for k in ordered)
    return None


def is_sampler(inputs: dict[str, Any]) -> bool:
    """KSampler, KSamplerAdvanced, SamplerCustom (positive/negative links), SamplerCustomAdvanced
    (a guider)."""
    conditioned = _is_link(inputs.get("positive")) or _is_link(inputs.get("guider"))
    return conditioned and any(k in inputs for k in ("steps", "cfg", *SEED_KEYS, "sigmas"))


def final_sampler(graph: Graph) -> str | None:
    """The sampler whose latent became the saved image: of the samplers that feed no other
    sampler (a two-pass graph's second pass, not its first), the one nearest to a SaveImage
    node, else to another output (PreviewImage, ...); without outputs, the last by id."""
    samplers = [n for n in graph if is_sampler(_inputs(graph, n))]
    if not samplers:
        return None
    if len(samplers) <= MAX_SAMPLERS_COMPARED:  # each comparison walks the graph once
        upstream = set().union(*(_ancestors(graph, n) for n in samplers))
        last = {n for n in samplers if n not in upstream} or set(samplers)
    else:
        last = set(samplers)
    consumed = {str(v[0]) for n in graph for v in _inputs(graph, n).values() if _is_link(v)}
    outputs = [n for n in graph if n not in consumed and n not in last]
    saves = [n for n in outputs if "Save" in _class(graph, n)]
    for starts in (saves, [n for n in outputs if n not in saves]):
        queue = deque(sorted(starts, key=_sort_key))
        seen = set(starts)
        while queue:
            node = queue.popleft()
            if node in last:
                return node
            for value in _inputs(graph, node).values():
                if _is_link(value) and str(value[0]) not in seen and str(value[0]) in graph:
                    seen.add(str(value[0]))
                    queue.append(str(value[0]))
    return max(last, key=_sort_key)


def _ancestors(graph: Graph, node: str) -> set[str]:
    """Every node that feeds `node`, directly or through others."""
    found: set[str] = set()
    stack = [node]
    while stack and len(found) < MAX_VISITS:
        for value in _inputs(graph, stack.pop()).values():
            if _is_link(value) and str(value[0]) not in found and str(value[0]) in graph:
                found.add(str(value[0]))
                stack.append(str(value[0]))
    return found


def _sort_key(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if str(node_id).isdigit() else (1 << 62, str(node_id))


def conditioning_texts(graph: Graph, start: Any) -> list[str]:
    """The prompt texts that flow into a conditioning input, in input order, each once:
    through ConditioningCombine/Concat/SetArea, ControlNet and other conditioning nodes back to
    the text encoders (and through links to text primitives). A node with both `positive` and
    `negative` inputs (ControlNetApplyAdvanced, InpaintModelConditioning...) passes on the one
    its output slot carries: slot 0 the positive, slot 1 the negative."""
    texts: list[str] = []
    seen: set[str] = set()
    stack = [start]
    while stack and len(seen) < MAX_VISITS:
        link = stack.pop()
        if not _is_link(link):
            continue
        node = str(link[0])
        if node in seen or node not in graph:
            continue
        seen.add(node)
        inputs = _inputs(graph, node)
        found = [_value(graph, inputs[k]) for k in TEXT_KEYS if k in inputs]
        strings = [t.strip() for t in found if isinstance(t, str) and t.strip()]
        if strings:
            texts.extend(text for text in strings if text not in texts)
            continue
        if "positive" in inputs and "negative" in inputs:
            stack.append(inputs["negative" if link[1] == 1 else "positive"])
            continue
        followed = [v for k, v in inputs.items() if k not in NOT_CONDITIONING]
        stack.extend(reversed(followed))  # depth first, in input order
    return texts


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
            if key in inputs and not _is_link(inputs[key]):
                return inputs[key]
        queue.extend(v for v in inputs.values() if _is_link(v))
    return None


def read_graph(graph: Graph) -> tuple[str | None, str | None, dict[str, Any]]:
    """(prompt, negative prompt, settings) of an executed ComfyUI graph."""
    graph = {str(k): v for k, v in graph.items() if isinstance(v, dict)}
    sampler = final_sampler(graph)
    if sampler is None:  # no sampler: a text encoder's text is the best guess there is
        texts = [
            _value(graph, _inputs(graph, n).get("text"))
            for n in sorted(graph, key=_sort_key)
            if "CLIPTextEncode" in _class(graph, n)
        ]
        texts = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
        return (texts[0] if texts else None), None, {}
    inputs = _inputs(graph, sampler)
    conditioning = inputs
    if _is_link(inputs.get("guider")):  # SamplerCustomAdvanced: CFGGuider / BasicGuider
        conditioning = _inputs(graph, str(inputs["guider"][0]))
    positive = conditioning.get("positive", conditioning.get("conditioning"))
    prompt = ", ".join(conditioning_texts(graph, positive)) or None
    negative = ", ".join(conditioning_texts(graph, conditioning.get("negative"))) or None
    settings: dict[str, Any] = {}
    for key, value in inputs.items():
        if key in ("positive", "negative", "model", "latent_image", "guider"):
            continue
        value = _value(graph, value, (key, "value", *SEED_KEYS))
        if value is not None and not isinstance(value, dict | list):
            settings[key] = value
    if "cfg" not in settings and "cfg" in conditioning:
        settings["cfg"] = _value(graph, conditioning["cfg"], ("cfg", "value"))
    model = _trace_scalar(graph, inputs.get("model", conditioning.get("model")), MODEL_KEYS)
    if model is not None:
        settings["model"] = model
    width = _trace_scalar(graph, inputs.get("latent_image"), ("width",))
    height = _trace_scalar(graph, inputs.get("latent_image"), ("height",))
    if isinstance(width, int) and isinstance(height, int):
        settings["size"] = f"{width}x{height}"
    settings["class_type"] = _class(graph, sampler)
    return prompt, negative, settings


def workflow_to_graph(workflow: dict[str, Any]) -> Graph:
    """The editor's graph in the executed graph's shape: links become `[source, slot]` inputs,
    widget values get their names where the node type's widget order is known (`WIDGETS`); a
    text node of another type keeps its first string widget as `text`."""
    links: dict[int, list] = {}
    for link in workflow.get("links") or []:
        if isinstance(link, list) and len(link) >= 5:
            links[link[0]] = [str(link[1]), int(link[2]) if isinstance(link[2], int) else 0]
    graph: Graph = {}
    for node in workflow.get("nodes") or []:
        if not isinstance(node, dict) or "id" not in node:
            continue
        kind = str(node.get("type", ""))
        inputs: dict[str, Any] = {}
        widgets = node.get("widgets_values")
        values = list(widgets) if isinstance(widgets, list) else []
        names = WIDGETS.get(kind)
        if names is not None:
            seed = next((i for i, name in enumerate(names) if "seed" in name), None)
            control = values[seed + 1] if seed is not None and len(values) > seed + 1 else None
            if isinstance(control, bool) or (isinstance(control, str) and control in SEED_CONTROL):
                values.pop(seed + 1)  # type: ignore[operator]  # the seed's control widget
            inputs.update(zip(names, values, strict=False))
        elif any(word in kind.lower() for word in ("text", "prompt", "string")):
            text = next((v for v in values if isinstance(v, str)), None)
            if text is not None:
                inputs["text"] = text
        for slot in node.get("inputs") or []:
            if isinstance(slot, dict) and slot.get("link") in links:
                inputs[str(slot.get("name"))] = links[slot["link"]]
        graph[str(node["id"])] = {"class_type": kind, "inputs": inputs}
    return graph
