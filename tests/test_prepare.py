"""`img2prompt data prepare` end to end, through the command line a user types."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from img2prompt.app.cli import app
from img2prompt.data.table import read_prepared
from img2prompt.errors import InputError
from img2prompt.predict.submission import read_submission

runner = CliRunner()


def prepare(*args):
    result = runner.invoke(app, ["data", "prepare", "--quiet", *map(str, args)])
    return result


def load(out):
    table = pq.read_table(out / "prompts.parquet")
    manifest = json.loads((out / "manifest.json").read_text())
    return table, manifest


def test_kaggle_sample_becomes_a_training_table(kaggle_sample, tmp_path):
    out = tmp_path / "data"
    result = prepare(
        kaggle_sample / "prompts.csv",
        "--images",
        kaggle_sample / "images",
        "--out",
        out,
        "--folds",
        "3",
    )
    assert result.exit_code == 0, result.output
    table, manifest = load(out)
    assert table.column_names[:7] == [
        "id",
        "prompt",
        "prompt_raw",
        "target",
        "group",
        "fold",
        "image",
    ]
    assert table.schema.field("target").type == pa.list_(pa.float32())
    ids, truth = read_submission(kaggle_sample / "sample_submission.csv")
    assert table["id"].to_pylist() == ids  # input order kept
    targets = np.array(table["target"].to_pylist(), dtype=np.float32)
    assert np.abs(targets - truth).max() <= 1e-5
    assert all(
        path.endswith(f"{i}.png") for i, path in zip(ids, table["image"].to_pylist(), strict=True)
    )
    assert sorted(set(table["fold"].to_pylist())) == [0, 1, 2]
    assert manifest["counts"]["rows"] == 7 and manifest["counts"]["rows_read"] == 7
    assert manifest["encoder"]["dim"] == 384
    assert "rows written" in result.output

    # The one reader every stage uses gives back what was written, images resolved.
    read = read_prepared(out, need=("target", "fold", "image", "group"))
    assert read.ids == ids and read.prompts == table["prompt"].to_pylist()
    np.testing.assert_allclose(read.targets, truth, atol=1e-5)
    assert read.folds.tolist() == table["fold"].to_pylist()
    assert all(image.is_file() for image in read.images)
    assert read.encoder == manifest["encoder"]["spec"]
    assert read.subset(np.array([2, 0])).ids == [ids[2], ids[0]]


@pytest.fixture
def corpus(tmp_path):
    """Three prompts with images (one a near-duplicate), text rows, markup and junk."""
    images = tmp_path / "corpus" / "images"
    images.mkdir(parents=True)
    rows = []
    for name, prompt in [
        ("a1", "a lighthouse on a rocky cliff at sunset, oil painting"),
        ("a2", "a lighthouse on a rocky cliff at sunset, oil painting"),
        ("a3", "((a lighthouse)) on a rocky cliff at sunset, (oil painting:1.2)"),
        ("b1", "a lighthouse on a rocky cliff at sunset, an oil painting"),  # near-dup of a
        ("b2", "a lighthouse on a rocky cliff at sunset, an oil painting"),
        ("c1", "a bowl of ramen with a soft boiled egg, food photography"),
    ]:
        Image.new("RGB", (8, 8), "blue").save(images / f"{name}.png")
        rows.append({"id": name, "prompt": prompt, "image": f"images/{name}.png"})
    rows += [
        {"id": "t1", "prompt": "a bowl of ramen with a soft boiled egg, food photography"},
        {"id": "t2", "prompt": "a cyberpunk street market at night, neon reflections"},
        {"id": "t3", "prompt": "cat"},
        {"id": "t4", "prompt": "一只在雪地里睡觉的红狐狸"},
        {"id": "t5", "prompt": "[[ ]]"},
    ]
    path = tmp_path / "corpus" / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return path


def test_images_of_a_kept_prompt_are_all_kept_and_share_group_and_fold(corpus, tmp_path):
    out = tmp_path / "out"
    result = prepare(corpus, "--out", out, "--folds", "2", "--dedup-threshold", "0.95")
    assert result.exit_code == 0, result.output
    table, manifest = load(out)
    rows = {r["id"]: r for r in table.to_pylist()}
    assert sorted(rows) == ["a1", "a2", "a3", "c1", "t2"]
    assert rows["a3"]["prompt"] == "a lighthouse on a rocky cliff at sunset, oil painting"
    assert rows["a3"]["prompt_raw"].startswith("((a lighthouse))")
    assert len({(rows[i]["group"], rows[i]["fold"]) for i in ("a1", "a2", "a3")}) == 1
    removed = manifest["counts"]["removed"]
    assert removed["empty after cleaning"] == 1
    assert removed["under 50% Latin letters"] == 1
    assert removed["fewer than 3 words"] == 1
    assert removed["exact duplicates"] == 1  # t1 repeats c1's prompt without an image
    assert removed["near duplicates"] == 2  # b1 and b2: the prompt and both its images
    assert manifest["counts"]["prompts"] == 3


def test_groups_never_straddle_folds(shared_data, tmp_path, encoder):
    subjects = json.loads((shared_data / "prompt_banks" / "magicprompt_subjects.json").read_text())
    rng = np.random.default_rng(0)
    picked = [subjects[i] for i in rng.choice(len(subjects), 300, replace=False)]
    styles = ["oil painting", "digital art", "photograph", "watercolor"]
    lines = [f"{s}, {styles[i % 4]}" for i, s in enumerate(picked)]
    lines += [f"{s}, {styles[(i + 1) % 4]}" for i, s in enumerate(picked[:150])]
    (tmp_path / "p.txt").write_text("\n".join(lines))
    out = tmp_path / "out"
    result = prepare(
        tmp_path / "p.txt",
        "--out",
        out,
        "--folds",
        "5",
        "--dedup-threshold",
        "0.97",
        "--group-threshold",
        "0.7",
        "--min-words",
        "1",
    )
    assert result.exit_code == 0, result.output
    table, manifest = load(out)
    targets = np.array(table["target"].to_pylist(), dtype=np.float64)
    groups, folds = np.array(table["group"]), np.array(table["fold"])
    similar = targets @ targets.T >= 0.7 - 1e-6
    a, b = np.nonzero(similar)
    assert (groups[a] == groups[b]).all()  # every similar pair shares a group...
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1  # ...and every group sits in one fold
    assert 1 < manifest["counts"]["largest_group"] < len(table)
    assert max(manifest["counts"]["fold_rows"]) - min(manifest["counts"]["fold_rows"]) <= max(
        np.bincount(groups)
    )
    assert "largest group" in result.output


def test_bad_row_fails_with_location_and_writes_nothing(tmp_path):
    (tmp_path / "p.csv").write_bytes(b"prompt\na red fox in the snow\nbad \xff byte here\n")
    result = prepare(tmp_path / "p.csv", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert f"{tmp_path / 'p.csv'}:3: not valid UTF-8" in result.output
    assert not (tmp_path / "out" / "prompts.parquet").exists()


def test_on_error_skip_counts_rows_in_summary_and_manifest(tmp_path):
    (tmp_path / "p.csv").write_bytes(
        b"prompt,seed\na red fox in the snow,1\nbad \xff byte here,2\nan owl,at,night\n"
        b"a ship in a bottle on a shelf,3\n"
    )
    result = prepare(
        tmp_path / "p.csv", "--out", tmp_path / "out", "--on-error", "skip", "--folds", "1"
    )
    assert result.exit_code == 0, result.output
    table, manifest = load(tmp_path / "out")
    assert table["seed"].to_pylist() == ["1", "3"]
    assert manifest["counts"]["removed"]["bad rows skipped (--on-error skip)"] == 2
    assert len(manifest["skipped_errors"]) == 2
    assert "p.csv:3" in result.output and "p.csv:4" in result.output


def test_interrupted_prepare_resumes_to_the_identical_table(corpus, tmp_path, monkeypatch):
    import img2prompt.data.prepare as stage
    import img2prompt.targets.encoder as embed

    clean = tmp_path / "clean"
    assert (
        prepare(corpus, "--out", clean, "--cache-dir", tmp_path / "c1", "--folds", "2").exit_code
        == 0
    )

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        patch.setattr(stage, "near_duplicates", crash)  # dies after the targets were embedded
        result = prepare(corpus, "--out", out, "--cache-dir", tmp_path / "c2", "--folds", "2")
        assert result.exit_code == 130  # what a shell reports for Ctrl-C
    assert not (out / "prompts.parquet").exists()

    calls = []
    original = embed.TargetEncoder.encode

    def counting_encode(self, texts, **kwargs):
        calls.append(texts)
        return original(self, texts, **kwargs)

    monkeypatch.setattr(embed.TargetEncoder, "encode", counting_encode)
    assert (
        prepare(corpus, "--out", out, "--cache-dir", tmp_path / "c2", "--folds", "2").exit_code == 0
    )
    assert calls == []  # every target came from the cache
    assert (
        pq.read_table(out / "prompts.parquet")
        .drop(["source"])
        .equals(pq.read_table(clean / "prompts.parquet").drop(["source"]))
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dedup-threshold", "1.5"], "--dedup-threshold must be a cosine in (0, 1]"),
        (["--min-words", "9", "--max-words", "3"], "--min-words <= --max-words"),
        (["--folds", "50"], "cannot make 50 folds"),
    ],
)
def test_bad_options_give_a_clear_message(corpus, tmp_path, args, message):
    result = prepare(corpus, "--out", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_user_text_in_errors_is_printed_verbatim(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"[/INST]": "a red cat on a mat"}\n')
    result = prepare(tmp_path / "p.jsonl", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "[/INST]" in result.output


def test_out_must_be_a_folder(tmp_path, corpus):
    (tmp_path / "taken").write_text("x")
    result = prepare(corpus, "--out", tmp_path / "taken")
    assert result.exit_code == 2
    assert "--out must be a folder" in result.output


def test_help_teaches():
    result = runner.invoke(app, ["data", "prepare", "--help"])
    assert result.exit_code == 0
    for option in [
        "--images",
        "--min-words",
        "--max-words",
        "--dedup-threshold",
        "--folds",
        "--group-threshold",
        "--encoder",
        "--batch-size",
        "--on-error",
    ]:
        assert option in result.output


def test_the_installed_command_runs():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "img2prompt", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("img2prompt ")


def test_the_prepared_table_reader_names_what_is_wrong(tmp_path):
    """Every stage reads prepared tables through `read_prepared`: a plain prompt table works
    (`text`/`imgId` columns), and a missing column, an empty prompt, a duplicate id or a broken
    target stops with the file and row named."""
    path = tmp_path / "t.parquet"
    vectors = [[1.0, 0.0], [0.0, 2.0], [1.0, 0.0]]
    pq.write_table(
        pa.table({"imgId": ["a", "b", "c"], "text": ["x", "y", "x"], "target": vectors}), path
    )
    table = read_prepared(path, need=("target",), want=("group", "fold"))
    assert table.ids == ["a", "b", "c"] and table.groups is None
    np.testing.assert_allclose(table.targets, [[1, 0], [0, 1], [1, 0]])  # unit rows
    assert table.distinct_prompts().ids == ["a", "b"] and table.rows_read == 3
    assert read_prepared(path, limit=2).prompts == ["x", "y"]
    with pytest.raises(InputError, match=r"t.parquet: missing columns \['image'\].*--images"):
        read_prepared(path, need=("image",))
    cases = {
        "row 2: empty prompt": {"id": ["a", "b"], "prompt": ["x", " "]},
        "'a' appears 2 times": {"id": ["a", "a"], "prompt": ["x", "y"]},
        "row 2: target is zero, NaN or infinite": {
            "id": ["a", "b"],
            "prompt": ["x", "y"],
            "target": [[1.0, 0.0], [float("nan"), 0.0]],
        },
        "missing columns \\['prompt'\\]": {"id": ["a"], "words": ["x"]},
    }
    for message, columns in cases.items():
        pq.write_table(pa.table(columns), path)
        with pytest.raises(InputError, match=message):
            read_prepared(path, need=("target",) if "target" in columns else ())
    path.write_text("not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_prepared(path)
