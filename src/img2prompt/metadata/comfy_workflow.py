"""ComfyUI's editor graph (`workflow`) in the executed graph's shape, for files that carry no
`prompt` graph (or a broken one).

The editor graph holds nodes with `widgets_values` (by position) and links as a list; it also
holds what the executed graph has already resolved: reroutes, bypassed (mode 4) and muted
(mode 2) nodes, KJNodes' Set/Get pairs, group nodes (`workflow>name`, `workflow/name`, defined
in `extra.groupNodes`) and subgraphs (a node whose type is the id of an entry of
`definitions.subgraphs`). Here they are resolved the way ComfyUI's front end resolves them
before it queues the graph: inner nodes get ids `"outer:inner"`, as in the executed graph.
Widget values get their names where the node type's widget order is known (`WIDGETS`); every
node keeps its raw widget values as `_widgets` (a tuple, so never taken for a link).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from img2prompt.metadata.comfyui import ENCODERS, STRING_NODES, Graph

MAX_NODES = 20_000
"""Nodes converted at most (inner nodes of groups and subgraphs included)."""
MAX_DEPTH = 6
"""Subgraphs inside subgraphs expanded at most this deep."""
MAX_HOPS = 64
"""Reroutes, bypassed nodes and Set/Get pairs followed at most for one link."""
MUTED, BYPASSED = 2, 4
SUBGRAPH_INPUT, SUBGRAPH_OUTPUT = "-10", "-20"

WIDGETS = {
    "CLIPTextEncode": ["text"],
    "CLIPTextEncodeSDXL": [
        "width", "height", "crop_w", "crop_h", "target_width", "target_height", "text_g", "text_l",
    ],
    "CLIPTextEncodeSDXLRefiner": ["ascore", "width", "height", "text"],
    "CLIPTextEncodeFlux": ["clip_l", "t5xxl", "guidance"],
    "CLIPTextEncodeSD3": ["clip_l", "clip_g", "t5xxl", "empty_padding"],
    "CLIPTextEncodeHiDream": ["clip_l", "clip_g", "t5xxl", "llama"],
    "CLIPTextEncodeLumina2": ["system_prompt", "user_prompt"],
    "KSampler": ["seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"],
    "KSamplerAdvanced": [
        "add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "start_at_step",
        "end_at_step", "return_with_leftover_noise",
    ],
    "SamplerCustom": ["add_noise", "noise_seed", "cfg"],
    "RandomNoise": ["noise_seed"],
    "KSamplerSelect": ["sampler_name"],
    "BasicScheduler": ["scheduler", "steps", "denoise"],
    "CFGGuider": ["cfg"],
    "DualCFGGuider": ["cfg_conds", "cfg_cond2_negative"],
    "FluxGuidance": ["guidance"],
    "CheckpointLoaderSimple": ["ckpt_name"],
    "CheckpointLoader": ["config_name", "ckpt_name"],
    "UNETLoader": ["unet_name", "weight_dtype"],
    "EmptyLatentImage": ["width", "height", "batch_size"],
    "EmptySD3LatentImage": ["width", "height", "batch_size"],
    "LatentUpscale": ["upscale_method", "width", "height", "crop"],
    "LatentUpscaleBy": ["upscale_method", "scale_by"],
    "StringConcatenate": ["string_a", "string_b", "delimiter"],
    "Text Concatenate": ["delimiter", "clean_whitespace"],
    "SDXLPromptStyler": ["text_positive", "text_negative", "style", "log_prompt"],
    "FaceDetailer": [
        "guide_size", "guide_size_for", "max_size", "seed", "steps", "cfg", "sampler_name",
        "scheduler", "denoise",
    ],
}  # fmt: skip
SEED_CONTROL = {"fixed", "increment", "decrement", "randomize"}
"""The editor's "control after generate" widget (a bool in old versions), stored after a seed
but not an input."""


@dataclass
class Flat:
    """The editor graph with groups and subgraphs expanded: nodes by id, and each node's linked
    inputs by name -> (source id, output slot) before reroutes and bypasses are resolved."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    wires: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)
    outputs: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    """A group or subgraph node's output slot -> the inner node and slot that produce it."""
    literals: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Inner inputs given a value by their subgraph node's own widget (a promoted widget)."""


