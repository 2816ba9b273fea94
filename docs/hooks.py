"""MkDocs hook: the options page is generated from the options dataclasses, as `--help` is
(`img2prompt.fields.specs`): every command, every option, its default and its help, defined once
beside the code it configures. The options of each registered head, pooling and loss (what
`--head-options`, `--pool-options` and `--loss-options` take) come from their signatures
(`Registry.options`)."""

from __future__ import annotations

import html
from typing import Literal, get_args, get_origin

MARKER = "<!-- options -->"
REGISTRY_MARKER = "<!-- registry-options -->"


def _kind(spec) -> str:
    kind = spec.kind
    if get_origin(kind) is Literal:
        return " \\| ".join(f"`{choice}`" for choice in get_args(kind))
    return getattr(kind, "__name__", str(kind)).replace("|", "\\|")


def _cell(text: str) -> str:
    return html.escape(" ".join(text.split())).replace("|", "\\|")


def options_markdown() -> str:
    from img2prompt.app.cli import COMMANDS
    from img2prompt.app.options import show_default
    from img2prompt.fields import specs

    parts = []
    for name, (cls, run) in COMMANDS.items():
        summary = (run.__doc__ or "").strip().split("\n\n")[0]
        parts += [f"## `img2prompt {name}`", "", " ".join(summary.split()), ""]
        parts += ["| option | type | default | what it does |", "|---|---|---|---|"]
        for spec in specs(cls):
            flag = spec.name.upper() if spec.positional else spec.flags[0]
            default = "(required)" if spec.positional else (show_default(spec) or "")
            parts.append(
                f"| `{flag}` | {_kind(spec)} | {_cell(str(default))} | {_cell(spec.doc)} |"
            )
        parts.append("")
    return "\n".join(parts)


def registry_options_markdown() -> str:
    from img2prompt.train.losses import LOSSES

    from img2prompt.models.heads import HEADS
    from img2prompt.models.pooling import POOLS

    parts = ["| flag | name | option | type | default |", "|---|---|---|---|---|"]
    registries = (("--head-options", HEADS), ("--pool-options", POOLS), ("--loss-options", LOSSES))
    for flag, registry in registries:
        for name in registry:
            options = registry.options(name).values()
            if not options:
                parts.append(f"| `{flag}` | `{name}` | (none) | | |")
            for option in options:
                key = f"{name}.{option.name}" if registry is LOSSES else option.name
                kind = getattr(option.kind, "__name__", "(Python only)")
                default = str(option.default).lower() if option.kind is bool else option.default
                parts.append(f"| `{flag}` | `{name}` | `{key}` | {kind} | {default} |")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, options_markdown())
    if REGISTRY_MARKER in markdown:
        markdown = markdown.replace(REGISTRY_MARKER, registry_options_markdown())
    return markdown
