"""Crash-safe writes: `atomic_path` and `atomic_dir` leave the old or the new, never neither."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from img2prompt.io import (
    atomic_dir,
    atomic_path,
    backup_dir,
    cache_folder,
    keep_copy,
    readable_dir,
    recover_dir,
)
from tiny_checkpoints import save_tiny_clip


def _files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_atomic_dir_replaces_a_folder_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
        (tmp / "only-old.txt").write_text("x")
    with atomic_dir(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        (tmp / "a.txt").write_text("new")
    assert _files(target) == {"a.txt": "new"}  # the new folder, not a merge
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_publishes_with_the_usual_permissions(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("x")
    assert (tmp_path / "out").stat().st_mode == plain.stat().st_mode  # not mkdtemp's 0700


def test_atomic_dir_keeps_the_old_folder_when_the_writer_fails(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("writer failed")
    assert _files(target) == {"a.txt": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_readers_read_a_lone_backup_and_rename_nothing(tmp_path):
    target = tmp_path / "folder"
    assert readable_dir(target) == target  # nothing there: the reader's own error names it
    backup = backup_dir(target)
    backup.mkdir()
    assert readable_dir(target) == backup and not target.exists()  # the last complete folder
    target.mkdir()
    assert readable_dir(target) == target and backup.exists()  # stale backup: a writer's job


def test_recover_dir_restores_a_lone_backup_and_drops_a_stale_one(tmp_path):
    target = tmp_path / "out"
    backup = backup_dir(target)
    backup.mkdir()
    (backup / "a.txt").write_text("old")
    recover_dir(target)  # cut off between the renames: only the backup is left
    assert _files(target) == {"a.txt": "old"} and not backup.exists()
    backup.mkdir()
    (backup / "a.txt").write_text("older")
    recover_dir(target)  # cut off after both renames: the backup is stale
    assert _files(target) == {"a.txt": "old"} and not backup.exists()


def test_cache_folders_follow_img2prompt_cache_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("IMG2PROMPT_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder("weights") == tmp_path / "mine" / "weights"
    monkeypatch.delenv("IMG2PROMPT_CACHE")
    assert cache_folder("banks") == tmp_path / "xdg" / "img2prompt" / "banks"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder("banks") == tmp_path / "home" / ".cache" / "img2prompt" / "banks"


def test_keep_copy_replaces_earlier_versions_and_never_fails(tmp_path, monkeypatch):
    """A kept copy is only a saving: the copies of earlier versions go, a writer that fails
    (a full or read-only folder) leaves nothing behind and raises nothing, other files stay."""
    (tmp_path / "copy-1.txt").write_text("old")
    (tmp_path / "other.txt").write_text("mine")
    keep_copy(tmp_path / "copy-2.txt", lambda tmp: tmp.write_text("new"), "copy-*.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy-2.txt", "other.txt"]
    assert (tmp_path / "copy-2.txt").read_text() == "new"

    class WriterError(Exception):  # as safetensors reports a full disk: not an OSError
        pass

    def full(tmp):
        tmp.write_text("cut")
        raise WriterError("I/O error: No space left on device (os error 28)")

    keep_copy(tmp_path / "copy-3.txt", full, "copy-*.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy-2.txt", "other.txt"]


def test_atomic_path_writes_whole_files_only(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert target.read_text() == "old"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


# The child saves a model over an existing one and SIGKILLs itself at one point of the save.
_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path

    import torch

    import img2prompt.io
    from img2prompt.models.model import ImageToPromptModel, ModelConfig, save_model

    clip, folder, kill_at = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    real_replace = os.replace

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def replace(src, dst):
        real_replace(src, dst)
        if kill_at == "old-aside" and Path(src) == folder:
            die()  # between the two renames: no folder at all at `folder`
        if kill_at == "new-in" and Path(dst) == folder:
            die()  # the new folder is in, the backup not yet deleted

    img2prompt.io.os.replace = replace
    if kill_at == "before-swap":  # the new folder is written, nothing renamed yet
        img2prompt.io.swap_dir = lambda new, path: die()
    torch.manual_seed(1)
    model = ImageToPromptModel(ModelConfig(f"hf-clip:{clip}"))
    save_model(model, folder, training={"version": "new"})
    """
)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "clip")


@pytest.mark.parametrize(
    ("kill_at", "survivor"), [("before-swap", "old"), ("old-aside", "old"), ("new-in", "new")]
)
def test_a_save_killed_at_the_swap_leaves_the_old_model_or_the_new(
    tmp_path, tiny_clip, kill_at, survivor
):
    import torch

    from img2prompt.models.model import ImageToPromptModel, ModelConfig, load_model, save_model

    folder = tmp_path / "model"
    torch.manual_seed(0)
    save_model(ImageToPromptModel(ModelConfig(f"hf-clip:{tiny_clip}")), folder, {"version": "old"})
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tiny_clip), str(folder), kill_at],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert load_model(folder).manifest["training"]["version"] == survivor
    # Reading renamed nothing (a reader must not race a writer): the backup is still aside.
    assert backup_dir(folder).exists() == (kill_at in ("old-aside", "new-in"))
    # and the next save over it works; no backup is left (the killed writer's own temporary
    # folder is, as any writer's could be in use)
    save_model(load_model(folder), folder, {"version": "third"})
    assert load_model(folder).manifest["training"]["version"] == "third"
    assert not backup_dir(folder).exists()