def _links(raw: Any) -> dict[str, tuple[str, int, str, int]]:
    """Links by id -> (origin, origin slot, target, target slot); the list and object forms."""
    found: dict[str, tuple[str, int, str, int]] = {}
    for link in raw if isinstance(raw, list) else []:
        if isinstance(link, list) and len(link) >= 5:
            link_id, origin, origin_slot, target, target_slot = link[:5]
        elif isinstance(link, dict):
            link_id, origin, target = link.get("id"), link.get("origin_id"), link.get("target_id")
            origin_slot, target_slot = link.get("origin_slot"), link.get("target_slot")
        else:
            continue
        if isinstance(origin_slot, int) and isinstance(target_slot, int):
            found[str(link_id)] = (str(origin), origin_slot, str(target), target_slot)
    return found


def _input_names(node: dict[str, Any]) -> list[str]:
    slots = node.get("inputs") if isinstance(node.get("inputs"), list) else []
    return [str(s.get("name", "")) if isinstance(s, dict) else "" for s in slots]


def _add_nodes(
    flat: Flat,
    nodes: Any,
    links: Any,
    *,
    prefix: str,
    definitions: dict,
    depth: int,
    groups: dict,
) -> None:
    """Adds one level's nodes (top level, a group's or a subgraph's) to `flat`, ids prefixed."""
    if len(flat.nodes) >= MAX_NODES:
        return
    by_id = {str(n["id"]): n for n in nodes if isinstance(n, dict) and "id" in n}
    for origin, slot, target, target_slot in _links(links).values():
        names = _input_names(by_id.get(target, {}))
        if target == SUBGRAPH_OUTPUT:
            flat.outputs[(prefix.rstrip(":"), target_slot)] = (prefix + origin, slot)
            continue
        if target_slot < len(names):
            source = (f"@{prefix.rstrip(':')}", slot) if origin == SUBGRAPH_INPUT else None
            flat.wires.setdefault(prefix + target, {})[names[target_slot]] = source or (
                prefix + origin,
                slot,
            )
    for node_id, node in by_id.items():
        if len(flat.nodes) >= MAX_NODES:
            return
        flat.nodes[prefix + node_id] = node
        kind = str(node.get("type", ""))
        if depth < MAX_DEPTH and kind in definitions:
            _expand_subgraph(flat, prefix + node_id, definitions[kind], definitions, depth)
        elif _group_name(kind) in groups:
            _expand_group(flat, prefix + node_id, groups[_group_name(kind)])


def _expand_subgraph(
    flat: Flat, outer: str, definition: dict, definitions: dict, depth: int
) -> None:
    """A subgraph node: its inner nodes as `outer:inner`, its inputs wired from the outer links
    (an inner wire from the subgraph's input node becomes the outer node's input source)."""
    _add_nodes(
        flat,
        definition.get("nodes") or [],
        definition.get("links") or [],
        prefix=f"{outer}:",
        definitions=definitions,
        depth=depth + 1,
        groups={},
    )
    outer_names = _input_names(flat.nodes.get(outer, {}))
    names = [str(i.get("name", "")) for i in definition.get("inputs") or [] if isinstance(i, dict)]
    outer_wires = flat.wires.get(outer, {})
    for target, wires in list(flat.wires.items()):
        for name, (source, slot) in list(wires.items()):
            if source != f"@{outer}":
                continue
            del wires[name]
            key = names[slot] if slot < len(names) else ""
            if key not in outer_wires and slot < len(outer_names):
                key = outer_names[slot]
            if key in outer_wires:
                wires[name] = outer_wires[key]
            elif (value := _promoted(flat.nodes.get(outer, {}), key)) is not None:
                flat.literals.setdefault(target, {})[name] = value


