import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from img2prompt.data.sources import read_source
from img2prompt.errors import ErrorLog, InputError


def read(path, policy="fail", images=None):
    errors = ErrorLog(policy)
    return read_source(path, errors, images), errors


def png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), "red").save(path)
    return path


def id_prompt_line(path):
    rows, _ = read(path)
    return [(r.id, r.prompt_raw, r.line) for r in rows]


def test_txt_one_prompt_per_line(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("a red fox\n\n  \nan owl at night\r\n")
    assert id_prompt_line(f) == [
        ("p:1", "a red fox", 1),
        ("p:4", "an owl at night", 4),
    ]


def test_csv_with_quotes_and_multiline_field(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text('id,prompt\na,"a cat, ""quoted"""\nb,"two\nlines"\nc,plain\n')
    assert id_prompt_line(f) == [
        ("a", 'a cat, "quoted"', 2),
        ("b", "two\nlines", 3),
        ("c", "plain", 5),
    ]


def test_tsv_and_jsonl_and_json(tmp_path):
    (tmp_path / "p.tsv").write_text("text\tseed\na fox, at dusk\t7\n")
    (tmp_path / "p.jsonl").write_text('{"prompt": "an owl", "id": 5}\n"just a string"\n')
    (tmp_path / "p.json").write_text(json.dumps(["a", {"caption": "b", "cfg": 7.5}]))
    tsv, _ = read(tmp_path / "p.tsv")
    assert tsv[0].prompt_raw == "a fox, at dusk" and tsv[0].meta == {"seed": "7"}
    jsonl, _ = read(tmp_path / "p.jsonl")
    assert [(r.id, r.prompt_raw) for r in jsonl] == [("5", "an owl"), ("p:2", "just a string")]
    js, _ = read(tmp_path / "p.json")
    assert [(r.prompt_raw, r.meta) for r in js] == [("a", {}), ("b", {"cfg": 7.5})]


def test_kaggle_prompts_csv_with_images(kaggle_sample):
    rows, _ = read(kaggle_sample / "prompts.csv", images=kaggle_sample / "images")
    assert len(rows) == 7
    assert rows[0].id == "20057f34d"
    assert rows[0].image == str((kaggle_sample / "images" / "20057f34d.png").resolve())


def test_diffusiondb_metadata_parquet(tmp_path):
    png(tmp_path / "imgs" / "part-000001" / "x1.png")
    png(tmp_path / "imgs" / "x2.png")
    table = pa.table(
        {
            "image_name": ["x1.png", "x2.png"],
            "prompt": ["a castle", "a castle"],
            "part_id": [1, 2],
            "seed": [11, 12],
            "step": [50, 50],
            "cfg": [7.0, 7.0],
            "sampler": ["k_lms", "k_lms"],
            "width": [512, 512],
            "height": [512, 512],
            "user_name": ["u", "v"],
        }
    )
    pq.write_table(table, tmp_path / "metadata.parquet")
    rows, _ = read(tmp_path / "metadata.parquet", images=tmp_path / "imgs")
    assert [r.id for r in rows] == ["x1.png", "x2.png"]
    assert rows[0].image.endswith("imgs/part-000001/x1.png")
    assert rows[1].image.endswith("imgs/x2.png")
    assert rows[0].meta == {
        "seed": 11,
        "cfg": 7.0,
        "step": 50,
        "sampler": "k_lms",
        "width": 512,
        "height": 512,
    }


def test_image_column_is_relative_to_the_table(tmp_path):
    png(tmp_path / "data" / "images" / "a.png")
    (tmp_path / "data" / "t.csv").write_text("prompt,image\na red fox,images/a.png\n")
    rows, _ = read(tmp_path / "data" / "t.csv")
    assert rows[0].image == str((tmp_path / "data" / "images" / "a.png").resolve())


# --- bad input: a clear error naming file and line, or skipped and counted -------------------

BAD_CASES = {
    "wrong field count": ("p.csv", b"id,prompt\na,fine\nb,too,many\nc,ok\n", "p.csv:3", 2),
    "non-utf8 byte": ("p.txt", b"good one\nbad \xff byte\nanother\n", "p.txt:2", 2),
    "non-utf8 in csv": ("p.csv", b"prompt\nok\nbad \xc3\x28\nok too\n", "p.csv:3", 2),
    "invalid json": ("p.jsonl", b'{"prompt": "a"}\n{"prompt": \n{"prompt": "b"}\n', "p.jsonl:2", 2),
    "prompt not text": ("p.jsonl", b'{"prompt": "a"}\n{"prompt": 5}\n', "p.jsonl:2", 1),
    "no prompt column": ("p.csv", b"id,words\n1,a cat\n", "p.csv:2", 0),
    "bad quoting": ("p.csv", b'prompt\n"ok"\n"bad"x"\n', "p.csv:3", 1),
    "NUL byte": ("p.txt", b"fine\nbin\x00ary\n", "p.txt:2", 1),
    "deep JSON": ("p.jsonl", b'"ok"\n' + b"[" * 100_000 + b"\n", "p.jsonl:2", 1),
    "bad part_id": ("p.csv", b"id,prompt,part_id\nx,a cat,abc\n", "p.csv:2", 0),
}


def _images_for(content, folder):
    """The part_id case needs --images; the others must fail without it."""
    return folder if b"part_id" in content else None


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_rows_fail_with_file_and_line(tmp_path, case):
    name, content, where, _ = BAD_CASES[case]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError) as info:
        read(tmp_path / name, images=_images_for(content, tmp_path))
    assert str(info.value).startswith(str(tmp_path / where) + ":")


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_rows_are_skipped_and_counted(tmp_path, case):
    name, content, where, good = BAD_CASES[case]
    (tmp_path / name).write_bytes(content)
    rows, errors = read(tmp_path / name, policy="skip", images=_images_for(content, tmp_path))
    assert len(rows) == good
    assert errors.count >= 1
    assert errors.examples[0].startswith(str(tmp_path / where))


def test_empty_file_and_header_only(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "header.csv").write_text("id,prompt\n")
    with pytest.raises(InputError, match=r"empty\.txt: file is empty"):
        read(tmp_path / "empty.txt")
    with pytest.raises(InputError, match=r"header\.csv: no prompts found"):
        read(tmp_path / "header.csv")
    rows, errors = read(tmp_path / "empty.txt", policy="skip")
    assert rows == [] and errors.count == 1


def test_missing_image_names_file_line_and_path(tmp_path):
    (tmp_path / "p.csv").write_text("imgId,prompt\nabc,a red fox\n")
    (tmp_path / "imgs").mkdir()
    with pytest.raises(InputError, match=r"p.csv:2: image not found: .*imgs/abc.png"):
        read(tmp_path / "p.csv", images=tmp_path / "imgs")


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read(tmp_path / "nope.csv")
    (tmp_path / "p.xlsx").write_bytes(b"x")
    with pytest.raises(InputError, match="unknown format"):
        read(tmp_path / "p.xlsx")


def test_utf16_file_is_rejected_whole(tmp_path):
    (tmp_path / "p.txt").write_bytes("a blue dog running\nan owl\n".encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16 or UTF-32; save it as UTF-8"):
        read(tmp_path / "p.txt")
    rows, errors = read(tmp_path / "p.txt", policy="skip")
    assert rows == [] and errors.count == 1


def test_tsv_quotes_are_text(tmp_path):
    (tmp_path / "p.tsv").write_text('id\tprompt\n1\t"Starry night" by van gogh, oil\n')
    rows, _ = read(tmp_path / "p.tsv")
    assert rows[0].prompt_raw == '"Starry night" by van gogh, oil'


def test_parquet_without_prompt_column_lists_its_columns(tmp_path):
    pq.write_table(pa.table({"words": ["a"], "n": [1]}), tmp_path / "p.parquet")
    with pytest.raises(InputError, match=r"got \['words', 'n'\]"):
        read(tmp_path / "p.parquet")


def test_a_folder_is_read_as_images_with_embedded_prompts(tmp_path):
    with pytest.raises(InputError, match="read as SD images with embedded prompts; it has none"):
        read(tmp_path)
    (tmp_path / "notes.txt").write_text("a prompt in a text file is not an image\n")
    with pytest.raises(InputError, match="it has none"):
        read(tmp_path)
