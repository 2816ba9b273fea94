"""The training-free CLIP path (`index build`, `index tune`, an index folder as a model), checked
against a brute-force numpy reference of its formula, with a tiny random CLIP dual encoder saved
and loaded like openai/clip-vit-large-patch14, on real Stable Diffusion images and prompts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from img2prompt.app.cli import app
from img2prompt.errors import InputError
from img2prompt.index.build import build_index
from img2prompt.index.options import IndexBuildConfig, IndexTuneConfig, RetrievalSettings
from img2prompt.io import vector_column, write_parquet
from img2prompt.models.model import load_model
from img2prompt.predict.predictor import PredictOptions, Predictor
from tiny_checkpoints import save_tiny_clip_dual

IMAGES = 72  # real images (of ~25 distinct prompts): enough for neighbors and groups


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return save_tiny_clip_dual(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, shared_data, encoder) -> Path:
    """A prepared table of real images: several images per prompt, MiniLM targets, groups that
    join pairs of distinct prompts (so group exclusion is more than prompt exclusion)."""
    pairs = pacsv.read_csv(shared_data / "real_pairs" / "pairs.csv")
    # Square images only: on non-square ones transformers' processor floors the resized side
    # where img2prompt rounds it, a pixel's shift that the brute-force reference would see.
    square = [
        i
        for i, image in enumerate(pairs.column("image").to_pylist()[:400])
        if _is_square(shared_data / "real_pairs" / image)
    ]
    pairs = pairs.take(square[:IMAGES])
    prompts = pairs.column("prompt").to_pylist()
    distinct = list(dict.fromkeys(prompts))
    targets = encoder.encode(distinct)
    position = {p: i for i, p in enumerate(distinct)}
    rows = [position[p] for p in prompts]
    folder = tmp_path_factory.mktemp("data")
    images = [
        str(shared_data / "real_pairs" / image) for image in pairs.column("image").to_pylist()
    ]
    table = pa.table(
        {
            "id": pairs.column("id"),
            "prompt": prompts,
            "target": vector_column(targets[rows]),
            "group": np.array(rows) // 2,
            "fold": np.array(rows) % 3,
            "image": images,
        }
    )
    write_parquet(table, folder / "prompts.parquet")
    return folder


def _is_square(path: Path) -> bool:
    with Image.open(path) as image:
        return image.width == image.height


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, clip_dir, data_dir) -> Path:
    out = tmp_path_factory.mktemp("index") / "idx"
    build_index(
        IndexBuildConfig(
            data_dir, str(clip_dir), out, retrieval=RetrievalSettings(k=8), batch_size=8
        ),
        progress=False,
    )
    return out


class Reference:
    """The retrieval formula by brute force, from transformers' own CLIPModel and processor."""

    def __init__(self, clip_dir: Path, data_dir: Path) -> None:
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        self.clip = CLIPModel.from_pretrained(clip_dir).eval()
        self.processor = CLIPImageProcessor.from_pretrained(clip_dir)
        table = pq.read_table(data_dir / "prompts.parquet")
        first = {}
        for row, prompt in enumerate(table.column("prompt").to_pylist()):
            first.setdefault(prompt, row)
        self.prompts = list(first)
        self.groups = table.column("group").to_numpy()[list(first.values())]
        targets = np.stack(table.column("target").to_numpy(zero_copy_only=False))
        self.targets = targets[list(first.values())].astype(np.float64)
        tokens = AutoTokenizer.from_pretrained(clip_dir)(
            self.prompts, padding=True, truncation=True, return_tensors="pt"
        )
        with torch.no_grad():
            text = self.clip.get_text_features(**tokens)
        self.text = _unit(_tensor(text).numpy().astype(np.float64))

    def image_features(self, paths: list[Path]) -> np.ndarray:
        images = [Image.open(p).convert("RGB") for p in paths]
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            return _unit(_tensor(self.clip.get_image_features(pixel_values=pixels)).numpy())

    def predict(self, features: np.ndarray, k: int, temperature: float, exclude=None):
        s = features.astype(np.float64) @ self.text.T
        if exclude is not None:
            s = np.where(exclude, -np.inf, s)
        out = []
        for row in s:
            top = np.argsort(-row, kind="stable")[:k]
            top = top[np.isfinite(row[top])]
            w = np.exp((row[top] - row[top].max()) / temperature)
            w /= w.sum()
            out.append(_unit((w[:, None] * self.targets[top]).sum(0)))
        return np.stack(out)


