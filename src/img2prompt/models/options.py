"""The options of a model's architecture (saved in model.json) and of `push`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from img2prompt.errors import ConfigError
from img2prompt.fields import POSITIONAL, check_choices
from img2prompt.targets.encoder import DEFAULT_ENCODER

BackboneWeights = Literal["saved", "pretrained"]


@dataclass
class ModelConfig:
    """The architecture; saved in model.json, so prediction rebuilds it with no training code."""

    backbone: str
    """hf-clip:openai/clip-vit-large-patch14 (or -336, or a folder), hf-convnext:ID_OR_DIR,
    efficientnet-lite0 (offline ImageNet), tiny-clip, tiny-convnext, timm:NAME,
    open-clip:ARCH/TAG."""
    head: str = "linear"
    """A registered head (`models/heads.py`): `linear` (Xavier init), `mlp` (Linear -> BatchNorm
    -> ReLU -> Linear) or `class-mixture` (zero-shot through a classifier; not trainable)."""
    head_options: str = ""
    """The head's own settings as `key=value,...`, so each head brings its options without a
    flag of its own: `hidden=4096` narrows `mlp` (default 16384). Every head's options and
    defaults are listed in docs/options.md."""
    pool: str = "default"
    """A registered pooling (`models/pooling.py`): `default` (the backbone's own, CLS for CLIP)
    or `gem` (GeM over patch tokens)."""
    pool_options: str = ""
    """The pooling's own settings as `key=value,...`: `p=3` is GeM's exponent (default 2, as
    the Secu-Layer solution's). Listed in docs/options.md."""
    style_backbone: str | None = None
    """A frozen backbone whose pooled features are concatenated (the ConvNeXt style extractor,
    e.g. hf-convnext:ID)."""
    out_dim: int = field(default=384, metadata={"cli": False})
    """Size of the target embedding (all-MiniLM-L6-v2: 384)."""
    target_encoder: str = field(default=DEFAULT_ENCODER, metadata={"flat": "encoder"})
    """The sentence encoder whose space the model predicts (MixGen embeds joined prompts with
    it)."""
    backbone_weights: BackboneWeights = field(default="saved", metadata={"cli": False})
    """`saved`: model.safetensors holds every weight. `pretrained`: the backbone keeps its
    factory's pretrained weights (installed by a package, e.g. efficientnet-lite0) and the file
    holds only the rest, so the folder stays small; fine-tuning such a backbone needs `saved`."""

    def __post_init__(self) -> None:
        # The registries are the source of the names and of each entry's options.
        from img2prompt.models.heads import HEADS
        from img2prompt.models.pooling import POOLS
        from img2prompt.registry import format_options

        for flag, name, registry in (("head", self.head, HEADS), ("pool", self.pool, POOLS)):
            if name not in registry:
                known = ", ".join(registry.names())
                raise ConfigError(f"--{flag} must be one of {known}, got {name!r}")
        # Bad options fail here, before any work. They are kept as resolved (`p=3` -> `p=3.0`),
        # so equal settings compare equal (a resumed run) and model.json says what was built.
        head_options = HEADS.resolve(self.head, self.head_options, "--head-options")
        pool_options = POOLS.resolve(self.pool, self.pool_options, "--pool-options")
        self.head_options, self.pool_options = map(format_options, (head_options, pool_options))
        check_choices(self)
        if self.out_dim < 1:
            raise ConfigError(f"the output size must be >= 1, got {self.out_dim}")

    def to_dict(self) -> dict[str, object]:
        """The settings as model.json keeps them."""
        return asdict(self)


@dataclass
class PushConfig:
    model: Path = field(metadata=POSITIONAL)
    """A model folder (e.g. RUN/model)."""
    repo: str = field(metadata=POSITIONAL)
    """Hugging Face Hub repository: owner/name."""
    private: bool = False
    """Create the repository as private."""
    revision: str | None = None
    """Branch to push to (created if missing)."""


@dataclass
class GenerationOptions:
    """How a captioner writes its candidate prompts (saved in its model.json)."""

    task_prompt: str = ""
    """What the captioner is asked; empty: its family's own (`models/captioner.py` FAMILIES:
    Florence-2 `<MORE_DETAILED_CAPTION>`, BLIP none, chat VLMs an instruction). PromptGen
    Florence-2 models take `<GENERATE_TAGS>` or `<MIXED_CAPTION>`."""
    candidates: int = 4
    """Candidate prompts per image (beams, or samples with --sampling); a judge reranks them."""
    max_new_tokens: int = 77
    """Longest candidate, in the captioner's tokens."""
    sampling: bool = False
    """Sample the candidates (seeded) instead of beam search."""
    temperature: float = 0.7
    """Sampling temperature (with --sampling)."""
    top_p: float = 0.9
    """Nucleus sampling's probability mass (with --sampling)."""
    seed: int = 0
    """Seed of the sampling: the same images and seed give the same candidates."""

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.max_new_tokens < 1:
            raise ConfigError("--candidates and --max-new-tokens must be >= 1")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ConfigError("need --temperature > 0 and 0 < --top-p <= 1")


@dataclass
class CaptionerMakeConfig:
    source: str = field(metadata=POSITIONAL)
    """A transformers image-text-to-text checkpoint: `hf:owner/repo[@revision]` or a folder
    (or a captioner folder, to remake it with other settings)."""
    out: Path = field(default=Path("captioner"))
    """The captioner folder to write (model.json + the checkpoint in OUT/captioner)."""
    image_size: int = 0
    """Side of the square image the captioner sees; 0: its family's or its processor's."""
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    """Generation (spelled flat: `--task-prompt`, `--candidates`, `--max-new-tokens`...)."""

    def __post_init__(self) -> None:
        if not self.source:
            raise ConfigError("give the checkpoint: hf:owner/repo or a folder")
        if self.image_size < 0:
            raise ConfigError("--image-size must be >= 0")
