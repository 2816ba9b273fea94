"""`predict`: order, normalisation, batching, TTA, precision, bad images, atomic output."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from img2prompt.app.cli import app
from img2prompt.data.images import load_image
from img2prompt.data.transforms import preprocess
from img2prompt.device import native_bf16
from img2prompt.errors import InputError
from img2prompt.models.model import ImageToPromptModel, ModelConfig, load_model
from img2prompt.predict.options import PredictOptions
from img2prompt.predict.predictor import Predictor
from img2prompt.predict.run import run_predict
from img2prompt.predict.tables import read_predictions

runner = CliRunner()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Five small images of different sizes and content (not square: crops matter)."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(48, 40), (40, 64), (33, 33), (80, 50), (41, 45)]):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        pixels[: size[1] // 2] //= i + 1  # different content per image
        path = folder / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def reference_embeddings(model_dir: Path, paths: list[Path], hflip_too: bool = False):
    """One image at a time, fp32, no threads: what the batched predictor must reproduce."""
    model = load_model(model_dir)
    rows = []
    with torch.no_grad():
        for path in paths:
            image = load_image(path)
            views = [preprocess(image, model.preprocess)]
            if hflip_too:
                views.append(preprocess(image, model.preprocess, hflip=True))
            out = F.normalize(model(torch.stack(views)), dim=-1)
            rows.append(F.normalize(out.mean(0), dim=0))
    return torch.stack(rows).numpy()


def test_order_normalisation_and_batching_match_one_image_at_a_time(tiny_clip_model_dir, photos):
    order = [photos[3], photos[0], photos[4], photos[1], photos[2]]  # not sorted on purpose
    expected = reference_embeddings(tiny_clip_model_dir, order)
    for batch_size, workers in [(1, 0), (2, 2), (32, -1)]:
        options = PredictOptions(batch_size=batch_size, workers=workers, precision="fp32")
        result = Predictor(tiny_clip_model_dir, options).predict_files(order, progress=False)
        assert result.images == [str(p) for p in order]
        np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(result.embeddings, expected, atol=2e-5)


def test_folder_input_is_recursive_sorted_and_paths_are_kept_as_given(tiny_clip_model_dir, photos):
    folder = photos[0].parent
    out = folder.parent / "preds.parquet"
    result = runner.invoke(
        app,
        [
            "predict",
            str(tiny_clip_model_dir),
            str(folder),
            "--out",
            str(out),
            "-q",
            "--precision",
            "fp32",
        ],
    )
    assert result.exit_code == 0, result.output
    table = read_predictions(out)
    assert table.images == [str(p) for p in sorted(photos)]
    np.testing.assert_allclose(
        table.embeddings, reference_embeddings(tiny_clip_model_dir, sorted(photos)), atol=2e-5
    )
    assert pq.read_table(out).column_names == ["image", "embedding"]


def test_hflip_tta_averages_normalised_views(tiny_clip_model_dir, photos):
    options = PredictOptions(tta="hflip", precision="fp32")
    result = Predictor(tiny_clip_model_dir, options).predict_files(photos, progress=False)
    expected = reference_embeddings(tiny_clip_model_dir, photos, hflip_too=True)
    np.testing.assert_allclose(result.embeddings, expected, atol=2e-5)
    plain = Predictor(tiny_clip_model_dir, PredictOptions(precision="fp32")).predict_files(
        photos, progress=False
    )
    assert not np.allclose(result.embeddings, plain.embeddings, atol=1e-3)


def test_zoom_view_is_a_tighter_crop_and_changes_the_prediction(tiny_clip_model_dir, photos):
    from img2prompt.predict.tta import tta_views

    model = load_model(tiny_clip_model_dir)
    views = tta_views(model.preprocess, "hflip+zoom")
    assert [v.name for v in views] == ["plain", "zoom", "plain-hflip", "zoom-hflip"]
    assert views[1].preprocess.resize_to > model.preprocess.resize_to
    assert views[1].preprocess.crop_size == model.preprocess.crop_size

    def predict(tta: str) -> np.ndarray:
        options = PredictOptions(tta=tta, precision="fp32")
        return Predictor(tiny_clip_model_dir, options).predict_files(photos, False).embeddings

    flipped, zoomed = predict("hflip"), predict("hflip+zoom")
    np.testing.assert_allclose(np.linalg.norm(zoomed, axis=1), 1.0, atol=1e-5)
    # Every image's prediction moves when the zoomed views join its plain and flipped ones.
    moved = 1 - np.einsum("nd,nd->n", flipped, zoomed)
    assert moved.min() > 1e-4, moved


def test_bf16_holds_accuracy_on_a_vit_b32_shaped_clip(kaggle_sample):
    """The precision `auto` picks on CPUs with bf16 units: cosine >= 0.9995 to fp32."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from img2prompt.data.transforms import CLIP_MEAN, CLIP_STD, PreprocessConfig
    from img2prompt.models.backbones import HFCLIPBackbone

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=224,
        patch_size=32,
    )
    backbone = HFCLIPBackbone(
        CLIPVisionModel(config), PreprocessConfig(224, 224, CLIP_MEAN, CLIP_STD)
    )
    model = ImageToPromptModel(ModelConfig(backbone="hf-clip:x"), backbone=backbone).eval()
    images = sorted((kaggle_sample / "images").glob("*.png"))
    fp32 = Predictor(model, PredictOptions(precision="fp32")).predict_files(images, False)
    bf16 = Predictor(model, PredictOptions(precision="bf16")).predict_files(images, False)
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    cosines = np.einsum("nd,nd->n", fp32.embeddings, bf16.embeddings)
    assert cosines.min() >= 0.9995, cosines
    auto = Predictor(model, PredictOptions(precision="auto"))
    auto.predict_files(images[:2], False)
    assert auto.engine.precision == ("bf16" if native_bf16("cpu") else "fp32")