def _promoted(node: dict[str, Any], name: str) -> Any:
    """The value a subgraph node's own widget gives subgraph input `name`: by its
    `proxyWidgets` entry `["-1", name]`, or by its widget inputs in order (older files). The
    inner node's widget value is stale where the subgraph node holds one."""
    values = node.get("widgets_values")
    if not isinstance(values, list) or not name:
        return None
    proxies = (node.get("properties") or {}).get("proxyWidgets")
    if isinstance(proxies, list) and proxies:
        order = [
            p[1] if isinstance(p, list) and len(p) == 2 and str(p[0]) == "-1" else None
            for p in proxies
        ]
    else:
        slots = node.get("inputs") if isinstance(node.get("inputs"), list) else []
        order = [s.get("name") for s in slots if isinstance(s, dict) and s.get("widget")]
    named = dict(zip(order, _without_seed_control(order, values), strict=False))
    value = named.get(name)
    return value if isinstance(value, str | int | float | bool) else None


def _without_seed_control(names: list, values: list) -> list:
    """Widget values with the "control after generate" value after a seed taken out."""
    kept, i = [], 0
    for name in names:
        if i >= len(values):
            break
        kept.append(values[i])
        i += 1
        control = values[i] if i < len(values) else None
        if "seed" in str(name) and isinstance(control, str) and control in SEED_CONTROL:
            i += 1
    return kept


def _group_name(kind: str) -> str:
    """A group node's name: its type without the `workflow>` (or older `workflow/`) prefix."""
    for prefix in ("workflow>", "workflow/"):
        if kind.startswith(prefix):
            return kind[len(prefix) :]
    return ""


def _expand_group(flat: Flat, outer: str, definition: Any) -> None:
    """A group node (`extra.groupNodes`): inner nodes `outer:index`, wired by the definition's
    links; the group's free inputs, outputs and widget values go to the inner nodes in order,
    as ComfyUI's front end hands them out."""
    inner = definition.get("nodes") if isinstance(definition, dict) else None
    if not isinstance(inner, list):
        return
    inner = [n for n in inner if isinstance(n, dict)][: MAX_NODES - len(flat.nodes)]
    links = [x for x in definition.get("links") or [] if isinstance(x, list) and len(x) >= 4]
    targets, sources = set(), set()
    for origin, slot, target, target_slot in (link[:4] for link in links):
        targets.add((target, target_slot))
        sources.add((origin, slot))
        names = _input_names(inner[target]) if _index_ok(inner, target) else []
        if isinstance(target_slot, int) and target_slot < len(names):
            flat.wires.setdefault(f"{outer}:{target}", {})[names[target_slot]] = (
                f"{outer}:{origin}",
                slot,
            )
    external = {tuple(e[:2]) for e in definition.get("external") or [] if isinstance(e, list)}
    _group_inputs(flat, outer, inner, targets)
    outputs = [
        (i, s)
        for i, node in enumerate(inner)
        for s in range(len(node.get("outputs") or []))
        if (i, s) not in sources or (i, s) in external
    ]
    for k, (i, s) in enumerate(outputs):
        flat.outputs[(outer, k)] = (f"{outer}:{i}", s)
    values = list(flat.nodes[outer].get("widgets_values") or [])
    for i, node in enumerate(inner):
        count = len(node.get("widgets_values") or [])
        node = {**node, "id": f"{outer}:{i}", "widgets_values": values[:count] or None}
        values = values[count:]
        flat.nodes[f"{outer}:{i}"] = node


def _index_ok(inner: list, index: Any) -> bool:
    return isinstance(index, int) and 0 <= index < len(inner)


def _group_inputs(flat: Flat, outer: str, inner: list, targets: set) -> None:
    """The group node's linked inputs, in order, onto the inner inputs no inner link feeds."""
    free = [
        (i, str(slot.get("name", "")))
        for i, node in enumerate(inner)
        for s, slot in enumerate(node.get("inputs") or [])
        if isinstance(slot, dict) and (i, s) not in targets and not slot.get("widget")
    ]
    outer_slots = [
        s
        for s in flat.nodes[outer].get("inputs") or []
        if isinstance(s, dict) and not s.get("widget")
    ]
    outer_wires = flat.wires.get(outer, {})
    for (i, name), slot in zip(free, outer_slots, strict=False):
        source = outer_wires.get(str(slot.get("name", "")))
        if source is not None:
            flat.wires.setdefault(f"{outer}:{i}", {})[name] = source


