"""The `img2prompt` command: a table of commands, each a config class (an `options.py` beside
its code, where every option, its default, choices and help are defined once) and a run
function; printing lives in `report.py`. The options are generated from the class
(`app/options.py`); heavy imports happen inside the run functions, so `img2prompt --help`
answers at once."""

from __future__ import annotations

import shutil
import warnings

import typer

from img2prompt.app.configs import DemoConfig, DescribeConfig, MetadataConfig, ServeConfig
from img2prompt.app.options import command
from img2prompt.app.startup import exit_now, finishing, pause_collector, started
from img2prompt.data.options import PrepareConfig
from img2prompt.generate.options import GenerateConfig
from img2prompt.index.options import IndexBuildConfig, IndexTuneConfig
from img2prompt.models.options import CaptionerMakeConfig, PushConfig
from img2prompt.predict.options import (
    EnsembleApplyConfig,
    EnsembleFitConfig,
    EvaluateConfig,
    PredictConfig,
    SubmissionCheckConfig,
)
from img2prompt.progress import stderr
from img2prompt.text.options import BankAddConfig, BankBuildConfig, DecodeConfig
from img2prompt.train.options import TrainConfig

# Rich's help is a four-column table (option, its --no- form, type, help); under ~110 columns
# the help column shrinks to a word or two a line, so narrower terminals get click's plain
# two-column help.
HELP_MARKUP = "markdown" if shutil.get_terminal_size().columns >= 110 else None
HELP_WIDTH = {"max_content_width": 120}
"""Plain help uses the terminal's width up to this (click stops at 80 by default)."""

app = typer.Typer(
    help="Recover the prompt behind a Stable Diffusion image.\n\n"
    "The pipeline: `data prepare` turns prompt corpora into a clean, de-duplicated, embedded "
    "training table (targets are all-MiniLM-L6-v2 vectors, the Kaggle metric's space); "
    "`generate` draws Stable Diffusion images for its prompts; `train` learns image -> vector; "
    "`bank build` and `decode` turn such a vector back into a readable prompt.",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
    pretty_exceptions_enable=False,
    context_settings=HELP_WIDTH,
)
GROUPS = {
    "data": "Prompt data: prepare training tables from corpora.",
    "bank": "Prompt banks: phrases with their vectors, for turning embeddings into readable "
    "prompts.",
    "submission": "Kaggle submission files.",
    "ensemble": "Ensembles: weights learned on out-of-fold predictions, applied to new "
    "predictions.",
    "index": "Training-free CLIP path: a prompt index searched by CLIP image-text similarity; "
    "the index folder is a model every command takes.",
    "captioner": "Vision-language captioners (Florence-2, BLIP, Qwen-VL...) as models: they "
    "write candidate prompts, a judge model reranks them in MiniLM space.",
}


