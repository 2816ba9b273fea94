"""The bottom layers: one device resolver, one metric, and an import graph without circles."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import img2prompt
from img2prompt.device import resolve_device
from img2prompt.errors import ConfigError
from img2prompt.metrics import cosines, mean_cosine

PACKAGE = Path(img2prompt.__file__).parent


def test_resolve_device_auto_cpu_and_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device() == torch.device("cpu") == resolve_device("auto")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"^--device cuda: CUDA is not available"):
        resolve_device("cuda")  # named as the user wrote it, not as cuda:0
    with pytest.raises(ConfigError, match="nonsense"):
        resolve_device("nonsense")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")  # under torchrun each rank takes its own GPU
    assert resolve_device("auto") == torch.device("cuda:1") == resolve_device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")


def test_cosines_match_the_definition_for_numpy_and_torch():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 384)), rng.normal(size=(5, 384))
    expected = [x @ y / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(cosines(a, b, normalised=False), expected, rtol=1e-5)
    unit_a = a / np.linalg.norm(a, axis=1, keepdims=True)
    unit_b = b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(cosines(unit_a, unit_b), expected, rtol=1e-10)
    assert mean_cosine(unit_a, unit_b) == pytest.approx(np.mean(expected))
    got = cosines(torch.from_numpy(a), torch.from_numpy(b), normalised=False)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    assert mean_cosine(torch.from_numpy(unit_a), torch.from_numpy(unit_a)) == pytest.approx(1.0)


def _imports(path: Path) -> set[str]:
    """img2prompt modules a file imports (anywhere in it, lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    modules = {_module(p) for p in PACKAGE.rglob("*.py")}
    return {name for name in names if name in modules and name != "img2prompt"}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("name", ["errors", "io", "progress", "device", "metrics"])
def test_bottom_layers_import_nothing_else_from_img2prompt(name):
    assert _imports(PACKAGE / f"{name}.py") <= {"img2prompt.errors"}


def test_no_import_circles_in_the_package():
    graph = {_module(p): _imports(p) for p in PACKAGE.rglob("*.py")}
    graph = {m: {d for d in deps if d != m} for m, deps in graph.items()}

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for dep in graph.get(node, ()):
                if dep == start:
                    return [*path, dep]
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*path, dep]))
        return None

    cycles = [c for m in sorted(graph) if (c := cycle_from(m))]
    assert not cycles, " -> ".join(cycles[0])


def test_importing_the_package_and_the_bottom_layers_stays_light():
    # a fresh interpreter: `import img2prompt` must not pull torch, transformers or the models
    import subprocess

    code = (
        "import sys, img2prompt, img2prompt.device, img2prompt.errors;"
        "print(sorted(m for m in ('torch', 'transformers', 'img2prompt.models.model')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


LAYERS = (
    (
        *("errors", "io", "device", "int8", "metrics", "progress"),
        *("ranks", "registry", "fields", "results"),
    ),
    ("targets", "metadata"),
    ("data", "models"),
    ("text",),
    ("train", "predict", "index", "generate", "evaluate"),
    ("describer", "api", "<root>"),
    ("app", "__main__"),
)
"""The package's layers, lowest first: a module imports its own layer and those below it. The
app (command line, reports, server, demo, captions) is the top; the rest is the library."""
LAYER = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_layer():
    assert not {_unit(m) for m in _graph()} - set(LAYER)


def test_the_library_never_imports_the_app():
    into_app = sorted(
        f"{module} imports {name}"
        for module, names in _graph().items()
        if LAYER[_unit(module)] < LAYER["app"]
        for name in names
        if _unit(name) == "app"
    )
    assert not into_app


UPWARD_ALLOWED = 2
"""At most this many imports climb to a higher layer (lazy ones included)."""


def test_imports_climb_to_a_higher_layer_at_most_twice():
    upward = sorted(
        f"{module} imports {name}"
        for module, names in _graph().items()
        for name in names
        if LAYER[_unit(name)] > LAYER[_unit(module)]
    )
    assert len(upward) <= UPWARD_ALLOWED, upward


def test_every_model_kind_loads_through_its_own_registration(tmp_path):
    """`load_model` finds a kind's loader by the folder's `kind` (the package's entry points
    name the module that registers it); an unknown kind is refused naming the manifest."""
    from importlib import metadata

    from img2prompt.errors import InputError
    from img2prompt.models.model import default_model_dir, load_model, read_model_manifest
    from img2prompt.models.protocol import ENTRY_POINTS, PromptModel

    kinds = {entry.name: entry.value for entry in metadata.entry_points(group=ENTRY_POINTS)}
    assert kinds == {
        "trained": "img2prompt.models.model:load_trained_model",
        "retrieval": "img2prompt.index.model:load_retrieval_model",
        "captioner": "img2prompt.models.captioner:load_captioner",
    }
    model = load_model("default")
    assert isinstance(model, PromptModel) and model.kind == "trained"
    assert read_model_manifest(default_model_dir())["kind"] == "trained"  # folders say their kind
    folder = tmp_path / "odd-kind"
    folder.mkdir()
    manifest = {"format": "img2prompt-model", "format_version": 2, "kind": "hologram"}
    (folder / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"model.json: unknown model kind 'hologram' \(known: "):
        load_model(folder)


def test_describing_with_a_trained_model_imports_no_captioner_nor_the_compiler(small_bank):
    """Start-up is most of a one-image `describe`: a trained model's path must not import the
    captioner kind, nor torch's compiler (1.5 s of imports on a 2-core CPU)."""
    import subprocess

    code = (
        "import sys; from img2prompt.describer import Describer;"
        f"Describer('default', {str(small_bank)!r}, mode='fast');"
        "print(sorted(m for m in ('img2prompt.models.captioner', 'torch._dynamo')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


DESCRIBE_IMPORTS_NONE_OF = (
    "img2prompt.models.captioner",  # another model kind
    "torch._dynamo",  # torch's compiler: 1.5 s of imports on a 2-core CPU
    "transformers",  # MiniLM runs through targets/bert.py
    "sentence_transformers",
    "sklearn",
    "scipy",
    "pyarrow.dataset",  # pq.read_table's dataset layer: a bank's entries are one file
    "pyarrow.compute",
    "better_profanity",  # its import builds censor patterns; decoding reads its word list only
    "uvicorn",
    "fastapi",
    "faiss",  # a bank search of a few queries runs in torch (~0.05 s of imports)
)
"""Modules `describe one.png` does not use; each was once imported on its way (issue 35)."""


def test_describing_one_image_imports_only_what_it_uses(small_bank, tmp_path):
    """Start-up is most of `img2prompt describe one.png` (goal: <= 2.5 s on a 2-core CPU): the
    whole command, run in a fresh interpreter, imports none of `DESCRIBE_IMPORTS_NONE_OF`."""
    import subprocess

    from PIL import Image

    image = tmp_path / "one.png"
    Image.radial_gradient("L").convert("RGB").save(image)
    args = ["describe", str(image), "--bank", str(small_bank), "--mode", "fast"]
    args += ["--metadata", "ignore", "--json", "-q"]
    code = (
        "import sys; from img2prompt.app.cli import app;"
        f"app({args!r}, standalone_mode=False);"
        f"print(sorted(m for m in {DESCRIBE_IMPORTS_NONE_OF!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *described, imported = out.stdout.strip().splitlines()
    assert json.loads("\n".join(described))["results"][0]["prompt"]  # it did describe the image
    assert imported == "[]"
