"""The options of the training-free CLIP index: `index build` and `index tune`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from img2prompt.device import Device, Precision, refuse_precision
from img2prompt.errors import ConfigError
from img2prompt.fields import POSITIONAL, at_least, check_choices

IndexSearch = Literal["exact", "ivf", "hnsw"]
"""`exact` (IndexFlatIP, equals brute force), `ivf` (IVF-Flat) or `hnsw`."""
DEFAULT_K_GRID = (1, 2, 4, 8, 16, 32, 64, 128)
DEFAULT_TEMPERATURE_GRID = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.2)


def check_k_temperature(k: int, temperature: float) -> None:
    if k < 1:
        raise ConfigError(f"--k must be >= 1, got {k}")
    if not temperature > 0:
        raise ConfigError(f"--temperature must be > 0, got {temperature}")


@dataclass
class RetrievalSettings:
    """What a retrieval model reads when it predicts: set by `index build`, kept in model.json."""

    k: int = 32
    """Prompts each prediction blends (the k most CLIP-similar to the image)."""
    temperature: float = 0.05
    """Softmax temperature over the k cosines: lower trusts the best match more."""
    search: IndexSearch = "exact"
    """`exact` (IndexFlatIP, equals brute force), or for tens of millions `ivf` (IVF-Flat) or
    `hnsw`; their recall against exact search is measured on a sample and printed."""
    nprobe: int = 32
    """ivf: lists searched per query (stored in model.json; more is slower and more complete)."""
    ef_search: int = 128
    """hnsw: candidate list size per query (stored in model.json)."""

    def __post_init__(self) -> None:
        check_k_temperature(self.k, self.temperature)
        check_choices(self)
        at_least(1, nprobe=self.nprobe, ef_search=self.ef_search)


@dataclass
class IndexBuildConfig:
    prompts: Path = field(metadata=POSITIONAL)
    """A prepared folder (`data prepare` output) or its prompts.parquet: `prompt` and `target`
    are reused; a prompt met on several rows (several images per prompt) is indexed once."""
    clip: str
    """CLIP dual encoder: a hub id (openai/clip-vit-large-patch14) or a local CLIPModel folder with
    its tokenizer and image processor. It is copied into INDEX/clip, so the index moves as one."""
    out: Path
    """The index folder to write; it is a model folder every command takes (predict, describe,
    serve, load_model)."""
    retrieval: RetrievalSettings = field(default_factory=lambda: RetrievalSettings())
    """How predictions search and blend (spelled flat: `--k`, `--temperature`, `--search`...)."""
    batch_size: int = 256
    """Prompts per text-encoder batch (256 suits a GPU; a CPU is as fast with 64)."""
    chunk_size: int = 8192
    """Prompts per saved chunk: the unit of resuming an interrupted build."""
    device: Device = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`..."""
    precision: Precision = "auto"
    """Text tower precision: auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16. Features are
    normalised and stored in float32 whatever it is."""

    def __post_init__(self) -> None:
        self.prompts, self.out = Path(self.prompts), Path(self.out)
        check_choices(self)
        refuse_precision("int8", precision=self.precision)
        at_least(1, batch_size=self.batch_size, chunk_size=self.chunk_size)
        if not self.clip:
            raise ConfigError("--clip needs a hub id or a CLIPModel folder")


@dataclass
class IndexTuneConfig:
    index: Path = field(metadata=POSITIONAL)
    """The index folder (`index build`); its model.json receives the chosen k and temperature."""
    data: Path
    """A prepared folder whose prompts.parquet has images (`image`), targets and groups."""
    k_grid: list[int] = field(default_factory=lambda: list(DEFAULT_K_GRID))
    """Values of k tried (comma-separated)."""
    temperature_grid: list[float] = field(default_factory=lambda: list(DEFAULT_TEMPERATURE_GRID))
    """Softmax temperatures tried (comma-separated)."""
    oof: Path | None = None
    """Where the out-of-fold predictions at the chosen (k, T) go (id, image, fold, embedding,
    cosine, as `train --fold all` writes them); default INDEX/oof.parquet."""
    exclude_own_group: bool = True
    """Leave out each image's own prompt group (and its exact prompt) from its neighbors, as a
    test image's prompt is absent from the index; off measures a leaked, optimistic score."""
    exclude_similar: float = 0.8
    """With `exclude_own_group`: also leave out index prompts whose MiniLM target has at least
    this cosine to the image's own (near-duplicates, whatever table the index came from;
    `data prepare`'s default group threshold). 1.0: only groups and equal prompts."""
    write: bool = True
    """Write the chosen k and temperature into INDEX/model.json."""
    batch_size: int = 0
    """Images per CLIP forward pass (0: chosen for the model)."""
    precision: Precision = "auto"
    """CLIP image tower: auto (bf16 where native and checked against fp32), fp32 or bf16."""
    workers: int = -1
    """Threads decoding images beside the model; -1: one per core (at most 4)."""
    device: Device = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, ..."""

    def __post_init__(self) -> None:
        self.index, self.data = Path(self.index), Path(self.data)
        if self.oof is not None:
            self.oof = Path(self.oof)
            if self.oof.suffix.lower() != ".parquet":
                raise ConfigError(f"--oof must end in .parquet, got {self.oof.name!r}")
        if not self.k_grid or not self.temperature_grid:
            raise ConfigError("--k-grid and --temperature-grid need at least one value each")
        for k in self.k_grid:
            for temperature in self.temperature_grid:
                check_k_temperature(k, temperature)
        if self.batch_size < 0:
            raise ConfigError("--batch-size must be >= 1 (or 0: chosen for the model)")
        check_choices(self)
        refuse_precision("fp16", precision=self.precision)
        if not 0.0 < self.exclude_similar <= 1.0:
            raise ConfigError(f"--exclude-similar must be in (0, 1], got {self.exclude_similar}")
