"""People's own images: every file format and a bad file never ends a job (the odd-file set),
memory stays bounded on huge images, the embedded prompt answers `describe` (never `predict`),
captions beside a folder's images, and a folder of one's own generations as training data."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from img2prompt.app.cli import app
from img2prompt.data.images import (
    REDUCE_ABOVE_PIXELS,
    PixelBudget,
    load_image,
    scan_images,
)
from img2prompt.predict.predictor import PredictOptions, Predictor
from img2prompt.predict.reader import ImageReader
from img2prompt.predict.tables import read_predictions
from odd_images import write_odd_images
from sd_files import a1111_text, comfy_graph, comfy_png, picture, png_with_text, with_user_comment

runner = CliRunner()


@pytest.fixture(scope="module")
def odd(tmp_path_factory) -> tuple[Path, dict[str, bool]]:
    folder = tmp_path_factory.mktemp("odd")
    expected = write_odd_images(folder, huge=(5000, 4000))
    (folder / "notes.txt").write_text("not an image, and not taken from a folder\n")
    (folder / "data.json").write_text("{}")
    return folder, expected


def test_folder_search_takes_every_still_format_and_counts_the_rest(odd):
    folder, expected = odd
    search = scan_images([folder])
    assert sorted(p.name for p in search.images) == sorted(expected)
    assert sorted(p.name for p in search.skipped) == ["data.json", "notes.txt"]
    assert "2 files skipped as non-images (.json, .txt)" in search.summary()
    for suffix in (".bmp", ".gif", ".tif", ".tiff", ".jp2", ".tga", ".ico", ".avif", ".dds"):
        assert any(p.suffix == suffix for p in search.images), suffix


def test_predict_default_over_the_odd_set_reports_each_bad_file_and_goes_on(odd, tmp_path):
    folder, expected = odd
    out = tmp_path / "preds.parquet"
    result = runner.invoke(app, ["predict", "default", str(folder), "--out", str(out), "-q"])
    assert result.exit_code == 1  # some files are bad: listed, not fatal
    predicted = [Path(p).name for p in read_predictions(out).images]
    assert predicted == sorted(name for name, ok in expected.items() if ok)
    text = " ".join(result.output.split())
    for name, ok in expected.items():
        assert (f"{name}: " in text) != ok, name  # every bad file named with its reason
    assert "NotImplementedError" in text  # the DDS decoder's own failure
    assert "2 files skipped as non-images" in text


def test_resume_does_not_decode_a_known_bad_file_again(odd, tmp_path, monkeypatch):
    from img2prompt.predict import resume

    folder, expected = odd
    bad = [folder / name for name, ok in expected.items() if not ok]
    out = tmp_path / "p.parquet"
    monkeypatch.setattr(resume.PredictJob, "finish", lambda self: None)  # as if killed at the end
    args = ["predict", "default", *map(str, bad), str(folder / "png-rgb.png"), "--out", str(out)]
    decoded: list[str] = []
    original = ImageReader.load
    monkeypatch.setattr(
        ImageReader,
        "load",
        lambda self, path: decoded.append(str(path)) or original(self, path),
    )
    assert runner.invoke(app, [*args, "-q"]).exit_code == 1
    assert len(decoded) == len(bad) + 1  # the first run decodes every file once
    decoded.clear()
    rerun = runner.invoke(app, [*args, "-q"])
    assert rerun.exit_code == 1 and decoded == []  # every row, good or bad, came from the job
    assert f"{len(bad)} images could not be read" in " ".join(rerun.output.split())


def test_huge_images_are_decoded_reduced_and_the_same_picture(tmp_path):
    big = picture(size=(4800, 3600))
    path = tmp_path / "big.png"
    big.save(path)
    assert REDUCE_ABOVE_PIXELS < 4800 * 3600
    reduced = load_image(path, fit=224)
    assert 448 <= min(reduced.size) < 3 * 448  # at least twice what the model needs
    exact = load_image(path)
    assert exact.size == (4800, 3600)
    small = np.asarray(exact.resize(reduced.size, Image.Resampling.BOX), np.float32)
    assert np.abs(small - np.asarray(reduced, np.float32)).mean() < 2.0
    photo = tmp_path / "photo.png"
    picture(size=(640, 480)).save(photo)  # ordinary images are decoded exactly as they are
    assert load_image(photo, fit=224).tobytes() == load_image(photo).tobytes()


def test_the_file_decoded_first_does_not_decide_how_an_icon_opens(tmp_path):
    """Pillow asks the plugin of the first file's suffix before the others: after a .tga file,
    TGA (whose check takes almost anything) opened this icon, and it failed to load."""
    noise = np.random.default_rng(0).integers(0, 255, (128, 128, 4), np.uint8)
    Image.fromarray(noise, "RGBA").save(tmp_path / "noise.ico", sizes=[(128, 128)])  # 65 KB
    Image.new("RGB", (8, 8)).save(tmp_path / "first.tga")
    code = (
        "import sys; from img2prompt.data.images import load_image; "
        "load_image(sys.argv[1]); print(*load_image(sys.argv[2]).size)"
    )
    args = [sys.executable, "-c", code, str(tmp_path / "first.tga"), str(tmp_path / "noise.ico")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)  # a fresh Pillow
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["128", "128"]


def test_decoding_keeps_the_warning_filters_other_threads_add(tmp_path, monkeypatch):
    """Images decode in threads beside the model, whose int8 path adds warning filters. A
    decode inside `warnings.catch_warnings` restored the filters it saw on entering, dropping
    those, and torch's quantization warning reached predict's users."""
    import warnings

    from img2prompt.data import images

    path = tmp_path / "a.png"
    picture(size=(64, 48)).save(path)
    real_open = Image.open
    sentinel = r"added while an image was decoding"

    def open_while_another_thread_adds_a_filter(*args, **kwargs):
        warnings.filterwarnings("ignore", message=sentinel)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(images.Image, "open", open_while_another_thread_adds_a_filter)
    try:
        assert load_image(path).size == (64, 48)
        assert any(f[1] is not None and f[1].pattern == sentinel for f in warnings.filters)
    finally:
        warnings.filters[:] = [
            f for f in warnings.filters if not (f[1] and f[1].pattern == sentinel)
        ]


def test_the_pixel_limit_is_the_one_asked_for_and_silent(tmp_path):
    """Files over `max_pixels` are refused with the sizes named, and nothing else is printed;
    under it, Pillow's own decompression-bomb warning neither refuses nor shows."""
    import warnings

    from image_helpers import png_header_only
    from img2prompt.data.images import MAX_PIXELS
    from img2prompt.errors import InputError

    header = tmp_path / "big.png"
    header.write_bytes(png_header_only(10000, 10000))  # 100 Mpx: over Pillow's 89.5 Mpx
    assert MAX_PIXELS < 10000 * 10000 < 2 * MAX_PIXELS
    refused = pytest.raises(InputError, match=r"10000x10000, over the 89,478,485-pixel limit")
    with warnings.catch_warnings(record=True) as shown, refused:
        load_image(header)
    assert not shown, [str(w.message) for w in shown]
    small = tmp_path / "small.png"
    picture(size=(300, 200)).save(small)
    with pytest.raises(InputError, match=r"300x200, over the 50,000-pixel limit"):
        load_image(small, max_pixels=50_000)
    assert load_image(small, max_pixels=60_000).size == (300, 200)


