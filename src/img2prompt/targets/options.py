"""How texts are embedded into the target space: the options `data prepare`, `bank build` and
`bank add` share (each nests them, spelled flat: `--batch-size`, `--device`, `--cache-dir`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from img2prompt.device import Device
from img2prompt.fields import at_least
from img2prompt.targets.encoder import DEFAULT_BATCH_SIZE


@dataclass
class EmbedOptions:
    batch_size: int = DEFAULT_BATCH_SIZE
    """Texts per encoder batch (the default suits a CPU; raise it on a GPU)."""
    device: Device = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`..."""
    cache_dir: Path | None = None
    """Embedding cache (default: $IMG2PROMPT_CACHE/embeddings or ~/.cache/img2prompt/embeddings)."""

    def __post_init__(self) -> None:
        at_least(1, batch_size=self.batch_size)


BANK_EMBED_BATCH = 64
"""Banks' texts are short phrases: 64 a batch suits a CPU."""