def test_auto_precision_refuses_bf16_when_it_loses_accuracy(kaggle_sample, monkeypatch):
    """efficientnet-lite0 loses more than the threshold in bf16: auto must stay fp32. The
    hardware is said to have bf16 units, so the check runs on every CPU."""
    import img2prompt.predict.engine as engine

    monkeypatch.setattr(engine, "native_bf16", lambda device: True)
    torch.manual_seed(0)
    model = ImageToPromptModel(ModelConfig(backbone="efficientnet-lite0")).eval()
    images = sorted((kaggle_sample / "images").glob("*.png"))[:3]
    auto = Predictor(model, PredictOptions(precision="auto"))
    got = auto.predict_files(images, False)
    fp32 = Predictor(model, PredictOptions(precision="fp32")).predict_files(images, False)
    assert auto.engine.precision == "fp32"
    assert auto.engine.precision_note.startswith("bf16 checked and refused: cosine")
    np.testing.assert_allclose(got.embeddings, fp32.embeddings, atol=1e-5)
    assert auto.engine.layout == torch.channels_last  # convolutional backbones run channels-last


def test_embed_images_equals_predict_files(tiny_clip_model_dir, photos):
    predictor = Predictor(tiny_clip_model_dir, PredictOptions(precision="fp32", batch_size=2))
    in_memory = predictor.embed_images([Image.open(p) for p in photos])
    np.testing.assert_allclose(
        in_memory, predictor.predict_files(photos, False).embeddings, atol=1e-6
    )


