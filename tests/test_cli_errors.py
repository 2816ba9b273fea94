"""Only the user's mistakes (InputError, ConfigError) become `error: ...` and exit code 2; any
other exception is a bug and keeps its traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import img2prompt.evaluate
from img2prompt.app.cli import app

runner = CliRunner()


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    return lines[0]


def test_a_bad_input_file_exits_2_with_one_line(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "none.parquet"), "--truth", "x"])
    assert result.exit_code == 2
    assert "none.parquet: no such prediction file" in _one_error_line(result.output)


def test_a_bad_setting_exits_2_with_one_line(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    result = runner.invoke(app, ["predict", "default", str(image), "--out", "preds.csv"])
    assert result.exit_code == 2, result.output
    assert "--out must end in .parquet" in _one_error_line(result.output)


def test_out_of_range_predict_options_are_settings(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    for flags, said in (
        (["--workers", "-5"], "--workers must be >= 0 (or -1: one per CPU core), got -5"),
        (["--max-pixels", "0"], "--max-pixels must be >= 1, got 0"),
    ):
        result = runner.invoke(app, ["predict", "default", str(image), *flags])
        assert result.exit_code == 2, result.output
        assert f"Invalid value: {said}" in result.output  # a usage error, before any loading


def test_bad_recipe_keys_and_option_values_are_settings(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("backbone: tiny-clip\nepoch: 3\n")
    result = runner.invoke(app, ["train", "--recipe", str(recipe)])
    assert result.exit_code == 2 and "unknown keys ['epoch']" in _one_error_line(result.output)
    recipe.write_text("backbone: tiny-clip\nlayer_decay: 3\n")  # the options' ConfigError
    result = runner.invoke(app, ["train", "--recipe", str(recipe), "--data", "d", "--out", "o"])
    assert result.exit_code == 2 and "--layer-decay must be in (0, 1]" in result.output


def test_an_internal_value_error_is_not_passed_off_as_the_users(tmp_path, monkeypatch):
    def broken(predictions, truth, strict=False):
        np.ones(3) + np.ones(4)  # a bug: numpy raises ValueError

    monkeypatch.setattr(img2prompt.evaluate, "evaluate", broken)
    result = runner.invoke(app, ["evaluate", str(tmp_path / "p.parquet"), "--truth", "x"])
    assert result.exit_code != 2
    assert isinstance(result.exception, ValueError) and "broadcast" in str(result.exception)
    assert "error:" not in result.output


def test_an_internal_error_prints_a_traceback_from_the_command_line(tmp_path):
    code = (
        "import sys, numpy as np, img2prompt.evaluate as e;"
        "e.evaluate = lambda p, t, s=False: np.ones(3) + np.ones(4);"
        "from img2prompt.app.cli import app; sys.argv = ['img2prompt'] + sys.argv[1:]; app()"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, "evaluate", str(tmp_path / "p.parquet"), "--truth", "x"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert "Traceback (most recent call last)" in run.stderr
    assert "ValueError: operands could not be broadcast" in run.stderr


def test_an_unknown_decode_mode_fails_before_anything_loads(tmp_path):
    """Modes come from the registry, and a typo is refused first: not after the model loaded,
    not masked by a missing bank, not accepted where decoding would not run."""
    image = tmp_path / "x.png"
    for args in (
        ["describe", str(image), "--mode", "fastest", "--metadata", "only"],
        ["describe", str(image), "--mode", "fastest", "--bank", str(tmp_path / "no-bank")],
        ["decode", "--text", "a cat", "--mode", "fastest", "--bank", str(tmp_path / "no-bank")],
        ["demo", "--mode", "fastest", "--out", str(tmp_path / "demo")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, args
        line = _one_error_line(result.output)
        assert "unknown decode mode 'fastest' (--mode); known: best, fast, max" in line, args


def test_a_reader_that_stops_early_is_no_error(shared_data):
    """`img2prompt metadata DIR --json | head -1`: the closed pipe ends the command quietly."""
    command = [sys.executable, "-m", "img2prompt", "metadata", "--json", "-q"]
    folder = str(shared_data / "sd_metadata" / "more")
    with subprocess.Popen([*command, folder], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        first = p.stdout.readline()
        p.stdout.close()  # as `head -1` does
        errors = p.stderr.read().decode()
    assert first.startswith(b'{"image": ')
    assert "error" not in errors.lower() and "Traceback" not in errors, errors


def test_the_command_ends_as_python_would_less_its_teardown(tmp_path, shared_data):
    """`main` ends the process without the interpreter's teardown, and without anything a
    person or a script sees: `atexit` handlers run, all that was written to a pipe arrives
    (the metadata of 70 files, more than a pipe holds, and what is still buffered), the exit
    status is the command's."""
    script = (
        "import atexit, sys\n"
        "atexit.register(print, 'atexit ran')\n"  # print's pipe buffer, flushed at the end
        "from img2prompt.app.cli import main\n"
        "sys.argv = ['img2prompt', *sys.argv[1:]]\n"
        "main()\n"
    )
    folder = shared_data / "sd_metadata"
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    ends = []
    for args, status in (
        (["metadata", "--json", "-q", str(folder)], 0),
        (["submission", "check", str(bad)], 1),
        (["metadata", "--no-such-option"], 2),
    ):
        done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True)
        assert done.returncode == status, done.stderr.decode()
        assert done.stdout.decode().endswith("atexit ran\n"), args
        ends.append(done)
    in_process = runner.invoke(app, ["metadata", "--json", "-q", str(folder)])
    assert ends[0].stdout.decode() == in_process.stdout + "atexit ran\n"
    assert len(in_process.stdout) > 65536 and in_process.stdout.count("\n") >= 70
    assert b"header" in ends[1].stderr and b"bad.csv" in ends[1].stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_the_command_end_flushes_c_streams_and_reports_output_it_could_not_write():
    """What a native library printed (C's buffered stdout) still arrives; output that cannot
    be written at the end (a full disk: /dev/full) makes the status 120 with a message, as
    Python's own exit does, not a silent 0."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as usual
    script = (
        "import ctypes, sys\n"
        "ctypes.CDLL(None).printf(b'from C\\n')\n"
        "from img2prompt.app.cli import main\n"
        "sys.argv = ['img2prompt', '--version']\n"
        "main()\n"
    )
    piped = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env)
    assert piped.returncode == 0 and b"from C\n" in piped.stdout and b"img2prompt" in piped.stdout
    script = (
        "from img2prompt.app.startup import exit_now\n"
        "print('still in the buffer')\n"
        "exit_now(SystemExit(0))\n"
    )
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-c", script], stdout=full, stderr=subprocess.PIPE, env=env
        )
    assert done.returncode == 120 and b"output not fully written" in done.stderr


def test_submission_problems_name_the_file_once(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = runner.invoke(app, ["submission", "check", str(bad)])
    assert result.exit_code == 1
    text = " ".join(result.output.split())  # the terminal may wrap the line
    assert text.count("problem:") == 1 and text.count(str(bad)) == 1, text
    assert f"problem: {bad}:1: header must be imgId_eId,val" in text