def _print_version(value: bool) -> None:
    if value:
        from img2prompt import __version__

        typer.echo(f"img2prompt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Recover the prompt behind a Stable Diffusion image."""


# --- run functions: a config in, a report printed -----------------------------------------------


def data_prepare(cfg: PrepareConfig, quiet: bool) -> None:
    """Clean, filter, embed, de-duplicate and fold prompt corpora into `OUT/prompts.parquet`.

    Steps: read → clean (NFKC, markup like `(word:1.3)` and `((word))` reduced to words) →
    word-count and Latin-script filters → exact duplicates → MiniLM targets (cached, resumable) →
    near-duplicate filter (FAISS) → group K-folds. Every step prints what it removed."""
    from img2prompt.app.report import print_prepare_report
    from img2prompt.data.prepare import prepare

    print_prepare_report(prepare(cfg, progress=not quiet), cfg.out)


def train(cfg: TrainConfig, quiet: bool) -> None:
    """Train an image -> prompt-embedding model; writes `OUT/model/` (a model folder).

    Recipes in `configs/` reproduce the winning solutions (`--recipe configs/first-place.yaml
    --data DIR --out RUN`; options given here override the recipe). LP-FT: `--lp-epochs 2
    --epochs 3`. K-fold with out-of-fold predictions: `--fold all`. Several GPUs: `--devices 4
    --strategy ddp`. Interrupted? Run the same command with `--resume`."""
    from img2prompt.app.report import print_train_report
    from img2prompt.train.loop import train as run_train

    print_train_report(run_train(cfg, progress=not quiet))


def generate(cfg: GenerateConfig, quiet: bool) -> None:
    """Draw Stable Diffusion images for a prompts table: resumable, sharded, several GPUs.

    Kill it at any time and run the same command again: it goes on where it stopped, and the
    result is the same as an uninterrupted run. Several GPUs or machines: `torchrun
    --nproc-per-node 8 -m img2prompt generate ...` (or `accelerate launch`) splits the shards by
    rank. `OUT/images.parquet` (one row per image: id, prompt_id, prompt, seed, settings, image
    path relative to OUT, and target/group/fold when the prompts table has them) goes to `data
    prepare` or training as it is."""
    from img2prompt.app.report import print_generate_report
    from img2prompt.generate.run import generate as run_generate

    print_generate_report(run_generate(cfg, progress=not quiet))


def bank_build(cfg: BankBuildConfig, quiet: bool) -> None:
    """Embed phrases into a prompt bank: entries.parquet + embeddings.npy + manifest.json."""
    from img2prompt.app.report import print_bank_report
    from img2prompt.targets.encoder import load_encoder
    from img2prompt.text.bank import build_bank

    report = build_bank(
        cfg.inputs,
        cfg.out,
        load_encoder(cfg.encoder, cfg.embed.device),
        words=cfg.words,
        min_word_count=cfg.min_word_count,
        batch_size=cfg.embed.batch_size,
        cache_dir=cfg.embed.cache_dir,
        progress=not quiet,
        vocabulary=cfg.vocabulary,
        templates=cfg.templates,
    )
    print_bank_report(report)


def bank_add(cfg: BankAddConfig, quiet: bool) -> None:
    """Add entries to a bank; what is there keeps its vectors and is not embedded again."""
    from img2prompt.targets.encoder import load_encoder
    from img2prompt.text.bank import add_to_bank, read_bank_manifest

    encoder = load_encoder(read_bank_manifest(cfg.bank)["encoder"]["spec"], cfg.embed.device)
    report = add_to_bank(
        cfg.bank,
        cfg.inputs,
        encoder,
        batch_size=cfg.embed.batch_size,
        cache_dir=cfg.embed.cache_dir,
        progress=not quiet,
    )
    from img2prompt.app.report import print_bank_report

    print_bank_report(report)


def decode(cfg: DecodeConfig, quiet: bool) -> None:
    """Turn embeddings into readable prompts: one prompt per line on stdout, each with its match
    (cosine of the prompt's own embedding to the target) on stderr."""
    from img2prompt.app.report import print_decode_matches
    from img2prompt.text.run import run_decode

    result = run_decode(cfg, progress=not quiet)
    for decoded in result.decoded:
        typer.echo(decoded.prompt)
    if not quiet:
        print_decode_matches(result, cfg.out)


def predict(cfg: PredictConfig, quiet: bool) -> None:
    """Predict the prompt embedding of every image: batched, in input order, bf16 where it is
    safe. Unreadable images are listed with their reason and left out; the exit code is 1 when
    there were any (unless --skip-bad). With neither --out nor --submission: predictions.parquet.

    Interrupted? Run the same command again: finished rows are saved in OUT.partial/ as the job
    goes, and only the rest is predicted."""
    from img2prompt.app.report import print_failures, print_predict_summary
    from img2prompt.predict.run import run_predict

    predictor, result = run_predict(
        cfg.model,
        cfg.images,
        cfg.options,
        out=cfg.out,
        submission=cfg.submission,
        progress=not quiet,
        restart=cfg.restart,
    )
    print_predict_summary(predictor, result, [p for p in (cfg.out, cfg.submission) if p])
    if not result.wrote:  # another rank joins the shares and writes the files
        return
    print_failures(result.failures)
    if result.failures and not cfg.skip_bad:
        raise typer.Exit(1)


def evaluate(cfg: EvaluateConfig) -> None:
    """Mean cosine to the true prompt embeddings (the competition metric), per fold and source,
    and the worst images."""
    from img2prompt.app.report import print_evaluation
    from img2prompt.evaluate import evaluate as run_evaluate
    from img2prompt.evaluate import write_report

    result = run_evaluate(cfg.predictions, cfg.truth, cfg.strict)
    folder = cfg.report or cfg.predictions.with_name(cfg.predictions.stem + "-evaluation")
    report_path, histogram = write_report(result, folder)
    print_evaluation(result, cfg.truth)
    stderr.print(f"wrote {report_path} and {histogram}", highlight=False)


def submission_check(cfg: SubmissionCheckConfig) -> None:
    """Check a submission before uploading it: header, ids, eId order, count, finite values,
    duplicates, and (with --sample) the image ids and their order. Exit code 1 on any problem."""
    from img2prompt.app.report import print_submission_check
    from img2prompt.predict.check import check_submission

    check = check_submission(cfg.file, cfg.sample, cfg.truth, cfg.dim)
    print_submission_check(check, cfg.file)
    if not check.ok:
        raise typer.Exit(1)


def ensemble_fit(cfg: EnsembleFitConfig) -> None:
    """Learn non-negative member weights that maximise mean cosine on out-of-fold predictions."""
    from img2prompt.predict.ensemble import fit_ensemble, save_weights
    from img2prompt.predict.tables import read_predictions, read_truth

    members = [read_predictions(path) for path in cfg.oof]
    result = fit_ensemble(members, read_truth(cfg.truth))
    save_weights(result, cfg.out)
    from img2prompt.app.report import print_ensemble_fit

    print_ensemble_fit(result, cfg.out)


def ensemble_apply(cfg: EnsembleApplyConfig) -> None:
    """Blend prediction files (one per member, same images) with fitted weights."""
    from img2prompt.predict.ensemble import apply_ensemble, load_weights
    from img2prompt.predict.submission import write_submission
    from img2prompt.predict.tables import image_keys, read_predictions, write_predictions

    members = [read_predictions(path) for path in cfg.predictions]
    images, blended = members[0].images, apply_ensemble(load_weights(cfg.weights), members)
    if cfg.out is not None:
        write_predictions(cfg.out, images, blended)
    if cfg.submission is not None:
        write_submission(cfg.submission, image_keys(images), blended)
    written = "".join(f"; wrote {p}" for p in (cfg.out, cfg.submission) if p)
    stderr.print(f"blended {len(images):,} images{written}", highlight=False)


def describe(cfg: DescribeConfig, quiet: bool) -> None:
    """Describe images: the prompt behind each. A file that carries its prompt (A1111, ComfyUI,
    InvokeAI, NovelAI, Fooocus, SwarmUI metadata) is answered with it (`source: metadata`), the
    model's own prompt beside it; other images get the model's readable prompt (predict +
    decode). `--metadata ignore` reads pixels only; `--metadata only` loads no model.
    match = cosine of the model's prompt's own MiniLM vector to the predicted embedding: how
    well the words say the prediction, NOT how close it is to the true prompt.

    Captions for LoRA training: `describe DIR --sidecar txt [--prefix "trigger, "]` writes
    IMAGE.txt beside each image (existing ones kept unless --overwrite, so a rerun goes on
    where an interrupted one stopped). Unreadable images are listed with their reason; the exit
    code is 1 when there were any (unless --skip-bad and at least one image was described)."""
    from img2prompt.text.strategies import check_mode

    check_mode(cfg.decode.mode)  # a typo fails before anything loads, even where unused
    if cfg.sidecar != "none":
        started()  # (the model loads only for images without a prompt of their own, if any)
        _describe_captions(cfg, quiet)
        return
    from img2prompt.app.report import print_describe_run
    from img2prompt.describer import describe_metadata_only, descriptions_json, write_descriptions

    if cfg.metadata == "only":
        started()
        result = describe_metadata_only(cfg.images, progress=not quiet)
    else:
        describer = _load_describer(cfg, metadata=cfg.metadata, progress=not quiet)
        result = describer.describe_files(cfg.images, progress=not quiet)
    body = descriptions_json(result) if cfg.json or cfg.out is not None else None
    if cfg.out is not None:
        write_descriptions(result, cfg.out, body)
    how = "embedded prompts only" if cfg.metadata == "only" else f"{cfg.decode.mode} decoding"
    print_describe_run(
        result, json_body=body if cfg.json else None, how=how, out=cfg.out, quiet=quiet
    )
    if result.failures and not (cfg.skip_bad and result.descriptions):
        raise typer.Exit(1)


def _load_describer(cfg: DescribeConfig | ServeConfig, *, metadata: str, progress: bool):
    """The `Describer` a command's model, bank, predict and decode options name; loading it
    ends the command's start (`startup.started`)."""
    from img2prompt.describer import Describer

    describer = Describer(
        cfg.model,
        cfg.bank,
        predict_options=cfg.predict,
        decode_options=cfg.decode,
        progress=progress,
        metadata=metadata,
        judge=cfg.judge or None,
    )
    started()
    return describer


def _describe_captions(cfg: DescribeConfig, quiet: bool) -> None:
    """`describe --sidecar`: captions beside the images (`captions.write_captions`)."""
    from img2prompt.app.captions import write_captions
    from img2prompt.app.report import print_caption_run

    run = write_captions(
        cfg.images,
        cfg.sidecar,
        lambda: _load_describer(cfg, metadata="ignore", progress=False),
        metadata=cfg.metadata,
        prefix=cfg.prefix,
        overwrite=cfg.overwrite,
        progress=not quiet,
        keep_markup=cfg.keep_markup,
    )
    print_caption_run(run, cfg.sidecar)
    written = run.from_metadata + run.from_model
    if run.failures and not (cfg.skip_bad and (written or run.kept)):
        raise typer.Exit(1)


def metadata(cfg: MetadataConfig, quiet: bool) -> None:
    """The generation metadata embedded in Stable Diffusion files: prompt, negative prompt,
    generator, settings (model and hash, sampler, steps, CFG, seed, size) and every sampling
    pass. The prompt is the base pass's: the first sampler that starts from noise; hires,
    refiner and detailer passes are listed under `passes`. Reads AUTOMATIC1111, Forge, reForge
    and SD.Next (PNG text, JPEG/WebP EXIF, stealth pixels), ComfyUI (PNG chunks, WebP EXIF,
    GIF comments, MP4/WebM headers named directly), InvokeAI (3 formats), NovelAI, Fooocus,
    SwarmUI, Easy Diffusion and Draw Things. A prompt made at run time (wildcards, LLM or reader
    nodes) is `null`, with a `note` and its literal `candidates`. A file without metadata has
    `prompt: null`; broken metadata is reported in `error`, never fatal. `--json`: one object
    a line, in input order."""
    from img2prompt.app.report import print_metadata_run
    from img2prompt.data.images import scan_images
    from img2prompt.metadata import GenerationMetadata, read_metadata
    from img2prompt.progress import progress_bar

    missing = [path for path in cfg.files if not path.exists()]
    search = scan_images([path for path in cfg.files if path.exists()])
    results = []
    with progress_bar("metadata", len(search.images), not quiet) as bar:
        for path in search.images:
            results.append(read_metadata(path))
            bar.advance()
    results += [GenerationMetadata(str(path), error="no such file or folder") for path in missing]
    print_metadata_run(results, search, as_json=cfg.json, quiet=quiet)
    if missing:
        raise typer.Exit(1)


def serve(cfg: ServeConfig) -> None:
    """Serve the web page (`/`) and the HTTP API (`POST /api/describe`, `GET /api/health`,
    OpenAPI at `/docs`). The model and the bank are loaded once, before the server starts."""
    import uvicorn

    from img2prompt.app.serve.app import create_app
    from img2prompt.text.strategies import check_mode

    check_mode(cfg.decode.mode)
    stderr.print(f"loading model {cfg.model!r} and bank {cfg.bank!r} ...", highlight=False)
    describer = _load_describer(cfg, metadata="auto", progress=False)
    app_ = create_app(describer, cfg.limits, metadata=cfg.metadata)
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        stderr.print(
            f"[yellow]warning:[/] listening on {cfg.host}: anyone who can reach it can use it",
            highlight=False,
        )
    stderr.print(f"img2prompt on http://{cfg.host}:{cfg.port}/  (Ctrl+C stops it)", highlight=False)
    uvicorn.run(app_, host=cfg.host, port=cfg.port, log_level=cfg.log_level, timeout_keep_alive=5)


def demo(cfg: DemoConfig) -> None:
    """The main job on embedded defaults, nothing to download: the default model and prompt
    bank describe example photographs (and the competition's sample images beside their true
    prompts, when ../shared/data/kaggle_sample is there); then the data stage on shipped
    prompts."""
    from img2prompt.app.demo import run_demo
    from img2prompt.text.strategies import check_mode

    check_mode(cfg.mode)
    run_demo(cfg.out, mode=cfg.mode)


def index_build(cfg: IndexBuildConfig, quiet: bool) -> None:
    """Embed a prepared table's prompts with CLIP's text tower into a FAISS index (CLIP weights
    copied in): `predict INDEX`, `describe --model INDEX` and `serve --model INDEX` then predict
    softmax(cosine / T)-weighted means of the k nearest prompts' targets. Interrupted? Run the
    same command again: finished chunks in OUT.partial/ are kept."""
    from img2prompt.app.report import index_build_summary
    from img2prompt.index.build import build_index

    stderr.print(index_build_summary(build_index(cfg, progress=not quiet)), highlight=False)


def index_tune(cfg: IndexTuneConfig, quiet: bool) -> None:
    """Choose k and the temperature by mean cosine on a prepared image table, each image's own
    prompt group left out of its neighbors (a test image's prompt is not in the index); writes
    them into INDEX/model.json and the out-of-fold predictions for `ensemble fit`."""
    from img2prompt.app.report import print_tuning
    from img2prompt.index.tune import tune_index

    print_tuning(tune_index(cfg, progress=not quiet))


def captioner_make(cfg: CaptionerMakeConfig) -> None:
    """Make a captioner folder from a transformers image-text-to-text checkpoint (hf:owner/repo
    or a folder; copied in, so the folder works offline): `predict`, `describe --model`,
    `serve --model`, `ensemble` and `img2prompt.load_model` then take it like any model.
    The task prompt is the family's own (Florence-2 `<MORE_DETAILED_CAPTION>`, BLIP none, chat
    VLMs an instruction) unless `--task-prompt` gives one; model.json records it."""
    from img2prompt.models.captioner import make_captioner

    out, settings = make_captioner(cfg)
    prompt = settings.task_prompt or "(none: plain captioning)"
    stderr.print(
        f"wrote {out}: {settings.model_type} captioner, task prompt {prompt!r}, "
        f"{settings.candidates} candidates, {settings.image_size}px",
        highlight=False,
        markup=False,
    )


def push(cfg: PushConfig) -> None:
    """Upload a model folder to the Hugging Face Hub; then `hf:owner/name` loads it anywhere a
    model is taken (predict, describe, serve, `img2prompt.load_model`)."""
    from img2prompt.models.model import push_model

    url = push_model(cfg.model, cfg.repo, private=cfg.private, revision=cfg.revision)
    stderr.print(f"pushed {cfg.model} to {cfg.repo}: {url}", highlight=False)


# --- the command table ---------------------------------------------------------------------------

COMMANDS = {  # name: (config class, run function); a run function with `quiet` gets -q
    "data prepare": (PrepareConfig, data_prepare),
    "generate": (GenerateConfig, generate),
    "train": (TrainConfig, train),
    "predict": (PredictConfig, predict),
    "evaluate": (EvaluateConfig, evaluate),
    "submission check": (SubmissionCheckConfig, submission_check),
    "ensemble fit": (EnsembleFitConfig, ensemble_fit),
    "ensemble apply": (EnsembleApplyConfig, ensemble_apply),
    "bank build": (BankBuildConfig, bank_build),
    "bank add": (BankAddConfig, bank_add),
    "decode": (DecodeConfig, decode),
    "describe": (DescribeConfig, describe),
    "metadata": (MetadataConfig, metadata),
    "serve": (ServeConfig, serve),
    "demo": (DemoConfig, demo),
    "index build": (IndexBuildConfig, index_build),
    "index tune": (IndexTuneConfig, index_tune),
    "push": (PushConfig, push),
    "captioner make": (CaptionerMakeConfig, captioner_make),
}
CONFIG_FLAGS = {"train": ("--config", "--recipe")}  # README's `train --recipe` spelling
STARTS_ITSELF = {"describe", "serve"}
"""Commands that end their start themselves (`startup.started`, once their model and bank are
loaded); the others run with the garbage collector on, as it was."""


def _register() -> None:
    import inspect

    groups: dict[str, typer.Typer] = {}
    for name, (cls, run) in COMMANDS.items():
        quiet = "quiet" in inspect.signature(run).parameters
        function = command(
            cls,
            run,
            doc=run.__doc__ or "",
            quiet=quiet,
            config_flags=CONFIG_FLAGS.get(name, ("--config",)),
            starts_itself=name in STARTS_ITSELF,
        )
        *group, leaf = name.split()
        target = app
        if group:
            if group[0] not in groups:
                groups[group[0]] = typer.Typer(
                    help=GROUPS[group[0]],
                    no_args_is_help=True,
                    rich_markup_mode=HELP_MARKUP,
                    context_settings=HELP_WIDTH,
                )
                app.add_typer(groups[group[0]], name=group[0])
            target = groups[group[0]]
        target.command(leaf, context_settings=HELP_WIDTH)(function)


_register()


def main() -> None:
    """The `img2prompt` command (the console script and `python -m img2prompt`): the garbage
    collector waits while the command starts, and the process ends without the interpreter's
    teardown (`startup`: ~0.45 s of `describe one.png` on a 2-core CPU). Pillow's warnings
    about a file's insides ("Corrupt EXIF data", "Truncated File Read") are not shown: the
    command names each file it could not use, and why."""
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    pause_collector()
    try:
        app()
    except SystemExit as done:  # how every command ends, `app` being a click command
        exit_now(done)
    finally:
        finishing()


__all__ = ["COMMANDS", "app", "main"]