# --- odd and broken images -------------------------------------------------------------------


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims width x height (a decompression bomb) but holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory):
    """Every odd case the issue lists, with the RGB image each convertible one must become."""
    folder = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)
    expected: dict[str, Image.Image] = {}

    Image.fromarray(rgb).save(folder / "a_plain.png")
    expected["a_plain.png"] = Image.fromarray(rgb)

    Image.fromarray(rgb).convert("CMYK").save(folder / "b_cmyk.jpg", quality=95)
    expected["b_cmyk.jpg"] = Image.open(folder / "b_cmyk.jpg").convert("RGB")

    deep = (rng.integers(0, 65536, (30, 44))).astype(np.uint16)
    Image.fromarray(deep).save(folder / "c_16bit.png")
    scaled = np.round(deep.astype(np.float64) / 65535 * 255).astype(np.uint8)
    expected["c_16bit.png"] = Image.fromarray(scaled).convert("RGB")

    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    indices = np.asarray(palette)
    clear = int(indices[0, 0])
    palette.save(folder / "d_palette_alpha.png", transparency=clear)
    flat = np.asarray(palette.convert("RGB")).copy()
    flat[indices == clear] = 255  # transparent pixels shown on white
    expected["d_palette_alpha.png"] = Image.fromarray(flat)

    gray = rng.integers(0, 256, (30, 44), dtype=np.uint8)
    Image.fromarray(gray).save(folder / "e_gray.png")
    expected["e_gray.png"] = Image.fromarray(np.stack([gray] * 3, axis=-1))

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(rgb).save(folder / "f_exif_rotated.png", exif=exif)
    expected["f_exif_rotated.png"] = Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_270)

    Image.fromarray(rgb).save(folder / "g_alpha.webp", lossless=True)
    expected["g_alpha.webp"] = Image.fromarray(rgb)

    whole = folder / "x_whole.png"
    Image.fromarray(rgb).save(whole)
    (folder / "x_truncated.png").write_bytes(whole.read_bytes()[:400])
    whole.unlink()
    _png_header_only(folder / "y_bomb.png", 20000, 20000)
    (folder / "z_not_an_image.jpg").write_text("this is a text file with an image suffix\n")
    failing = {"x_truncated.png", "y_bomb.png", "z_not_an_image.jpg"}
    return folder, expected, failing


def test_odd_images_are_converted_correctly(tiny_clip_model_dir, odd_folder):
    folder, expected, failing = odd_folder
    predictor = Predictor(tiny_clip_model_dir, PredictOptions(precision="fp32"))
    result = predictor.predict_files(sorted(folder.iterdir()), progress=False)
    assert [Path(p).name for p in result.images] == sorted(expected)
    assert sorted(Path(f.image).name for f in result.failures) == sorted(failing)
    reference = predictor.embed_images([expected[name] for name in sorted(expected)])
    np.testing.assert_allclose(result.embeddings, reference, atol=1e-5)


