"""img2prompt: recover the prompt behind a Stable Diffusion image.

The target of everything is the 384-d all-MiniLM-L6-v2 embedding of the true prompt, scored by
mean cosine similarity (the Kaggle "Stable Diffusion - Image to Prompts" metric).

    import img2prompt
    model = img2prompt.load_model("default")        # a folder, `default`, or hf:owner/repo[@rev]
    vectors = model.predict(["cat.png"])             # (N, 384) float32, unit rows
    img2prompt.decode(vectors)                       # ["a cat, ..."]
    img2prompt.describe(["cat.png"])[0].prompt       # the file's own prompt where it has one
    img2prompt.read_metadata("cat.png")              # .prompt .negative_prompt .settings

The names below are imported on first use, so `import img2prompt` loads neither torch nor a model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "load_model": "img2prompt.api",
    "decode": "img2prompt.api",
    "describe": "img2prompt.api",
    "create_model": "img2prompt.api",
    "list_backbones": "img2prompt.api",
    "Model": "img2prompt.api",
    "Predictor": "img2prompt.predict.predictor",
    "PredictOptions": "img2prompt.predict.options",
    "read_metadata": "img2prompt.metadata",
    "GenerationMetadata": "img2prompt.metadata",
    "Describer": "img2prompt.describer",
    "Description": "img2prompt.describer",
    "InputError": "img2prompt.errors",
    "ConfigError": "img2prompt.errors",
}
__all__ = [
    "ConfigError",
    "Describer",
    "Description",
    "GenerationMetadata",
    "InputError",
    "Model",
    "PredictOptions",
    "Predictor",
    "__version__",
    "create_model",
    "decode",
    "describe",
    "list_backbones",
    "load_model",
    "read_metadata",
]

if TYPE_CHECKING:
    from img2prompt.api import Model, create_model, decode, describe, list_backbones, load_model
    from img2prompt.describer import Describer, Description
    from img2prompt.errors import ConfigError, InputError
    from img2prompt.metadata import GenerationMetadata, read_metadata
    from img2prompt.predict.options import PredictOptions
    from img2prompt.predict.predictor import Predictor


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'img2prompt' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
