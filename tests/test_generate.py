"""`img2prompt generate` with a tiny random Stable Diffusion pipeline saved to a folder and loaded
back with `--model DIR`, the path a real checkpoint takes. The same parameters everywhere, so one
uninterrupted run is the reference for the killed-and-resumed and the two-rank runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from img2prompt.app.cli import app
from img2prompt.generate.presets import SCHEDULERS
from img2prompt.generate.shards import INDEX_PART, ShardPlan, image_seed

SRC = Path(__file__).resolve().parents[1] / "src"
runner = CliRunner()

NEAR_DUPLICATE = ("a red cat sitting on a wooden chair", "a red cat sitting on the wooden chair")
# 82 words: longer than CLIP's 77-token window (the tiny tokenizer has one token per word here).
LONG = "a lighthouse on a cliff at sunset " + "with crashing waves " * 25
PROMPTS = {"p0": NEAR_DUPLICATE[0], "p1": NEAR_DUPLICATE[1], "p2": LONG.strip()}
# 3 prompts x 2 images = 6 images in 3 shards of 2, batches of 2; 64 px saved at 48 px.
PARAMS = [
    "--images-per-prompt",
    "2",
    "--seed",
    "7",
    "--steps",
    "6",
    "--size",
    "64",
    "--save-size",
    "48",
    "--shard-size",
    "2",
    "--batch-size",
    "2",
    "--scheduler",
    "dpm++",
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Two OpenMP threads on a 2-core machine shared with other work run this tiny model up to
    100x slower (threads spin waiting for each other); one thread is steady."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from tiny_pipeline import build_tiny_pipeline

    words = " ".join(PROMPTS.values()).split()
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd") / "model", words)


@pytest.fixture(scope="session")
def prompts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.parquet"
    pq.write_table(
        pa.table(
            {
                "id": list(PROMPTS),
                "prompt": list(PROMPTS.values()),
                "group": [0, 0, 1],
                "fold": [1, 1, 0],
            }
        ),
        path,
    )
    return path


def command(prompts: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return [
        "generate",
        "--quiet",
        "--prompts",
        str(prompts),
        "--model",
        str(model),
        "--out",
        str(out),
        *PARAMS,
        *extra,
    ]


def run_cli(args: list[str]):
    result = runner.invoke(app, args)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def reference(tiny_model, prompts_file, tmp_path_factory) -> tuple[Path, str]:
    """One uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("reference") / "out"
    code, output = run_cli(command(prompts_file, tiny_model, out))
    assert code == 0, output
    return out, output


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(SRC), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def image_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.png")}


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith((".partial", ".tmp"))]


def test_every_image_once_with_a_correct_index(reference):
    out, output = reference
    table = pq.read_table(out / "images.parquet")
    expected = "id prompt_id prompt seed image sampler step cfg width height save_size truncated"
    assert set(expected.split()) | {"group", "fold"} <= set(table.column_names)
    rows = table.to_pylist()
    assert len(rows) == 6
    assert [(r["prompt_id"], r["image_number"]) for r in rows] == [
        (p, k) for p in PROMPTS for k in range(2)
    ]
    assert len({(r["prompt_id"], r["seed"]) for r in rows}) == 6
    assert len({r["id"] for r in rows}) == 6
    for r in rows:
        assert r["seed"] == image_seed(7, r["prompt_id"], r["image_number"])
        assert r["prompt"] == PROMPTS[r["prompt_id"]]
        assert (r["step"], r["cfg"], r["width"], r["save_size"]) == (6, 7.0, 64, 48)
        assert r["sampler"] == "dpm++"
        assert not Path(r["image"]).is_absolute()
        with Image.open(out / r["image"]) as image:
            assert image.size == (48, 48) and image.mode == "RGB"
    # group and fold come from the prompts table
    assert [(r["group"], r["fold"]) for r in rows] == [(0, 1)] * 4 + [(1, 0)] * 2
    assert sorted(image_bytes(out)) == sorted(r["image"] for r in rows)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["00000", "00001", "00002"]
    assert not leftovers(out)
    # the long prompt is flagged, counted and reported
    assert [r["truncated"] for r in rows] == [False] * 4 + [True] * 2
    assert rows[4]["prompt_tokens"] > 77 >= rows[0]["prompt_tokens"] >= 10
    assert "1 of 3 prompts are longer than the text encoder's 77 tokens" in " ".join(output.split())
    run = json.loads((out / "generate.json").read_text())
    assert run["parameters"]["steps"] == 6 and run["parameters"]["prompts"]["rows"] == 3