def _resolve(flat: Flat, source: str, slot: int, setters: dict[str, str]) -> list | None:
    """The node and slot that really produce a link: through group and subgraph outputs,
    reroutes, Set/Get pairs and bypassed nodes; None from a muted or missing node."""
    for _ in range(MAX_HOPS):
        if (source, slot) in flat.outputs:
            source, slot = flat.outputs[(source, slot)]
            continue
        node = flat.nodes.get(source)
        if node is None or node.get("mode") == MUTED:
            return None
        kind, wires = str(node.get("type", "")), flat.wires.get(source, {})
        if kind == "GetNode":
            widgets = node.get("widgets_values") or [None]
            wires = flat.wires.get(setters.get(str(widgets[0]), ""), {})
        elif kind not in ("Reroute", "SetNode") and node.get("mode") != BYPASSED:
            return [source, slot]
        if node.get("mode") == BYPASSED:
            wires = _same_type(node, slot, wires)
        if not wires:
            return None
        source, slot = next(iter(wires.values()))
    return None


def _same_type(node: dict[str, Any], slot: int, wires: dict) -> dict:
    """A bypassed node hands on its first input of its output's type."""
    outputs = node.get("outputs") or []
    wanted = (
        outputs[slot].get("type")
        if slot < len(outputs) and isinstance(outputs[slot], dict)
        else None
    )
    for entry in node.get("inputs") or []:
        if isinstance(entry, dict) and entry.get("type") == wanted and entry.get("name") in wires:
            return {entry["name"]: wires[entry["name"]]}
    return {}


def _widget_inputs(kind: str, values: list) -> dict[str, Any]:
    """Named inputs from a node's widget values, where their order is known."""
    names = WIDGETS.get(kind)
    if names is not None:
        seed = next((i for i, name in enumerate(names) if "seed" in name), None)
        control = values[seed + 1] if seed is not None and len(values) > seed + 1 else None
        if isinstance(control, bool) or (isinstance(control, str) and control in SEED_CONTROL):
            values = values[: seed + 1] + values[seed + 2 :]  # type: ignore[operator]
        return dict(zip(names, values, strict=False))
    if kind in STRING_NODES and values:
        return {STRING_NODES[kind][0]: values[0]}
    keys = ENCODERS.get(kind) or (("text",) if "encode" in kind.lower() else ())
    texts = [v for v in values if isinstance(v, str)]
    return dict(zip(keys, texts, strict=False))


def workflow_to_graph(workflow: dict[str, Any]) -> Graph:
    """The editor's graph in the executed graph's shape (see the module's docstring)."""
    subgraphs = (workflow.get("definitions") or {}).get("subgraphs") or []
    definitions = {str(d.get("id")): d for d in subgraphs if isinstance(d, dict)}
    groups = (workflow.get("extra") or {}).get("groupNodes") or {}
    flat = Flat()
    _add_nodes(
        flat,
        workflow.get("nodes") or [],
        workflow.get("links") or [],
        prefix="",
        definitions=definitions,
        depth=0,
        groups=groups if isinstance(groups, dict) else {},
    )
    setters = {
        str((n.get("widgets_values") or [None])[0]): node_id
        for node_id, n in flat.nodes.items()
        if n.get("type") == "SetNode"
    }
    graph: Graph = {}
    for node_id, node in flat.nodes.items():
        kind = str(node.get("type", ""))
        skipped = kind in ("Reroute", "SetNode", "GetNode", "Note", "MarkdownNote")
        expanded = any(key[0] == node_id for key in flat.outputs) or kind in definitions
        if skipped or expanded or node.get("mode") in (MUTED, BYPASSED):
            continue
        widgets = node.get("widgets_values")
        values = list(widgets) if isinstance(widgets, list) else []
        inputs = _widget_inputs(kind, values)
        inputs.update(flat.literals.get(node_id, {}))
        inputs["_widgets"] = tuple(values)
        for name, (source, slot) in flat.wires.get(node_id, {}).items():
            resolved = _resolve(flat, source, slot, setters)
            if resolved is not None:
                inputs[name] = resolved
        graph[node_id] = {"class_type": kind, "inputs": inputs}
    return graph
