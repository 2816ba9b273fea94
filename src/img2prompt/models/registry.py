"""One registry for backbones: `@register_backbone("name")` on a factory, `build_backbone(spec)`.

A spec is `name` or `name:argument` (`hf-clip:openai/clip-vit-large-patch14`, `hf-clip:./ckpt`).
The factory receives the argument and `pretrained`; with `pretrained=False` it builds the same
architecture with random weights (a saved model then loads its own state dict into it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from img2prompt.models.backbones import Backbone

BackboneFactory = Callable[[str, bool], "Backbone"]
_BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Register `factory(argument, pretrained) -> Backbone` under `name`; names are unique."""

    def decorate(factory: BackboneFactory) -> BackboneFactory:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered")
        _BACKBONES[name] = factory
        return factory

    return decorate


def split_spec(spec: str) -> tuple[str, str]:
    name, _, argument = spec.partition(":")
    return name.strip(), argument.strip()


def build_backbone(spec: str, pretrained: bool = True) -> Backbone:
    """Build the backbone a spec names; an unknown name lists the known ones."""
    import img2prompt.models.backbones  # noqa: F401  (registers the built-in factories)

    name, argument = split_spec(spec)
    if name not in _BACKBONES:
        raise ValueError(
            f"unknown backbone {name!r} in {spec!r}; known: {', '.join(backbone_names())}"
        )
    backbone = _BACKBONES[name](argument, pretrained)
    backbone.spec = spec
    return backbone


def backbone_names() -> list[str]:
    import img2prompt.models.backbones  # noqa: F401

    return sorted(_BACKBONES)