def test_broken_images_are_reported_with_reasons_and_the_rest_is_written(
    tiny_clip_model_dir, odd_folder, tmp_path
):
    folder, expected, _ = odd_folder
    out = tmp_path / "preds.parquet"
    args = ["predict", str(tiny_clip_model_dir), str(folder), "--out", str(out), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "3 images could not be read" in text
    assert "x_truncated.png: cannot decode image" in text
    assert "y_bomb.png: refused as a decompression bomb" in text
    assert "z_not_an_image.jpg: cannot decode image" in text
    assert [Path(p).name for p in read_predictions(out).images] == sorted(expected)
    loud = runner.invoke(app, [*args[:-1], "--skip-bad"])
    assert loud.exit_code == 0
    # the summary counts what was predicted, not the files given
    assert f"{len(expected)} of {len(expected) + 3} images predicted" in " ".join(
        loud.output.split()
    )


def crash_on_batch(monkeypatch, n: int) -> list[int]:
    """Make the model raise on its n-th batch; returns the images each call was given."""
    calls: list[int] = []
    original = Predictor.embed_pixels

    def embed(self, pixels):
        calls.append(len(pixels))
        if len(calls) == n:
            raise RuntimeError("killed")
        return original(self, pixels)

    monkeypatch.setattr(Predictor, "embed_pixels", embed)
    return calls


def test_a_crash_leaves_no_partial_output_and_the_rerun_resumes(
    tiny_clip_model_dir, photos, tmp_path, monkeypatch
):
    """Killed mid-job: no output file, the old submission intact, the finished rows saved in
    OUT.partial; the same command again predicts only the rest, and the result equals a run that
    was never interrupted, in input order, with no row lost or repeated."""
    from img2prompt.predict import resume

    monkeypatch.setattr(resume, "SAVE_EVERY_IMAGES", 1)  # save every batch
    out, submission = tmp_path / "preds.parquet", tmp_path / "sub.csv"
    submission.write_text("previous run\n")
    options = PredictOptions(batch_size=2, precision="fp32")
    crash_on_batch(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="killed"):
        run_predict(
            tiny_clip_model_dir, photos, options, out=out, submission=submission, progress=False
        )
    assert not out.exists()
    assert submission.read_text() == "previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.parquet.partial", "sub.csv"]
    assert not list(tmp_path.rglob("*.tmp"))

    calls = crash_on_batch(monkeypatch, 0)  # counts, never crashes
    _, result = run_predict(
        tiny_clip_model_dir, photos, options, out=out, submission=submission, progress=False
    )
    assert calls == [2, 1] and result.resumed == 2  # only the 3 images not saved before
    expected = Predictor(tiny_clip_model_dir, options).predict_files(photos, False).embeddings
    table = read_predictions(out)
    assert table.images == [str(p) for p in photos]
    np.testing.assert_allclose(table.embeddings, expected, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.parquet", "sub.csv"]


def test_resume_refuses_other_settings_and_redoes_changed_images(
    tiny_clip_model_dir, photos, tmp_path, monkeypatch
):
    from img2prompt.predict import resume

    monkeypatch.setattr(resume, "SAVE_EVERY_IMAGES", 1)
    images = []
    for photo in photos:  # a copy: one image is rewritten below
        images.append(tmp_path / photo.name)
        images[-1].write_bytes(photo.read_bytes())
    out = tmp_path / "preds.parquet"
    options = PredictOptions(batch_size=2, precision="fp32")
    crash_on_batch(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="killed"):
        run_predict(tiny_clip_model_dir, images, options, out=out, progress=False)

    crash_on_batch(monkeypatch, 0)
    other = PredictOptions(batch_size=2, precision="fp32", tta="hflip")
    with pytest.raises(InputError, match=r"another model or settings .*tta.*--restart"):
        run_predict(tiny_clip_model_dir, images, other, out=out, progress=False)

    Image.open(photos[4]).save(images[0])  # a saved row whose image then changed
    calls = crash_on_batch(monkeypatch, 0)
    _, result = run_predict(tiny_clip_model_dir, images, options, out=out, progress=False)
    assert result.resumed == 1 and sum(calls) == 4
    np.testing.assert_allclose(result.embeddings[0], result.embeddings[4], atol=1e-5)

    _, restarted = run_predict(
        tiny_clip_model_dir, images, other, out=out, progress=False, restart=True
    )
    assert restarted.resumed == 0 and len(restarted.images) == 5


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="--tta must be one of"):
        PredictOptions(tta="rotate")
    with pytest.raises(ValueError, match="--precision"):
        PredictOptions(precision="fp8")


