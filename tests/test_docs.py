"""The documentation: the site builds with --strict (broken links and references fail), its
options page comes from the config dataclasses, the README is a front page whose links land,
and the wheel installs and works outside the repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_the_site_builds_strict_with_every_option(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    options = (tmp_path / "site" / "options" / "index.html").read_text(encoding="utf-8")
    from img2prompt.app.cli import COMMANDS
    from img2prompt.fields import specs

    for name, (cls, _) in COMMANDS.items():
        assert f"img2prompt {name}" in options, name
        for spec in specs(cls):
            if not spec.positional:
                assert spec.flags[0] in options, (name, spec.flags[0])
    api = (tmp_path / "site" / "python-api" / "index.html").read_text(encoding="utf-8")
    for name in ("load_model", "describe", "read_metadata", "Predictor"):
        assert name in api, name


def test_the_readme_is_a_front_page_whose_links_land():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert "make demo\nmake test" in text
    links = re.findall(r"\]\(([^)#]+)\)", text)
    local = [link for link in links if not link.startswith("http")]
    assert local and all((ROOT / link).is_file() for link in local), local


@pytest.mark.slow
def test_the_wheel_installs_and_works_outside_the_repository(tmp_path):
    """A wheel built from the checkout, installed into a fresh virtual environment that reaches
    the dependencies already installed here (not the checkout: its editable install is not
    seen), runs `describe` and loads the default model from another folder."""
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheel = next(tmp_path.glob("img2prompt-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies: this environment's site-packages, on the path but after the wheel.
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    from PIL import Image

    Image.new("RGB", (64, 48), (200, 120, 40)).save(elsewhere / "x.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    code = (
        "import img2prompt, pathlib; m = img2prompt.load_model('default');"
        "print(pathlib.Path(img2prompt.__file__).parent); print(m)"
    )
    loaded = subprocess.run(
        [str(python), "-c", code],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert str(venv) in loaded.stdout.splitlines()[0]  # the wheel, not the checkout
    cli = str(venv / "bin" / "img2prompt")
    (elsewhere / "phrases.txt").write_text("a red fox\na castle\nan orange square\nphoto\n")
    built = subprocess.run(
        [cli, "bank", "build", "phrases.txt", "--out", "bank", "-q"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    described = subprocess.run(
        [cli, "describe", "x.png", "--bank", "bank", "--mode", "fast", "--json", "-q"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert described.returncode == 0, described.stderr[-2000:]
    assert '"prompt": "' in described.stdout
    version = subprocess.run(
        [str(venv / "bin" / "img2prompt"), "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert version.stdout.startswith("img2prompt ")
