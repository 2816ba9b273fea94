"""One source per option: the config dataclasses define every option; the command line, its help,
recipes and the serve limits all come from them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import get_args

import pytest
import torch
import typer.main
from typer.testing import CliRunner

from img2prompt.app.cli import COMMANDS, app
from img2prompt.app.configs import DescribeConfig, ServeConfig, ServeLimits
from img2prompt.app.options import show_default
from img2prompt.device import Precision
from img2prompt.errors import ConfigError, InputError
from img2prompt.fields import build_options, load_options_file, specs
from img2prompt.generate.options import GenerateConfig
from img2prompt.index.options import IndexBuildConfig
from img2prompt.models.model import ImageToPromptModel
from img2prompt.models.options import ModelConfig
from img2prompt.text.options import DecodeOptions
from img2prompt.train.options import TrainConfig
from tiny_checkpoints import save_tiny_clip, save_tiny_convnext

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _help(name: str) -> str:
    result = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.replace("│", " ").replace("`", "").split())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_lists_every_field_with_its_default(name):
    """Every field of a command's config is an option (or argument) in its --help, with its
    docstring and the default the dataclass really uses."""
    cls, _ = COMMANDS[name]
    text = _help(name)
    for spec in specs(cls):
        if spec.positional:
            assert spec.name.upper() in text, (name, spec.key)
            continue
        assert spec.flags[0] in text, (name, spec.key)
        assert " ".join(spec.doc.replace("`", "").split()[:4]) in text, (name, spec.key)
        shown = show_default(spec)
        if shown is not None:
            assert f"[default: ({shown})]" in text or f"[default: {shown}]" in text, (
                name,
                spec.key,
                shown,
            )


def test_every_cli_field_has_a_docstring():
    for name, (cls, _) in COMMANDS.items():
        for spec in specs(cls):
            assert spec.doc, (name, spec.key)


def test_every_readme_option_spelling_is_accepted():
    """Each `--option` README.md and the manual (docs/) write is one of the commands' options
    (or a launcher's or benchmark's, listed)."""
    commands = typer.main.get_command(app).commands
    known: set[str] = {"--help", "--version"}
    for command in commands.values():
        for sub in getattr(command, "commands", {"": command}).values():
            for param in sub.params:
                known.update(param.opts + param.secondary_opts)
    # the changelog names the spellings that were removed
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    pages = [page for page in pages if page.name != "changelog.md"]
    readme = "\n".join(page.read_text() for page in pages)
    spelled = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*(?:\.[a-z][a-z0-9-]*)?", readme))
    # torchrun's; bench_decode.py's; bench_default_model.py's; gpu_check.py's
    not_options = {
        # torchrun's and SLURM's
        *("--nproc-per-node", "--nnodes", "--node-rank", "--rdzv-backend", "--rdzv-endpoint"),
        *("--nodes", "--ntasks-per-node", "--gpus-per-node", "--cpus-per-task"),
        # the benchmarks' (bench_decode, bench_embed, bench_predict, bench_startup, run_all)
        *("--repeats", "--no-big-bank", "--real-pairs", "--half", "--cache", "--quick"),
        *("--sweep", "--int8-vs-fp32", "--models", "--corpus", "--naive-images", "--against"),
        # pip's, in the GPU machine's one command
        *("--no-index", "--no-deps", "--no-cache-dir", "--upgrade", "--target"),
    }
    assert spelled - known - not_options == set()


@pytest.mark.parametrize("recipe", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_validates_and_builds(recipe, tmp_path):
    """Each configs/*.yaml is a valid TrainConfig once --data and --out are given, and its model
    builds and runs (hub ids swapped for tiny checkpoints of the same kind, sizes shrunk)."""
    values = load_options_file(recipe, TrainConfig)
    assert values["model.backbone"].startswith(("hf-clip:openai/", "hf-convnext:", "efficientnet"))
    cfg = build_options(TrainConfig, values | {"data": tmp_path, "out": tmp_path / "run"})
    assert isinstance(cfg.model, ModelConfig)
    tiny = {
        "hf-clip": str(save_tiny_clip(tmp_path / "clip")),
        "hf-convnext": str(save_tiny_convnext(tmp_path / "convnext")),
    }

    def substitute(spec: str | None) -> str | None:  # efficientnet-lite0 is offline as it is
        kind = spec.split(":")[0] if spec else None
        return f"{kind}:{tiny[kind]}" if kind in tiny else spec

    model_cfg = dataclasses.replace(
        cfg.model,
        backbone=substitute(cfg.model.backbone),
        style_backbone=substitute(cfg.model.style_backbone),
        head_options="hidden=64" if cfg.model.head == "mlp" else cfg.model.head_options,
    )
    model = ImageToPromptModel(model_cfg).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 384)


def test_recipes_take_flat_dotted_and_nested_keys(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text("backbone: tiny-clip\nhead: mlp\nencoder: my-encoder\nlp-epochs: 2\n")
    nested = tmp_path / "nested.yaml"
    nested.write_text(
        "model:\n  backbone: tiny-clip\n  head: mlp\n  target_encoder: my-encoder\nlp_epochs: 2\n"
    )
    dotted = tmp_path / "dotted.yaml"
    dotted.write_text(
        "model.backbone: tiny-clip\nmodel.head: mlp\nmodel.target-encoder: my-encoder\n"
        "lp_epochs: 2\n"
    )
    built = [
        build_options(TrainConfig, load_options_file(f, TrainConfig) | {"data": "d", "out": "o"})
        for f in (flat, nested, dotted)
    ]
    assert built[0] == built[1] == built[2]
    assert built[0].model == ModelConfig("tiny-clip", head="mlp", target_encoder="my-encoder")
    assert built[0].lp_epochs == 2 and built[0].epochs == 5


def test_command_line_options_win_over_the_config_file(tmp_path, monkeypatch):
    """`--config` (and train's `--recipe`) give values; options typed on the command line,
    flat or dotted, override them."""
    seen = []
    monkeypatch.setattr("img2prompt.train.loop.train", lambda cfg, progress: seen.append(cfg))
    monkeypatch.setattr("img2prompt.app.report.print_train_report", lambda report: None)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("backbone: tiny-clip\nhead: mlp\nlr: 0.5\nepochs: 3\n")
    for flag in ("--config", "--recipe"):
        args = [
            "train",
            flag,
            str(recipe),
            "--data",
            "d",
            "--out",
            "o",
            "--lr",
            "0.25",
            "--model.head",
            "linear",
            "--no-cache-features",
        ]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    for cfg in seen:
        assert cfg.lr == 0.25 and cfg.epochs == 3 and cfg.model.head == "linear"
        assert cfg.cache_features is False and cfg.model.backbone == "tiny-clip"
    assert len(seen) == 2


def test_precision_is_one_vocabulary():
    """generate, predict and decoding share one `Precision`; generate takes fp16 (the bug that
    a second, shadowing enum caused), prediction refuses it with a reason; train also takes
    Lightning's own names, mapped in one place."""
    assert GenerateConfig("p", "o", precision="fp16").precision == "fp16"
    for name in ("generate", "predict", "describe"):
        choices = [
            p
            for p in typer.main.get_command(app).commands[name].params
            if p.name.endswith("precision")
        ]
        assert choices and all(
            get_args(p.type_descriptor.annotation) == get_args(Precision) for p in choices
        ), name
    result = runner.invoke(app, ["predict", "default", "x.png", "--precision", "fp16"])
    assert result.exit_code == 2 and "fp16 is not offered here" in result.output
    with pytest.raises(ValueError, match="fp16"):
        DecodeOptions(search_precision="fp16")
    from img2prompt.train.loop import _precision

    assert [_precision(p) for p in ("fp32", "bf16", "fp16", "bf16-true")] == [
        "32-true",
        "bf16-mixed",
        "16-mixed",
        "bf16-true",
    ]


def test_train_refuses_strategies_it_cannot_run():
    with pytest.raises(ValueError, match=r"fsdp.*not supported"):
        TrainConfig.of(data="d", out="o", backbone="tiny-clip", strategy="fsdp")
    result = runner.invoke(
        app, ["train", "--data", "d", "--out", "o", "--backbone", "x", "--strategy", "fsdp"]
    )
    assert result.exit_code == 2


def test_serve_limits_have_one_definition(monkeypatch):
    """serve's options, the app's defaults and the upload decoder's default all read
    ServeLimits."""
    from fastapi.testclient import TestClient

    from img2prompt.app.serve.app import create_app
    from img2prompt.describer import Describer

    limits = ServeLimits()
    assert (limits.max_upload_mb, limits.max_pixels, limits.max_batch, limits.max_pending) == (
        20.0,
        64_000_000,
        8,
        64,
    )

    class Stub:  # an UploadDescriber
        model_name, bank_name, mode, bank_entries = "stub", "none", "fast", 0

        def describe_uploads(self, uploads, max_pixels):
            return []

    with TestClient(create_app(Stub())) as client:
        health = client.get("/api/health").json()
    assert health["max_upload_mb"] == limits.max_upload_mb
    assert health["max_pixels"] == limits.max_pixels
    with TestClient(create_app(Stub(), max_megapixels=2)) as client:
        assert client.get("/api/health").json()["max_pixels"] == 2_000_000
    import inspect

    default = inspect.signature(Describer.describe_uploads).parameters["max_pixels"].default
    assert default is None  # None: ServeLimits().max_pixels
    serve_defaults = {s.key: s.default for s in specs(ServeConfig)}
    for f in dataclasses.fields(ServeLimits):
        assert serve_defaults[f"limits.{f.name}"] == getattr(limits, f.name)


def test_each_option_has_one_spelling(tmp_path, monkeypatch):
    """Nothing is released, so a renamed option keeps no old spelling: `index build --approx`
    (now `--search`), `--neighbours`, `--head-hidden` and their recipe keys are refused, naming
    what is known, and `--search` works."""
    seen = []
    monkeypatch.setattr(
        "img2prompt.index.build.build_index", lambda cfg, progress: seen.append(cfg)
    )
    monkeypatch.setattr("img2prompt.app.report.index_build_summary", lambda report: "")
    base = ["index", "build", "p.parquet", "--clip", "c", "--out", "o"]
    assert runner.invoke(app, [*base, "--search", "ivf"]).exit_code == 0
    assert [cfg.retrieval.search for cfg in seen] == ["ivf"]
    old = runner.invoke(app, [*base, "--approx", "hnsw"])
    assert old.exit_code == 2 and "No such option: --approx" in old.output
    for command, flag in (("describe", "--neighbours"), ("train", "--head-hidden")):
        result = runner.invoke(app, [command, "x", flag, "3"])
        assert result.exit_code == 2 and f"No such option: {flag}" in result.output
    recipe = tmp_path / "r.yaml"
    recipe.write_text("approx: hnsw\n")
    with pytest.raises(InputError, match=r"r.yaml: unknown keys \['approx'\]; known: .*search"):
        load_options_file(recipe, IndexBuildConfig)
    with pytest.raises(ConfigError, match=r"unknown keys \['decode.neighbours'\]"):
        build_options(DescribeConfig, {"images": ["x.png"], "decode": {"neighbours": 2}})
    from img2prompt.text.decode import Decoded

    assert not hasattr(Decoded("a cat", 0.5, ["a cat"], []), "score")
