"""One sampling pass of an image: the base pass that made its composition, then the passes that
reworked it (refiner, hires fix, face detailer, inpaint, tiled upscale).

`GenerationMetadata.prompt` is the base pass's positive text; every pass, the base first among
them in execution order, is listed in `GenerationMetadata.passes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from typing_extensions import TypedDict  # pydantic reads it for the HTTP schema (Python < 3.12)

Role = Literal["base", "refiner", "hires", "detailer", "inpaint", "upscale"]
ROLES: tuple[str, ...] = get_args(Role)
"""What a pass does: `base` made the composition (the first pass that starts from noise, or the
first pass where none does); `refiner` goes on from an earlier pass's latent (SDXL refiner,
a second model, a later stage); `hires` samples an upscaled earlier result again; `detailer`
redraws detected regions (faces, hands); `inpaint` redraws a masked region; `upscale` is a tiled
upscaler's sampling."""


class PassJSON(TypedDict):
    """A pass as the JSON says it (`Pass.to_json`)."""

    role: Role
    positive: str | None
    negative: str | None
    composed: bool
    node: str | None
    settings: dict[str, Any]


@dataclass
class Pass:
    """One sampler of the image: its role, the texts that reached it, its settings."""

    role: str
    positive: str | None = None
    """The positive text, None where none reached the sampler or it is made at run time."""
    negative: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    composed: bool = False
    """True where the positive text joins several texts (Combine, Concat, areas, SDXL's two
    encoders with different texts), in the order the graph feeds them."""
    node: str | None = None
    """The sampler's node id (ComfyUI), None for other front ends."""

    def to_json(self) -> PassJSON:
        return {
            "role": self.role,  # type: ignore[typeddict-item]  (one of ROLES)
            "positive": self.positive,
            "negative": self.negative,
            "composed": self.composed,
            "node": self.node,
            "settings": self.settings,
        }