def _tensor(output):
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def reference(clip_dir, data_dir) -> Reference:
    return Reference(clip_dir, data_dir)


def _kaggle_images(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "kaggle_sample" / "images").glob("*.png"))


@pytest.mark.parametrize("k", [8, 1000])
def test_predictions_equal_brute_force(index_dir, reference, shared_data, k):
    """k = 8 and k = every prompt (1000 is capped at the index size)."""
    paths = _kaggle_images(shared_data)
    model = load_model(index_dir)
    assert len(model.index) == len(reference.prompts) < IMAGES  # one row per distinct prompt
    model.configure_search(k, 0.05)
    pixels = reference.processor(
        images=[Image.open(p).convert("RGB") for p in paths], return_tensors="pt"
    )["pixel_values"]
    with torch.no_grad():
        got = model(pixels).numpy()
    features = reference.image_features(paths)
    np.testing.assert_allclose(got, reference.predict(features, k, 0.05), atol=2e-5)
    # k = all is not k = 8: the test can tell them apart
    top8, everything = (reference.predict(features, k, 0.05) for k in (8, 10**3))
    assert np.abs(top8 - everything).max() > 1e-3


def test_predict_cli_on_real_images(index_dir, reference, shared_data, tmp_path):
    """`img2prompt predict INDEX IMAGES` through the real CLI; --k / --temperature override the
    index's own; Pillow preprocessing is within float error of transformers' processor."""
    paths = _kaggle_images(shared_data)
    features = reference.image_features(paths)
    runner = CliRunner()
    for extra, k, temperature in (([], 8, 0.05), (["--k", "3", "--temperature", "0.2"], 3, 0.2)):
        out = tmp_path / f"pred-{k}.parquet"
        args = ["predict", str(index_dir), *map(str, paths), "--out", str(out)]
        result = runner.invoke(app, [*args, "--precision", "fp32", "--workers", "0", "-q", *extra])
        assert result.exit_code == 0, result.output
        got = np.stack(pq.read_table(out).column("embedding").to_numpy(zero_copy_only=False))
        np.testing.assert_allclose(got, reference.predict(features, k, temperature), atol=1e-4)
    result = runner.invoke(
        app, ["predict", "default", str(paths[0]), "--k", "3", "--out", str(tmp_path / "x.parquet")]
    )
    assert result.exit_code == 2 and "retrieval index models only" in result.output


