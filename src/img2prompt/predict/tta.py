"""Test-time augmentation, one stage: a decoded image -> its views; the views' rows -> one row.

Views are built from the model's own `PreprocessConfig`, so a view is just "the image the model
was trained on, mirrored or zoomed". Each view's output is L2-normalised before the views are
averaged (as the seed recipe did), so no view dominates by its norm. Nothing else in `predict`
knows what a view is: it passes `TTA.render` to the reader and `TTA.merge` to the engine's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import get_args

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from img2prompt.data.transforms import PreprocessConfig, resize_and_crop
from img2prompt.errors import ConfigError
from img2prompt.predict.options import TTAName

TTA_CHOICES = get_args(TTAName)
ZOOM = 1.15
"""The `zoom` view resizes 15% larger before the same centre crop: a tighter crop at a second
scale, the other cheap view that helps CLIP regressors besides the mirror image."""


@dataclass(frozen=True)
class View:
    name: str
    preprocess: PreprocessConfig
    hflip: bool = False


def tta_views(cfg: PreprocessConfig, tta: str = "none") -> list[View]:
    """The views for a `--tta` choice; the first is always the plain view (what `none` gives)."""
    if tta not in TTA_CHOICES:
        raise ConfigError(f"--tta must be one of {', '.join(TTA_CHOICES)}, got {tta!r}")
    scales = [View("plain", cfg)]
    if "zoom" in tta:
        zoomed = replace(cfg, resize_to=round(cfg.resize_to * ZOOM))
        scales.append(View("zoom", zoomed))
    views = list(scales)
    if "hflip" in tta:
        views += [View(f"{v.name}-hflip", v.preprocess, hflip=True) for v in scales]
    return views


class TTA:
    """The views of a `--tta` choice for one model: `render` makes an image's views (in the
    reader's worker threads), `merge` turns the model's rows for them back into one row."""

    def __init__(self, cfg: PreprocessConfig, tta: str = "none") -> None:
        self.views = tta_views(cfg, tta)
        self.fit = max(view.preprocess.resize_to for view in self.views)
        """The short side the views need: huge files are decoded reduced toward it."""

    @property
    def count(self) -> int:
        """Views per image: model rows per image."""
        return len(self.views)

    def render(self, image: Image.Image) -> np.ndarray:
        """(V, H, W, 3) uint8: every view of one RGB image, resized and cropped as the model
        expects. Pixels stay uint8 (4x less memory in the read-ahead queue) until the engine
        normalises a whole batch."""
        crops: dict[PreprocessConfig, Image.Image] = {}
        out = []
        for view in self.views:
            if view.preprocess not in crops:  # a mirrored view reuses its scale's resize
                crops[view.preprocess] = resize_and_crop(image, view.preprocess)
            crop = crops[view.preprocess]
            if view.hflip:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            out.append(np.asarray(crop))
        return np.stack(out)

    def merge(self, outputs: torch.Tensor) -> torch.Tensor:
        """(B * V, D) model rows, an image's views adjacent -> (B, D) unit vectors."""
        per_view = outputs.float().reshape(-1, self.count, outputs.shape[-1])
        return F.normalize(F.normalize(per_view, dim=-1).mean(dim=1), dim=-1)
