"""`benchmarks/gpu_check.py` stays runnable between the rare runs on a lent GPU: its quick CPU
version goes through every check (predict, train with a resumed run, generate, index,
describe) here, and a failing check makes it exit non-zero."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


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
    names = [c["name"].split()[0] for c in report["checks"]]
    assert names == ["predict", "predict", "train", "train", "generate", "index", "describe"]
    assert all(c["status"] == "ok" for c in report["checks"]), report["checks"]
    train = next(c for c in report["checks"] if c["name"].startswith("train"))["figures"]
    assert train["resumed"] and train["losses"][-1] < train["losses"][0]
    predict = report["checks"][0]["figures"]
    assert predict["min_cosine_bf16_to_fp32"] >= 0.999


def test_a_failing_check_is_reported_and_exits_non_zero(gpu_check, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setattr(gpu_check, "check_index", broken)
    for name in ("check_predict", "check_train", "check_generate", "check_describe"):
        monkeypatch.setattr(gpu_check, name, lambda *a, **k: {"skipped": True})
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--json", str(out)]) == 1
    index = next(c for c in json.loads(out.read_text())["checks"] if c["name"] == "index")
    assert index["status"] == "failed" and "caught fire" in index["figures"]["error"]