def test_interrupted_build_resumes_without_loss_or_duplicates(
    clip_dir, data_dir, index_dir, tmp_path, monkeypatch
):
    from img2prompt.index import build
    from img2prompt.index.clip import TextEncoder

    real = TextEncoder.encode
    calls: list[int] = []
    fail_at = {"call": 3}

    def failing(self, texts, batch_size=64, bar=None):
        calls.append(len(texts))
        if len(calls) == fail_at["call"]:
            raise RuntimeError("interrupted")
        return real(self, texts, batch_size, bar)

    out = tmp_path / "idx"
    cfg = IndexBuildConfig(
        data_dir, str(clip_dir), out, retrieval=RetrievalSettings(k=8), batch_size=4, chunk_size=8
    )
    monkeypatch.setattr(TextEncoder, "encode", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        build_index(cfg, progress=False)
    chunks = sorted((build.partial_folder(out) / "chunks").glob("chunk-*.npy"))
    assert len(chunks) == 2 and not out.exists()
    with pytest.raises(InputError, match="chunk_size"):  # another job into the same folder
        build_index(IndexBuildConfig(data_dir, str(clip_dir), out, chunk_size=5), progress=False)
    calls.clear()
    fail_at["call"] = -1
    report = build_index(cfg, progress=False)
    assert report.resumed == 16 and report.embedded == report.prompts - 16
    assert sum(calls) == report.prompts - 16 and not build.partial_folder(out).exists()
    resumed, whole = load_model(out).index, load_model(index_dir).index
    assert len(resumed) == len(whole)
    np.testing.assert_allclose(resumed.features(), whole.features(), atol=1e-6)
    np.testing.assert_array_equal(resumed.targets, whole.targets)
    assert resumed.prompts == whole.prompts


def test_tune_picks_best_of_grid_and_oof_excludes_own_group(
    clip_dir, data_dir, index_dir, reference, tmp_path
):
    from img2prompt.index.tune import Exclusion, excluded_neighbors, tune_index

    index = tmp_path / "idx"
    shutil.copytree(index_dir, index)
    k_grid, t_grid = [1, 2, 4, 16], [0.02, 0.1, 1.0]
    cfg = IndexTuneConfig(index, data_dir, k_grid, t_grid, precision="fp32", workers=0)
    result = tune_index(cfg, progress=False)

    table = pq.read_table(data_dir / "prompts.parquet")
    paths = [Path(p) for p in table.column("image").to_pylist()]
    features = reference.image_features(paths)
    groups = table.column("group").to_numpy()
    prompts = table.column("prompt").to_pylist()
    targets = np.stack(table.column("target").to_numpy(zero_copy_only=False))
    same_group = groups[:, None] == reference.groups[None, :]
    same_prompt = np.array(prompts)[:, None] == np.array(reference.prompts)[None, :]
    similar = targets @ reference.targets.T >= 0.8
    own = same_group | same_prompt | similar
    assert (similar & ~same_group & ~same_prompt).any()  # the cosine rule leaves out more
    brute = np.array(
        [
            [(reference.predict(features, k, t, own) * targets).sum(1).mean() for t in t_grid]
            for k in k_grid
        ]
    )
    np.testing.assert_allclose(result.scores, brute, atol=1e-4)
    best = np.unravel_index(np.argmax(brute), brute.shape)
    assert (result.k, result.temperature) == (k_grid[best[0]], t_grid[best[1]])
    config = json.loads((index / "model.json").read_text())["config"]
    assert (config["k"], config["temperature"]) == (result.k, result.temperature)
    assert load_model(index).cfg.k == result.k

    oof = pq.read_table(result.oof)
    assert oof.column_names == ["id", "image", "fold", "embedding", "cosine"]
    embeddings = np.stack(oof.column("embedding").to_numpy(zero_copy_only=False))
    expected = reference.predict(features, result.k, result.temperature, own)
    np.testing.assert_allclose(embeddings, expected, atol=1e-4)
    cosines = oof.column("cosine").to_numpy()
    np.testing.assert_allclose(cosines, (expected * targets).sum(1), atol=1e-4)
    # No neighbor shares the image's group; without the exclusion many would (the leak).
    model = load_model(index)
    exclusion = Exclusion(prompts, groups)
    _, ids = excluded_neighbors(model.index, features.astype(np.float32), 16, exclusion)
    assert not (reference.groups[ids] == groups[:, None]).any()
    _, leaked = model.index.search(features.astype(np.float32), 16)
    assert (reference.groups[leaked] == groups[:, None]).any()


def _brute_force_recall(out: Path, k: int, nprobe: int) -> float:
    """recall@k of the stored index recomputed by hand: the same sampled rows as queries (each
    one's own row left out), exact neighbours by a full numpy product over the stored vectors."""
    import faiss

    from img2prompt.index.build import RECALL_QUERIES

    index = faiss.read_index(str(out / "index.faiss"))
    vectors = index.reconstruct_n(0, index.ntotal)
    n = len(vectors)
    rows = np.sort(np.random.default_rng(1).choice(n, size=min(RECALL_QUERIES, n), replace=False))
    faiss.extract_index_ivf(index).nprobe = nprobe
    found = index.search(vectors[rows], k + 1)[1]
    shares = []
    for row, approx in zip(rows, found, strict=True):
        scores = vectors @ vectors[row]
        scores[row] = -np.inf
        exact = set(np.argsort(-scores, kind="stable")[:k].tolist())
        approx_k = [int(i) for i in approx if i != row][:k]
        shares.append(len(exact & set(approx_k)) / k)
    return float(np.mean(shares))


def test_approximate_index_reports_recall(clip_dir, data_dir, tmp_path, shared_data, monkeypatch):
    """`index build --search ivf` through the CLI: it prints the measured recall and stores
    it, and it is the recall a brute-force search finds."""
    import img2prompt.index.build

    # Eight lists on this small table (the rule gives one), one searched: neighbours are missed.
    monkeypatch.setattr(img2prompt.index.build, "ivf_lists", lambda n: 8)
    out = tmp_path / "ivf"
    args = ["index", "build", str(data_dir), "--clip", str(clip_dir), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--k", "4", "--search", "ivf", "--nprobe", "1", "-q"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "model.json").read_text())
    recall = manifest["index"]["approx_recall"]
    assert manifest["index"]["approx_recall_k"] == 4
    assert recall == pytest.approx(_brute_force_recall(out, k=4, nprobe=1), abs=1e-9)
    assert recall < 1.0
    assert f"recall@4 vs exact search {recall:.4f}" in result.output
    predictor = Predictor(out, PredictOptions(precision="fp32", workers=0))
    got = predictor.predict_files(_kaggle_images(shared_data), progress=False).embeddings
    assert got.shape == (7, 384) and np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


def test_bad_inputs_name_the_file(clip_dir, tmp_path):
    table = tmp_path / "prompts.parquet"
    write_parquet(pa.table({"id": ["a"], "prompt": ["x"]}), table)
    with pytest.raises(InputError, match=r"missing columns.*target") as error:
        build_index(IndexBuildConfig(table, str(clip_dir), tmp_path / "i"), progress=False)
    assert str(table) in str(error.value)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not an index folder"):
        build_index(IndexBuildConfig(table, str(clip_dir), tmp_path / "other"), progress=False)
    with pytest.raises(ValueError, match="--k must be"):
        IndexBuildConfig(table, str(clip_dir), tmp_path / "i", retrieval=RetrievalSettings(k=0))


@pytest.fixture(scope="module")
def index_describer(index_dir, small_bank):
    from img2prompt.describer import Describer

    options = PredictOptions(precision="fp32", workers=0)
    return Describer(str(index_dir), small_bank, mode="fast", predict_options=options)


def test_describe_index_model_nearest_prompts_and_interrogation(
    index_dir, index_describer, reference, small_bank, shared_data, encoder
):
    from img2prompt.text.bank import load_bank

    paths = _kaggle_images(shared_data)[:3]
    run = index_describer.describe_files(paths)
    # The interrogator keeps CLIP's text tower only (the model holds the image tower).
    interrogator_clip = index_describer.interrogator.encoder.clip
    assert not any(p.numel() for p in interrogator_clip.vision_model.parameters())
    features = reference.image_features(paths)
    expected = reference.predict(features, 8, 0.05)
    bank = load_bank(small_bank)
    subjects = [t for t, c in zip(bank.texts, bank.categories, strict=True) if c == "subjects"]
    subject_features = _unit(_tensor(_text_features(reference, subjects)).numpy())
    for d, feature, vector in zip(run.descriptions, features, expected, strict=True):
        np.testing.assert_allclose(d.embedding, vector, atol=1e-4)
        assert d.prompt  # the MiniLM decode path is still there
        s = reference.text @ feature
        top = np.argsort(-s, kind="stable")[:5]
        assert [t for t, _ in d.nearest_prompts] == [reference.prompts[i] for i in top]
        np.testing.assert_allclose([c for _, c in d.nearest_prompts], s[top], atol=1e-4)
        phrases = d.interrogation.split(", ")
        assert phrases[0] == subjects[int(np.argmax(subject_features @ feature))]
        assert set(phrases) <= set(bank.texts) and len(set(phrases)) == len(phrases)
        whole = _unit(_tensor(_text_features(reference, [d.interrogation])).numpy())[0]
        assert whole @ feature >= subject_features.max(0) @ feature - 1e-9 or len(phrases) == 1
        minilm = encoder.encode([d.interrogation])[0]
        assert d.interrogation_match == pytest.approx(float(minilm @ d.embedding), abs=1e-4)
    # Images interrogated together (one encoder batch a step) get what each gets alone.
    interrogator = index_describer.interrogator
    together = interrogator.interrogate(features)
    alone = [interrogator.interrogate(features[i : i + 1])[0] for i in range(len(features))]
    assert [r.prompt for r in together] == [r.prompt for r in alone]
    np.testing.assert_allclose(
        [r.clip_similarity for r in together], [r.clip_similarity for r in alone], atol=1e-5
    )
    # The command line shows them too (JSON here).
    result = CliRunner().invoke(
        app,
        [
            "describe",
            *map(str, paths),
            "--model",
            str(index_dir),
            "--bank",
            str(small_bank),
            "--mode",
            "fast",
            "--json",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout)["results"][0]
    assert (
        len(first["nearest_prompts"]) == 5
        and first["interrogation"]
        and "interrogation_match" in first
    )


def _text_features(reference: Reference, texts: list[str]):
    from transformers import AutoTokenizer

    clip_dir = Path(reference.clip.name_or_path)
    tokens = AutoTokenizer.from_pretrained(clip_dir)(
        texts, padding=True, truncation=True, return_tensors="pt"
    )
    with torch.no_grad():
        return reference.clip.get_text_features(**tokens)


def test_serve_and_ensemble_take_an_index(
    index_dir, index_describer, data_dir, shared_data, tmp_path
):
    """`serve --model INDEX` answers with the nearest prompts; `index tune`'s OOF file (through
    the CLI) is what `ensemble fit` reads."""
    from fastapi.testclient import TestClient

    from img2prompt.app.serve.app import create_app

    image = _kaggle_images(shared_data)[0]
    with TestClient(create_app(index_describer)) as client:
        answer = client.post("/api/describe", files={"image": (image.name, image.read_bytes())})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["embedding"]) == 384 and len(body["nearest_prompts"]) == 5
    assert body["interrogation"] and -1 <= body["interrogation_match"] <= 1

    index = tmp_path / "idx"
    shutil.copytree(index_dir, index)
    runner = CliRunner()
    tune = ["index", "tune", str(index), "--data", str(data_dir), "--k-grid", "2,8"]
    tuned = runner.invoke(
        app, [*tune, "--temperature-grid", "0.05,0.5", "--precision", "fp32", "-q"]
    )
    assert tuned.exit_code == 0, tuned.output
    assert "best k=" in tuned.output
    other = tmp_path / "k1.parquet"  # a second member: k = 1, model.json left as tuned
    tuned = runner.invoke(app, [*tune[:-1], "1", "--oof", str(other), "--no-write", "-q"])
    assert tuned.exit_code == 0, tuned.output
    members = [str(index / "oof.parquet"), str(other)]
    fit = ["ensemble", "fit", *members, "--truth", str(data_dir), "--out", str(tmp_path / "w")]
    fitted = runner.invoke(app, fit)
    assert fitted.exit_code == 0, fitted.output
    for member in members:
        score = pq.read_table(member).column("cosine").to_numpy().mean()
        assert f"{score:.4f}  weight" in fitted.output


def test_index_folder_is_self_contained(clip_dir, data_dir, index_dir, shared_data, tmp_path):
    """An index moved elsewhere, its source CLIP folder gone, loads and predicts the same: the
    CLIP inside it loads like an openai hub folder."""
    from transformers import AutoTokenizer, CLIPModel, CLIPProcessor

    source = shutil.copytree(clip_dir, tmp_path / "source-clip")
    built = tmp_path / "built"
    build_index(
        IndexBuildConfig(
            data_dir, str(source), built, retrieval=RetrievalSettings(k=8), batch_size=8
        ),
        progress=False,
    )
    shutil.rmtree(source)
    moved = shutil.move(built, tmp_path / "elsewhere" / "idx")
    CLIPModel.from_pretrained(Path(moved) / "clip")
    CLIPProcessor.from_pretrained(Path(moved) / "clip")
    AutoTokenizer.from_pretrained(Path(moved) / "clip")
    images = _kaggle_images(shared_data)[:3]
    options = PredictOptions(precision="fp32", workers=0)
    got = Predictor(moved, options).predict_files(images, progress=False).embeddings
    want = Predictor(index_dir, options).predict_files(images, progress=False).embeddings
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.slow
def test_index_build_over_two_torchrun_ranks_equals_one_process(
    tmp_path, clip_dir, data_dir, index_dir
):
    """Chunk c is embedded by rank c mod 2 and rank 0 builds the index: the folder holds the
    same prompts, targets and vectors as a single process's."""
    import os
    import subprocess
    import sys

    import faiss

    out = tmp_path / "ranked"
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [
        str(torchrun),
        "--nproc-per-node",
        "2",
        "-m",
        "img2prompt",
        "index",
        "build",
        str(data_dir),
        "--clip",
        str(clip_dir),
        "--out",
        str(out),
        "--k",
        "8",
        "--batch-size",
        "8",
        "--chunk-size",
        "5",
        "-q",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "chunks over 2 ranks" in " ".join(done.stderr.split())
    one, two = load_model(index_dir).index, load_model(out).index
    assert one.prompts == two.prompts
    np.testing.assert_array_equal(np.asarray(one.targets), np.asarray(two.targets))
    vectors = [faiss.rev_swig_ptr(i.faiss.get_xb(), i.faiss.ntotal * i.dim) for i in (one, two)]
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)
    assert not out.with_name(out.name + ".partial").exists()