def test_sigkill_then_rerun_gives_the_uninterrupted_result(
    reference, tiny_model, prompts_file, tmp_path
):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "img2prompt", *command(prompts_file, tiny_model, out)]
    process = subprocess.Popen(args, env=subprocess_env(), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "shards" / "00000" / INDEX_PART).exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the first shard never appeared"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    done = [s for s in range(3) if (out / "shards" / f"{s:05d}").is_dir()]
    assert done != [0, 1, 2], "the run finished before it was killed: nothing was tested"
    assert not (out / "images.parquet").exists()

    code, output = run_cli(command(prompts_file, tiny_model, out))
    assert code == 0, output
    assert f"{len(done)} of 3 shards were already done" in " ".join(output.split())
    ref_out, _ = reference
    assert pq.read_table(out / "images.parquet").equals(pq.read_table(ref_out / "images.parquet"))
    assert image_bytes(out) == image_bytes(ref_out)
    assert not leftovers(out)

    # With every shard there, a run only rebuilds the index.
    (out / "images.parquet").unlink()
    code, output = run_cli(command(prompts_file, tiny_model, out))
    assert code == 0, output
    assert "0 images generated" in output
    assert pq.read_table(out / "images.parquet").equals(pq.read_table(ref_out / "images.parquet"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_split_the_shards_and_match_one_process(
    reference, tiny_model, prompts_file, tmp_path
):
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "-m",
        "img2prompt",
        *command(prompts_file, tiny_model, out),
    ]
    result = subprocess.run(args, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    written_by = {
        shard: pq.read_schema(out / "shards" / f"{shard:05d}" / INDEX_PART).metadata[
            b"img2prompt.rank"
        ]
        for shard in range(3)
    }
    assert written_by == {0: b"0", 1: b"1", 2: b"0"}
    ref_out, _ = reference
    assert pq.read_table(out / "images.parquet").equals(pq.read_table(ref_out / "images.parquet"))
    assert image_bytes(out) == image_bytes(ref_out)
    assert not leftovers(out)


def test_ranks_share_out_every_shard_once():
    plan = ShardPlan(prompts=101, images_per_prompt=3, shard_size=10)
    assert plan.shards == 31
    for world_size in (1, 2, 3, 8, 40):
        owned = [s for rank in range(world_size) for s in plan.shards_of_rank(rank, world_size)]
        assert sorted(owned) == list(range(plan.shards))
    jobs = [
        job for s in range(plan.shards) for job in plan.jobs(s, [str(i) for i in range(101)], 0)
    ]
    assert [job.number for job in jobs] == list(range(303))


def test_data_prepare_keeps_every_image_of_a_kept_prompt(reference, tmp_path):
    from img2prompt.data.options import PrepareConfig
    from img2prompt.data.prepare import prepare

    out, _ = reference
    cfg = PrepareConfig(
        inputs=[out / "images.parquet"],
        out=tmp_path / "data",
        min_words=1,
        max_words=100,
        folds=2,
        dedup_threshold=0.9,
    )
    report = prepare(cfg, progress=False)
    table = pq.read_table(tmp_path / "data" / "prompts.parquet").to_pylist()
    # p1 is a near-duplicate of p0: both its images go; both images of p0 and p2 stay.
    assert report.removed["near duplicates"] == 2
    assert sorted(r["id"] for r in table) == ["p0_0", "p0_1", "p2_0", "p2_1"]
    for prompt_id in ("p0", "p2"):
        rows = [r for r in table if r["prompt_id"] == prompt_id]
        assert len({(r["group"], r["fold"]) for r in rows}) == 1
        assert len({r["seed"] for r in rows}) == 2
        assert all(Path(r["image"]).is_file() for r in rows)
    by_id = {r["id"]: r for r in table}
    assert Path(by_id["p0_0"]["image"]) == (out / "shards/00000/00000000_0.png").resolve()
    assert by_id["p2_1"]["step"] == 6 and by_id["p2_1"]["sampler"] == "dpm++"


def test_changed_parameters_into_the_same_out_are_refused(reference, tiny_model, prompts_file):
    out, _ = reference
    before = image_bytes(out)
    for extra, changed in [(["--steps", "3"], "steps"), (["--batch-size", "1"], "batch_size")]:
        code, output = run_cli(command(prompts_file, tiny_model, out, *extra))
        assert code == 2
        message = " ".join(output.split())
        assert "other parameters" in message and changed in message
    assert image_bytes(out) == before


def test_a_missing_or_wrong_model_folder_is_a_clear_error(prompts_file, tmp_path):
    code, output = run_cli(command(prompts_file, tmp_path / "nope", tmp_path / "out"))
    assert code == 2 and "no such folder" in output and "Traceback" not in output
    (tmp_path / "empty").mkdir()
    code, output = run_cli(command(prompts_file, tmp_path / "empty", tmp_path / "out"))
    assert code == 2 and "model_index.json" in output
    assert not (tmp_path / "out").exists()


def test_bad_options_are_refused(prompts_file, tiny_model, tmp_path):
    code, output = run_cli(command(prompts_file, tiny_model, tmp_path / "out", "--size", "60"))
    assert code == 2 and "multiple of 8" in output


def test_one_generator_per_image_makes_batches_match_single_images(tiny_model):
    from img2prompt.generate.sd import load_pipeline, render

    pipe = load_pipeline(str(tiny_model), "dpm++", torch.device("cpu"), torch.float32)
    texts, seeds = list(PROMPTS.values()), [11, 12, 11]
    batch = render(pipe, texts, seeds, steps=4, guidance=7.0, size=64)
    single = [
        render(pipe, [text], [seed], steps=4, guidance=7.0, size=64)[0]
        for text, seed in zip(texts, seeds, strict=True)
    ]
    a = np.stack([np.asarray(im, dtype=np.int16) for im in batch])
    b = np.stack([np.asarray(im, dtype=np.int16) for im in single])
    # Same noise per image: equal up to float rounding (at most 1 level of 255) ...
    assert np.abs(a - b).max() <= 1
    # ... while another seed gives another image.
    other = render(pipe, texts[:1], [13], steps=4, guidance=7.0, size=64)
    assert np.abs(np.asarray(other[0], dtype=np.int16) - a[0]).mean() > 5


def test_a_shard_without_its_index_part_is_made_again(
    reference, tiny_model, prompts_file, tmp_path
):
    """Only a complete shard is taken as done: one that lost its index part (never through the
    rename; by hand, say) is made again, and the run still equals the reference."""
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    (out / "shards" / "00001" / INDEX_PART).unlink()
    (out / "shards" / "00001" / "00000001_0.png").unlink()
    (out / "images.parquet").unlink()
    code, output = run_cli(command(prompts_file, tiny_model, out))
    assert code == 0, output
    assert "2 images generated in 1 shards" in " ".join(output.split())
    assert image_bytes(out) == image_bytes(reference[0])
    assert pq.read_table(out / "images.parquet").equals(
        pq.read_table(reference[0] / "images.parquet")
    )


def test_an_interrupted_shard_keeps_its_whole_images(reference, tiny_model, prompts_file, tmp_path):
    """A killed run leaves `.NNNNN.partial/` with whole images (and perhaps a `.tmp` file): the
    rerun keeps the batches whose images are all there and drops the temporary file."""
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    partial = out / "shards" / ".00001.partial"
    (out / "shards" / "00001").rename(partial)
    (partial / INDEX_PART).unlink()
    (partial / "00000002_0.png.tmp").write_bytes(b"half an image")
    (out / "images.parquet").unlink()
    code, output = run_cli(command(prompts_file, tiny_model, out))
    assert code == 0, output
    assert "0 images generated in 1 shards" in " ".join(output.split())
    assert image_bytes(out) == image_bytes(reference[0])
    assert not leftovers(out)


def test_presets_fill_only_what_is_not_given(tmp_path):
    from img2prompt.generate.options import GenerateConfig
    from img2prompt.generate.presets import SD2_768_V

    fast = GenerateConfig(prompts=tmp_path / "p.parquet", out=tmp_path / "o", preset="fast")
    assert (fast.model, fast.steps, fast.scheduler, fast.size) == (SD2_768_V, 20, "dpm++", 768)
    competition = GenerateConfig(prompts=tmp_path / "p.parquet", out=tmp_path / "o", steps=30)
    assert (competition.steps, competition.guidance, competition.scheduler) == (30, 7.0, "ddim")
    assert (competition.size, competition.save_size) == (768, 512)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_scheduler_loads_and_draws(tiny_model, scheduler):
    from img2prompt.generate.sd import load_pipeline, render

    pipe = load_pipeline(str(tiny_model), scheduler, torch.device("cpu"), torch.float32)
    (image,) = render(pipe, ["a red cat"], [1], steps=3, guidance=7.0, size=32)
    assert image.size == (32, 32)
    assert np.asarray(image).std() > 0


def test_duplicate_prompt_ids_are_refused(tiny_model, tmp_path):
    prompts = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "a"], "prompt": ["x y", "y z", "z w"]}), prompts)
    code, output = run_cli(command(prompts, tiny_model, tmp_path / "out"))
    assert code == 2 and "'a' appears 2 times" in output


def test_a_model_that_fails_to_load_is_a_clear_error_and_binds_nothing(
    tiny_model, prompts_file, tmp_path
):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    shutil.rmtree(broken / "unet")
    out = tmp_path / "out"
    code, output = run_cli(command(prompts_file, broken, out))
    assert code == 2 and "cannot load this folder" in output and "Traceback" not in output
    # No image was made, so the folder is free for a run with other options.
    code, output = run_cli(command(prompts_file, tiny_model, out, "--limit", "1", "--steps", "2"))
    assert code == 0, output
    assert pq.read_table(out / "images.parquet").num_rows == 2
