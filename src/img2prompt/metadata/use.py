"""How a request for a prompt uses the metadata embedded in a file (`describe --metadata`,
`serve --metadata`, the HTTP `?metadata=`): the one statement of the choices."""

from __future__ import annotations

from typing import Literal

MetadataUse = Literal["auto", "ignore", "only"]
"""`auto`: a file that carries its prompt is answered with it, the model's guess beside it;
`ignore`: pixels only; `only`: embedded prompts only, no model."""
UploadMetadataUse = Literal["auto", "ignore"]
"""What a server takes: it always has a model, so `only` is not offered."""
