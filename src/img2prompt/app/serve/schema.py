"""The web app's answers as pydantic models: the OpenAPI schema at `/openapi.json`.

`DescribeResponse` is made from `img2prompt.describer.DESCRIPTION_FIELDS` (the one definition of
a description's shape, which `Description.to_json` and the Parquet columns follow too), plus
what only an upload has: the image's header, the decoding mode and the time taken.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from img2prompt.describer import DESCRIPTION_FIELDS, REQUIRED, OutputField


class ImageInfo(BaseModel):
    name: str
    format: str
    width: int
    height: int
    bytes: int


class Health(BaseModel):
    status: str
    model: str
    bank: str
    bank_entries: int
    mode: str
    max_upload_mb: float
    max_pixels: int
    pending: int
    described: int


SERVED_TYPES: dict[str, Any] = {
    "image": ImageInfo,
    "prompt": str,
    "source": Literal["metadata", "model"],
    "model_prompt": str,
    "match": float,
    "embedding": list[float],
}
"""Narrower types than a description in general has: a served one always had a model run
(never `source: none`, never a missing prediction), and its `image` is the upload's header."""

UPLOAD_FIELDS: dict[str, Any] = {
    "mode": (str, Field(description="Decoding mode: fast or best.")),
    "seconds": (float, Field(description="Time from the upload's arrival to this answer.")),
}


def _response_field(spec: OutputField) -> tuple[Any, Any]:
    """(type, pydantic Field) for one description field, as `create_model` takes it."""
    kind = SERVED_TYPES.get(spec.name, spec.type)
    if spec.name == "image":  # the upload's header, described by its own model
        return kind, ...
    if spec.default is REQUIRED:
        return kind, Field(description=spec.doc)
    return kind, Field(default=spec.default, description=spec.doc)


DescribeResponse: type[BaseModel] = create_model(
    "DescribeResponse",
    **{spec.name: _response_field(spec) for spec in DESCRIPTION_FIELDS},
    **UPLOAD_FIELDS,
)
"""`POST /api/describe`'s answer: `Description.to_json()` with the upload's `image` header,
the `mode` and the `seconds`."""
