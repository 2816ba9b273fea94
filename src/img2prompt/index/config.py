"""The `index` commands' options live in `img2prompt.config` with every other option; this module
re-exports them for the index package."""

from __future__ import annotations

from typing import get_args

from img2prompt.config import (
    DEFAULT_K_GRID,
    DEFAULT_TEMPERATURE_GRID,
    IndexBuildConfig,
    IndexSearch,
    IndexTuneConfig,
    check_k_temperature,
)

SEARCHES = get_args(IndexSearch)

__all__ = [
    "DEFAULT_K_GRID",
    "DEFAULT_TEMPERATURE_GRID",
    "SEARCHES",
    "IndexBuildConfig",
    "IndexTuneConfig",
    "check_k_temperature",
]