def test_missing_input_and_empty_folder_give_clear_errors(tiny_clip_model_dir, tmp_path):
    result = runner.invoke(app, ["predict", str(tiny_clip_model_dir), str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such file or folder" in result.output
    result = runner.invoke(app, ["predict", str(tiny_clip_model_dir), str(tmp_path)])
    assert result.exit_code == 2 and "no image files" in result.output


def test_compile_auto_compiles_a_long_job_and_gives_the_eager_embeddings(
    tiny_clip_model_dir, photos, monkeypatch
):
    """`--compile auto` times the first batch and compiles a transformer when the rest of the
    job is long enough (here: any length); the short last batch is padded to keep one shape,
    and the results equal eager ones."""
    from img2prompt.predict import engine

    eager = Predictor(
        tiny_clip_model_dir, PredictOptions(precision="fp32", batch_size=2, compile=False)
    )
    expected = eager.predict_files(photos, False).embeddings
    assert not eager.engine.compiled
    short_job = Predictor(tiny_clip_model_dir, PredictOptions(precision="fp32", batch_size=2))
    short_job.predict_files(photos, False)  # a few images: far from worth a compile
    assert not short_job.engine.compiled and short_job.engine.compile_note == ""

    monkeypatch.setattr(engine, "COMPILE_AUTO_SECONDS", 0.0)
    auto = Predictor(tiny_clip_model_dir, PredictOptions(precision="fp32", batch_size=2))
    got = auto.predict_files(photos, False)
    assert auto.engine.compiled and auto.engine.compile_note.startswith("compiled")
    assert len(got.images) == len(photos) == 5  # an eager batch, a compiled one, a padded one
    np.testing.assert_allclose(got.embeddings, expected, atol=1e-4)
    convolutional = Predictor("default", PredictOptions(batch_size=2))
    convolutional.predict_files(photos, False)
    assert not convolutional.engine.compiled  # auto leaves conv nets eager: compiling did not pay


def test_a_failed_compile_falls_back_to_eager_unless_asked_for(
    tiny_clip_model_dir, photos, monkeypatch
):
    """Inductor needs a C++ compiler on CPU: `auto` runs on eagerly and says why; an explicit
    `--compile` fails loudly."""
    from img2prompt.predict import engine

    def broken_compile(model, **_):
        def forward(pixels):
            raise RuntimeError("no C++ compiler found")

        return forward

    expected = Predictor(tiny_clip_model_dir, PredictOptions(precision="fp32", batch_size=2))
    expected = expected.predict_files(photos, False).embeddings
    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(engine, "COMPILE_AUTO_SECONDS", 0.0)
    auto = Predictor(tiny_clip_model_dir, PredictOptions(precision="fp32", batch_size=2))
    got = auto.predict_files(photos, False)
    assert not auto.engine.compiled and "no C++ compiler found" in auto.engine.compile_note
    np.testing.assert_allclose(got.embeddings, expected, atol=1e-5)
    forced = Predictor(
        tiny_clip_model_dir, PredictOptions(precision="fp32", batch_size=2, compile=True)
    )
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        forced.predict_files(photos, False)


def test_auto_batch_size_keeps_about_4k_bf16_or_2k_fp32_tokens_per_pass_on_cpu(
    monkeypatch, fresh_answer
):
    """In bf16, ViT-L/14 at 224 (257 tokens) runs 16 images per pass, ViT-B/32 (50 tokens) the
    cap of 64; in 4-byte activations (fp32, int8) half the tokens; each TTA view is a row, so
    views divide the images; conv nets and GPUs get fixed sizes."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from img2prompt.data.transforms import CLIP_MEAN, CLIP_STD, PreprocessConfig
    from img2prompt.device import native_bf16
    from img2prompt.models.backbones import HFCLIPBackbone, build_backbone
    from img2prompt.predict.engine import auto_batch_size

    def clip(patch: int) -> HFCLIPBackbone:
        config = CLIPVisionConfig(
            hidden_size=8,
            intermediate_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            patch_size=patch,
            image_size=224,
        )
        preprocess = PreprocessConfig(224, 224, CLIP_MEAN, CLIP_STD)
        return HFCLIPBackbone(CLIPVisionModel(config), preprocess)

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    l14, b32 = clip(14), clip(32)
    assert (l14.tokens_per_image, b32.tokens_per_image) == (257, 50)
    assert auto_batch_size(l14, 1, cpu, "bf16") == 16 and auto_batch_size(l14, 4, cpu, "bf16") == 4
    assert auto_batch_size(b32, 1, cpu, "bf16") == 64 and auto_batch_size(b32, 2, cpu, "bf16") == 32
    for precision in ("fp32", "int8"):
        assert auto_batch_size(l14, 1, cpu, precision) == 8
        assert auto_batch_size(b32, 1, cpu, precision) == 41
    monkeypatch.setenv("IMG2PROMPT_NATIVE_BF16", "1")  # auto: as bf16 will run, or not
    assert auto_batch_size(b32, 1, cpu) == 64
    monkeypatch.setenv("IMG2PROMPT_NATIVE_BF16", "0")
    native_bf16.cache_clear()
    assert auto_batch_size(b32, 1, cpu) == 41
    convnet = build_backbone("tiny-convnext", "random")
    assert convnet.tokens_per_image is None and auto_batch_size(convnet, 1, cpu) == 32
    assert auto_batch_size(l14, 2, gpu) == 32