def test_the_command_names_a_broken_file_without_pillows_warnings(tmp_path):
    """A TIFF whose description tag points past its end: Pillow warns "Tag data larger than
    file" as it opens it. The command line shows its own line naming the file instead."""
    import io

    from PIL import TiffImagePlugin

    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[270] = "x" * 400  # ImageDescription, stored after the pixels
    data = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(data, "TIFF", tiffinfo=tags)
    cut = data.getvalue().find(b"x" * 400) + 10
    (tmp_path / "broken.tif").write_bytes(data.getvalue()[:cut])
    picture(size=(64, 48)).save(tmp_path / "fine.png")
    out = tmp_path / "p.parquet"
    command = [sys.executable, "-m", "img2prompt", "predict", "default", str(tmp_path)]
    done = subprocess.run(
        [*command, "--out", str(out), "--skip-bad"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "broken.tif" in done.stderr and "Warning" not in done.stderr, done.stderr
    assert len(pq.read_table(out)) == 1


def test_pixel_budget_bounds_what_threads_hold_at_once():
    budget = PixelBudget(100)
    peak, lock = [0], threading.Lock()

    def work(pixels: int) -> None:
        with budget.hold(pixels):
            with lock:
                peak[0] = max(peak[0], budget.in_use)
            time.sleep(0.01)

    threads = [threading.Thread(target=work, args=(n,)) for n in (60, 60, 500, 30, 90, 10) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] <= 100 and budget.in_use == 0


# --- the embedded prompt: for people asking, never for prediction -------------------------------


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> Path:
    """Three 'own generations' (A1111 PNG, ComfyUI PNG, a plain PNG) in a folder."""
    folder = tmp_path_factory.mktemp("own")
    png_with_text(folder / "a1111.png", {"parameters": a1111_text("a red fox in the snow")})
    comfy_png(folder / "comfy.png", comfy_graph("a lighthouse on a cliff, oil painting"))
    picture(seed=3).save(folder / "plain.png")
    return folder


def test_predict_reads_pixels_only(tmp_path):
    """The same pixels with and without a (different) embedded prompt predict the same."""
    with_text = png_with_text(tmp_path / "with.png", {"parameters": a1111_text("a cathedral")})
    picture().save(tmp_path / "without.png")
    predictor = Predictor("default", PredictOptions(workers=0, precision="fp32"))
    result = predictor.predict_files([with_text, tmp_path / "without.png"], progress=False)
    np.testing.assert_array_equal(result.embeddings[0], result.embeddings[1])


def test_describe_metadata_auto_ignore_only(own, describer, monkeypatch):
    import img2prompt.describer as describe_module

    monkeypatch.setattr(describe_module, "Describer", lambda *a, **k: describer)
    auto = runner.invoke(app, ["describe", str(own), "--json", "-q"])
    assert auto.exit_code == 0, auto.output
    rows = {Path(r["image"]).name: r for r in json.loads(auto.stdout)["results"]}
    fox = rows["a1111.png"]
    assert (fox["prompt"], fox["source"], fox["negative_prompt"]) == (
        "a red fox in the snow",
        "metadata",
        "blurry",
    )
    assert fox["generator"] == "AUTOMATIC1111" and fox["settings"]["seed"] == 1
    assert fox["model_prompt"] and fox["model_prompt"] != fox["prompt"]  # the guess beside it
    assert len(fox["embedding"]) == 384 and fox["match"] > 0
    assert rows["comfy.png"]["prompt"] == "a lighthouse on a cliff, oil painting"
    assert rows["plain.png"]["source"] == "model"
    assert rows["plain.png"]["prompt"] == rows["plain.png"]["model_prompt"]

    describer.metadata = "ignore"  # what `--metadata ignore` builds
    try:
        ignored = runner.invoke(app, ["describe", str(own), "--json", "-q"])
    finally:
        describer.metadata = "auto"
    by_name = {Path(r["image"]).name: r for r in json.loads(ignored.stdout)["results"]}
    assert by_name["a1111.png"]["source"] == "model"
    assert by_name["a1111.png"]["prompt"] == fox["model_prompt"]


def test_describe_metadata_only_loads_no_model(own, tmp_path):
    out = tmp_path / "d.parquet"
    args = ["describe", str(own), "--metadata", "only", "--model", "/no/such/model", "--json"]
    result = runner.invoke(app, [*args, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    rows = {Path(r["image"]).name: r for r in json.loads(result.stdout)["results"]}
    assert rows["a1111.png"]["prompt"] == "a red fox in the snow"
    assert rows["plain.png"]["prompt"] is None and rows["plain.png"]["source"] == "none"
    assert rows["a1111.png"]["embedding"] is None and rows["a1111.png"]["match"] is None
    table = {Path(r["image"]).name: r for r in pq.read_table(out).to_pylist()}
    assert table["comfy.png"]["generator"] == "ComfyUI"
    assert json.loads(table["a1111.png"]["settings"])["steps"] == 20


def test_python_api_describe_reads_the_file_first(own, describer):
    described = describer.describe_files([own / "a1111.png", own / "plain.png"])
    first, second = described.descriptions
    assert (first.prompt, first.source) == ("a red fox in the snow", "metadata")
    assert first.metadata is not None and first.metadata.settings["steps"] == 20
    assert second.source == "model" and second.prompt == second.model_prompt


# --- captions beside the images -----------------------------------------------------------------


def test_sidecar_captions_keep_existing_ones_and_resume(own, describer, tmp_path, monkeypatch):
    import shutil

    import img2prompt.describer as describe_module

    folder = tmp_path / "set"
    shutil.copytree(own, folder)
    (folder / "mine.txt").write_text("my own caption\n")  # a caption with no image: untouched
    picture(seed=5).save(folder / "kept.png")
    (folder / "kept.txt").write_text("written by hand\n")
    loads: list[int] = []

    def build(*args, **kwargs):
        loads.append(1)
        return describer

    monkeypatch.setattr(describe_module, "Describer", build)
    args = ["describe", str(folder), "--sidecar", "txt", "--prefix", "sks, ", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (folder / "a1111.txt").read_text() == "sks, a red fox in the snow\n"
    comfy = (folder / "comfy.txt").read_text()
    assert comfy == "sks, a lighthouse on a cliff, oil painting\n"
    plain = (folder / "plain.txt").read_text()
    assert plain.startswith("sks, ") and len(plain) > 10  # the model's prompt
    assert (folder / "kept.txt").read_text() == "written by hand\n"
    summary = " ".join(result.output.split())
    assert "3 .txt captions written (2 from embedded prompts, 1 from the model)" in summary
    assert "1 kept" in summary

    # An interrupted run goes on: only images without a caption are done again.
    (folder / "plain.txt").unlink()
    loads.clear()
    again = runner.invoke(app, args)
    assert "1 .txt captions written (0 from embedded prompts, 1 from the model)" in " ".join(
        again.output.split()
    )
    assert (folder / "a1111.txt").read_text() == "sks, a red fox in the snow\n"
    # Nothing left to do: the model is not even loaded.
    loads.clear()
    assert runner.invoke(app, args).exit_code == 0 and loads == []
    # --overwrite replaces; .caption files sit beside the .txt ones.
    runner.invoke(app, ["describe", str(folder), "--sidecar", "txt", "--overwrite", "-q"])
    assert (folder / "kept.txt").read_text() != "written by hand\n"
    only = ["describe", str(folder), "--sidecar", "caption", "--metadata", "only", "-q"]
    result = runner.invoke(app, only)
    assert (folder / "a1111.caption").read_text() == "a red fox in the snow\n"
    assert not (folder / "plain.caption").exists()
    assert "without an embedded prompt left uncaptioned" in " ".join(result.output.split())


def test_a_caption_is_one_line_of_plain_words(tmp_path):
    """Trainers read a caption's first line, word for word: A1111's emphasis, weights, LoRA tags
    and BREAK are taken out (escaped brackets stay brackets), unless --keep-markup."""
    text = a1111_text(
        "(masterpiece:1.2), <lora:style_v2:0.8> 1girl, \\(cat ears\\)\nBREAK\n[red:blue:0.5] sky"
    )
    png_with_text(tmp_path / "a.png", {"parameters": text})
    args = ["describe", str(tmp_path), "--sidecar", "txt", "--metadata", "only", "-q"]
    assert runner.invoke(app, [*args, "--prefix", "sks, "]).exit_code == 0
    assert (tmp_path / "a.txt").read_text() == "sks, masterpiece, 1girl, (cat ears), blue sky\n"
    assert runner.invoke(app, [*args, "--keep-markup", "--overwrite"]).exit_code == 0
    kept = "(masterpiece:1.2), <lora:style_v2:0.8> 1girl, \\(cat ears\\) BREAK [red:blue:0.5] sky\n"
    assert (tmp_path / "a.txt").read_text() == kept


def test_two_images_that_would_share_a_caption_are_reported(tmp_path):
    picture().save(tmp_path / "x.png")
    picture().save(tmp_path / "x.jpg")
    png_with_text(tmp_path / "y.png", {"parameters": a1111_text("a cat")})
    args = ["describe", str(tmp_path), "--sidecar", "txt", "--metadata", "only"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "x.png: its caption x.txt is already x.jpg's" in " ".join(result.output.split())
    assert (tmp_path / "y.txt").read_text() == "a cat\n"


# --- one's own generations as training data -----------------------------------------------------


def test_prepare_a_folder_of_own_generations_then_train(tmp_path):
    folder = tmp_path / "outputs"
    (folder / "day2").mkdir(parents=True)
    prompts = [
        "a red fox in the snow, oil painting",
        "portrait of an astronaut, studio lighting",
        "a castle on a hill at dusk",
        "a bowl of ramen, food photography",
        "a sailing ship in a storm, dramatic",
        "a cozy cabin in the woods, autumn",
    ]
    for i, prompt in enumerate(prompts):
        where = folder / ("day2" if i % 2 else "") / f"{i:05d}.png"
        png_with_text(where, {"parameters": a1111_text(prompt, seed=i)}, picture(seed=i))
    picture(seed=9).save(folder / "upscaled-copy.png")  # no metadata
    data = tmp_path / "data"
    refused = runner.invoke(app, ["data", "prepare", str(folder), "--out", str(data), "-q"])
    assert refused.exit_code == 2 and "upscaled-copy.png" in refused.output
    assert "--on-error skip" in " ".join(refused.output.split())
    args = [
        "data",
        "prepare",
        str(folder),
        "--out",
        str(data),
        "--folds",
        "2",
        "--on-error",
        "skip",
    ]
    result = runner.invoke(app, [*args, "-q"])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(data / "prompts.parquet").to_pylist()
    assert sorted(r["prompt"] for r in rows) == sorted(prompts)
    assert all(Path(r["image"]).is_file() and r["source"] == "AUTOMATIC1111" for r in rows)
    assert {r["seed"] for r in rows} == set(range(6)) and {r["step"] for r in rows} == {20}
    run = tmp_path / "run"
    train = ["train", "--data", str(data), "--backbone", "tiny-convnext", "--out", str(run)]
    trained = runner.invoke(app, [*train, "--epochs", "1", "--batch-size", "4", "-q"])
    assert trained.exit_code == 0, trained.output
    assert (run / "model" / "model.json").is_file()


def test_images_that_share_a_name_get_ids_with_their_suffix(tmp_path):
    """A1111 may save `x.png` and `x.jpg` of one generation: both are rows, told apart by their
    suffix, where a name met once keeps the id without it."""
    from img2prompt.data.sources import read_image_folder
    from img2prompt.errors import ErrorLog

    png_with_text(tmp_path / "x.png", {"parameters": a1111_text("a cat")})
    with_user_comment(tmp_path / "x.jpg", a1111_text("a cat"), "JPEG", "UNICODE-BE")
    png_with_text(tmp_path / "y.png", {"parameters": a1111_text("a dog")})
    rows = read_image_folder(tmp_path, ErrorLog("fail"))
    assert sorted(row.id for row in rows) == ["x.jpg", "x.png", "y"]
