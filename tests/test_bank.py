"""Prompt banks: reading every input kind, build/add round trips, encoder checks, the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

import img2prompt.io
from bank_helpers import PHRASES, STYLES, CountingEncoder, write_lines
from img2prompt.app.cli import app
from img2prompt.errors import ErrorLog, InputError
from img2prompt.text import bank as bank_module
from img2prompt.text.bank import (
    MANIFEST_FILE,
    add_to_bank,
    build_bank,
    default_bank,
    derive_words,
    load_bank,
    read_entries,
    vocabulary_entries,
)
from img2prompt.text.templates import expand_templates, fix_articles

runner = CliRunner()


def _inputs(tmp_path):
    """A TXT list, a CSV with category and frequency columns, and a phrase tree with counts."""
    txt = write_lines(tmp_path / "subjects.txt", [*PHRASES[:8], "A Red  Fox"])  # a duplicate
    csv = tmp_path / "table.csv"
    csv.write_text(
        "prompt,category,frequency\n"
        + "".join(f'"{s}",styles,{10 + i}\n' for i, s in enumerate(STYLES[:5])),
        encoding="utf-8",
    )
    tree = tmp_path / "tree.json"
    tree.write_text(
        json.dumps(
            {
                "n": "root",
                "c": [
                    {"n": "in the rain", "v": 7, "c": [{"n": "walking in the rain", "v": 3}]},
                    {"n": "covered in snow", "v": 5},
                ],
            }
        ),
        encoding="utf-8",
    )
    return [txt, csv, tree]


def test_read_entries_keeps_categories_and_frequencies(tmp_path):
    txt, csv, tree = _inputs(tmp_path)
    errors = ErrorLog("fail")
    from_txt = read_entries(txt, errors)
    assert [e.text for e in from_txt] == [*PHRASES[:8], "A Red Fox"]
    assert {e.category for e in from_txt} == {"subjects"}
    assert all(e.frequency is None for e in from_txt)
    from_csv = read_entries(csv, errors)
    assert [(e.text, e.category, e.frequency) for e in from_csv][:2] == [
        (STYLES[0], "styles", 10),
        (STYLES[1], "styles", 11),
    ]
    from_tree = read_entries(tree, errors)
    assert [(e.text, e.frequency) for e in from_tree] == [
        ("in the rain", 7),
        ("walking in the rain", 3),
        ("covered in snow", 5),
    ]
    assert {e.category for e in from_tree} == {"tree"}


def test_read_entries_reports_bad_rows_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,frequency\nfox,3\ncat,many\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.csv:3: frequency 'many' is not a whole number"):
        read_entries(bad, ErrorLog("fail"))
    with pytest.raises(InputError, match="no such file"):
        read_entries(tmp_path / "missing.txt", ErrorLog("fail"))


def test_shared_phrase_tree_and_subjects_are_read(shared_data):
    banks = shared_data / "prompt_banks"
    tree = read_entries(banks / "ddb_phrases_tree.json", ErrorLog("fail"))
    assert len(tree) > 2000
    assert all(e.frequency is not None and e.frequency > 0 for e in tree)
    assert ("digital art", 72205) in {(e.text, e.frequency) for e in tree}
    subjects = read_entries(banks / "magicprompt_subjects.json", ErrorLog("fail"))
    assert len(subjects) > 100_000
    assert {e.category for e in subjects} == {"magicprompt_subjects"}


def test_build_round_trip(tmp_path, encoder):
    counting = CountingEncoder(encoder)
    report = build_bank(_inputs(tmp_path), tmp_path / "bank", counting, words=False)
    bank = load_bank(tmp_path / "bank", encoder)
    expected = [*PHRASES[:8], *STYLES[:5], "in the rain", "walking in the rain", "covered in snow"]
    assert bank.texts == expected  # "A Red  Fox" is a duplicate of "a red fox"
    assert report.added == len(expected) and report.duplicates == 1
    assert counting.encoded == len(expected)
    assert bank.categories == ["subjects"] * 8 + ["styles"] * 5 + ["tree"] * 3
    assert bank.frequencies.tolist() == [-1] * 8 + [10, 11, 12, 13, 14] + [7, 3, 5]
    assert bank.embeddings.dtype == np.float16
    exact = encoder.encode(expected)
    np.testing.assert_allclose(bank.embeddings.astype(np.float32), exact, atol=2e-3)
    tokenizer = encoder.tokenizer
    tokens = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in expected]
    assert bank.tokens.tolist() == tokens
    np.testing.assert_allclose(bank.norms, encoder.encode_with_norms(expected)[1], rtol=1e-4)
    # The index finds each entry from its own vector.
    _, ids = bank.search(exact, 1)
    assert ids[:, 0].tolist() == list(range(len(expected)))
    manifest = json.loads((tmp_path / "bank" / MANIFEST_FILE).read_text())
    assert manifest["encoder"]["fingerprint"] == encoder.fingerprint
    assert manifest["entries"] == len(expected)
    assert manifest["categories"] == {"subjects": 8, "styles": 5, "tree": 3}


def test_add_keeps_what_is_there_and_embeds_only_new_entries(tmp_path, encoder):
    first = write_lines(tmp_path / "subjects.txt", PHRASES)
    build_bank([first], tmp_path / "bank", encoder, words=False, cache_dir=tmp_path / "c1")
    before = load_bank(tmp_path / "bank", encoder)
    more = write_lines(tmp_path / "styles.txt", [*STYLES, PHRASES[0], PHRASES[3].upper()])
    # An empty cache for the add: any re-embedded old entry would reach the encoder and count.
    counting = CountingEncoder(encoder)
    report = add_to_bank(tmp_path / "bank", [more], counting, cache_dir=tmp_path / "c2")
    assert counting.encoded == len(STYLES) == report.added == report.embedded
    assert report.duplicates == 2
    after = load_bank(tmp_path / "bank", encoder)
    n = len(before)
    assert after.texts[:n] == before.texts and after.texts[n:] == STYLES
    assert after.categories == ["subjects"] * n + ["styles"] * len(STYLES)
    assert np.array_equal(after.embeddings[:n], before.embeddings)  # bit for bit
    np.testing.assert_allclose(
        after.embeddings[n:].astype(np.float32), encoder.encode(STYLES), atol=2e-3
    )
    manifest = json.loads((tmp_path / "bank" / MANIFEST_FILE).read_text())
    assert [p.rsplit("/", 1)[-1] for p in manifest["inputs"]] == ["subjects.txt", "styles.txt"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".bank")]  # no leftovers


def test_a_large_banks_float32_rows_are_kept_once_and_mapped_after(tmp_path, monkeypatch, encoder):
    """`vectors` widens the float16 file once and keeps the float32 rows beside it; later loads
    map them (nothing copied or written back). A copy made from an earlier `embeddings.npy` is
    never taken for a new one's, and searches return what a FAISS flat index over the rows
    does: bit for bit past `FEW_QUERIES` queries (FAISS itself), within rounding up to it."""
    import faiss

    from img2prompt.text import bank_index

    monkeypatch.setattr(bank_index, "FLOAT32_MIN_BYTES", 0)  # every bank keeps one here
    subjects = write_lines(tmp_path / "subjects.txt", PHRASES)
    build_bank([subjects], tmp_path / "bank", encoder, words=False, cache_dir=tmp_path / "c")
    first = load_bank(tmp_path / "bank")
    widened = first.embeddings.astype(np.float32)
    assert np.array_equal(first.vectors, widened) and first.vectors.flags.writeable
    (copy,) = (tmp_path / "bank").glob(f"{bank_index.FLOAT32_PREFIX}*.npy")
    second = load_bank(tmp_path / "bank")
    assert second.float32_copy == copy and not second.embeddings.flags.writeable  # mapped
    assert np.array_equal(second.vectors, widened) and isinstance(second.vectors.base, np.memmap)
    index = faiss.IndexFlatIP(second.dim)
    index.add(widened)
    rng = np.random.default_rng(0)
    for n in (1, 3, bank_index.FEW_QUERIES, bank_index.FEW_QUERIES + 1):
        queries = rng.standard_normal((n, second.dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        for k in (1, 3, len(PHRASES)):
            (cosines, ids), (expected_cosines, expected_ids) = (
                second.search(queries, k),
                index.search(queries, k),
            )
            assert ids.dtype == expected_ids.dtype and np.array_equal(ids, expected_ids), (n, k)
            if n > bank_index.FEW_QUERIES:
                assert np.array_equal(cosines, expected_cosines)
            np.testing.assert_allclose(cosines, expected_cosines, rtol=0, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller's autocast changes nothing
        inside = second.search(queries[:3], 3)
    assert all(map(np.array_equal, inside, second.search(queries[:3], 3)))
    second.vectors[0] = 0  # copy-on-write: the file keeps its rows
    assert np.array_equal(load_bank(tmp_path / "bank").vectors, widened)
    np.save(tmp_path / "other.npy", -second.embeddings)  # another file of the same shape
    (tmp_path / "other.npy").replace(tmp_path / "bank" / "embeddings.npy")
    third = load_bank(tmp_path / "bank")
    assert third.float32_copy != copy and np.array_equal(third.vectors, -widened)
    assert list((tmp_path / "bank").glob(f"{bank_index.FLOAT32_PREFIX}*.npy")) == [
        third.float32_copy
    ]  # the copy of the earlier file is gone
    monkeypatch.setattr(img2prompt.io, "atomic_path", _unwritable)  # a read-only folder
    third.float32_copy.unlink()
    fourth = load_bank(tmp_path / "bank")
    assert np.array_equal(fourth.vectors, -widened) and not fourth.float32_copy.exists()


def test_a_large_banks_prompt_words_are_kept_and_read_back(tmp_path, monkeypatch, encoder):
    """The words of a large bank's prompt phrases (not its dictionary) are found on the first
    load and kept in the folder; later loads read them; a new version of the entries (`bank
    add`) gets its own, and the earlier one goes."""
    from img2prompt.text import bank_index

    monkeypatch.setattr(bank_index, "FLOAT32_MIN_BYTES", 0)  # every bank keeps them here
    subjects = write_lines(tmp_path / "subjects.txt", PHRASES)
    dictionary = write_lines(tmp_path / "dictionary.txt", ["zymurgy", "quokka"])
    build_bank([subjects, dictionary], tmp_path / "bank", encoder, words=False)
    expected = {w for text in PHRASES for w in re.findall(r"[a-z]+", text.lower())}
    first = load_bank(tmp_path / "bank")
    assert first.prompt_words() == expected and "zymurgy" not in expected
    (kept,) = (tmp_path / "bank").glob(f"{bank_index.WORDS_PREFIX}*.txt")
    assert kept == first.words_copy and set(kept.read_text().split()) == expected
    kept.write_text("fox\nread\nback\n")  # what a later load finds is what it uses
    assert load_bank(tmp_path / "bank").prompt_words() == {"fox", "read", "back"}
    more = write_lines(tmp_path / "styles.txt", STYLES)
    add_to_bank(tmp_path / "bank", [more], encoder)
    after = load_bank(tmp_path / "bank")
    style_words = {w for text in STYLES for w in re.findall(r"[a-z]+", text.lower())}
    assert after.prompt_words() == expected | style_words
    assert list((tmp_path / "bank").glob(f"{bank_index.WORDS_PREFIX}*")) == [after.words_copy]


def _unwritable(path):
    raise PermissionError(13, "Permission denied", str(path))


def test_prepared_table_targets_are_reused_without_embedding(tmp_path, encoder):
    prompts = ["a red fox in the snow", "a lighthouse in a storm"]
    targets = encoder.encode(prompts)
    table = pa.table({"id": ["a", "b"], "prompt": prompts, "target": list(targets)})
    pq.write_table(table, tmp_path / "prompts.parquet")
    counting = CountingEncoder(encoder)
    report = build_bank([tmp_path / "prompts.parquet"], tmp_path / "bank", counting, words=False)
    assert counting.encoded == 0 and report.embedded == 0 and report.added == 2
    bank = load_bank(tmp_path / "bank", encoder)
    assert bank.texts == prompts and bank.categories == ["prompts", "prompts"]
    assert np.array_equal(bank.embeddings, targets.astype(np.float16))
    assert np.isnan(bank.norms).all()  # not computed: the vectors came with the entries

    # Targets that `data prepare` made with another encoder (its manifest says) are embedded.
    other = {"encoder": {"spec": "another-minilm", "fingerprint": "not-this-encoder"}}
    (tmp_path / "manifest.json").write_text(json.dumps(other))
    counting = CountingEncoder(encoder)
    report = build_bank([tmp_path / "prompts.parquet"], tmp_path / "bank2", counting, words=False)
    assert counting.encoded == 2 and report.embedded == 2


def test_words_are_derived_from_entries(tmp_path, encoder):
    entries = read_entries(
        write_lines(tmp_path / "p.txt", ["a red fox", "red roses", "the fox"]), ErrorLog("fail")
    )
    words = {e.text: e.frequency for e in derive_words(entries, min_count=2)}
    assert words == {"red": 2, "fox": 2}  # "a" and "the" are stop words, "roses" too rare
    build_bank([tmp_path / "p.txt"], tmp_path / "bank", encoder, words=True, min_word_count=2)
    bank = load_bank(tmp_path / "bank", encoder)
    assert [(t, c) for t, c in zip(bank.texts, bank.categories, strict=True) if c == "word"] == [
        ("fox", "word"),
        ("red", "word"),
    ]


def test_phrases_only_lists_give_phrases_but_no_words(tmp_path, encoder):
    """The default bank takes CLIP Interrogator's flavors this way: their words include name
    pieces and misspellings that must not become entries of their own."""
    write_lines(tmp_path / "p.txt", ["a red fox", "red roses"])
    mined = write_lines(tmp_path / "flavors.txt", ["hyperealistic fox", "red roses"])
    build_bank(
        [tmp_path / "p.txt"], tmp_path / "bank", encoder, min_word_count=1, phrases_only=[mined]
    )
    bank = load_bank(tmp_path / "bank", encoder)
    assert "hyperealistic fox" in bank.texts and bank.texts.count("red roses") == 1
    words = {t for t, c in zip(bank.texts, bank.categories, strict=True) if c == "word"}
    assert words == {"red", "fox", "roses"}


def test_bank_from_another_encoder_is_refused(tmp_path, encoder):
    build_bank([write_lines(tmp_path / "p.txt", PHRASES[:3])], tmp_path / "bank", encoder)
    manifest_path = tmp_path / "bank" / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["encoder"] = {"spec": "some/other-model", "fingerprint": "0123456789abcdef"}
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="built with encoder 'some/other-model'"):
        load_bank(tmp_path / "bank", encoder)
    assert load_bank(tmp_path / "bank").texts == PHRASES[:3]  # readable without an encoder


def test_missing_or_foreign_folders_are_refused(tmp_path, encoder):
    with pytest.raises(InputError, match="no such folder"):
        load_bank(tmp_path / "nothing")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a prompt bank"):
        build_bank([write_lines(tmp_path / "p.txt", PHRASES[:2])], tmp_path / "mine", encoder)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_bank_of_an_older_format_is_refused_with_how_to_rebuild(tmp_path, encoder):
    inputs = [write_lines(tmp_path / "subjects.txt", PHRASES[:3])]
    build_bank(inputs, tmp_path / "bank", encoder, words=False)
    manifest_path = tmp_path / "bank" / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "format": 1}))
    with pytest.raises(InputError, match=r"bank format 1, expected \d+: rebuild .*subjects\.txt"):
        load_bank(tmp_path / "bank", encoder)


def _template_folder(path, rules, **lists):
    path.mkdir()
    (path / "rules.txt").write_text(rules, encoding="utf-8")
    for name, items in lists.items():
        write_lines(path / f"{name}.txt", items)
    return path


def test_default_bank_is_built_once_then_reused(tmp_path, monkeypatch, encoder):
    files = [write_lines(tmp_path / "subjects.txt", PHRASES[:5])]
    folder = _template_folder(
        tmp_path / "templates", "subjects: a {adj} {animal}\n", adj=["old"], animal=["owl", "fox"]
    )
    monkeypatch.setattr(bank_module, "default_bank_files", lambda: files)
    monkeypatch.setattr(bank_module, "default_template_folder", lambda: folder)
    mined = [write_lines(tmp_path / "flavors.txt", ["misty hyperealistic moors"])]
    monkeypatch.setattr(bank_module, "default_public_files", lambda: mined)
    counting = CountingEncoder(encoder)
    first = default_bank(counting, tmp_path / "banks", progress=False, vocabulary=False)
    assert first.texts[:7] == [*PHRASES[:5], "an old owl", "an old fox"] and counting.encoded > 0
    # The public lists' phrases are entries, their single words are not.
    assert "misty hyperealistic moors" in first.texts and "hyperealistic" not in first.texts
    assert first.manifest["templates"] == [str(folder.resolve())]
    counting.encoded = 0
    again = default_bank(counting, tmp_path / "banks", progress=False, vocabulary=False)
    assert again.texts == first.texts and counting.encoded == 0
    # A changed word list is a new bank; without templates, none of their phrases.
    write_lines(folder / "animal.txt", ["owl", "cat"])
    changed = default_bank(counting, tmp_path / "banks", progress=False, vocabulary=False)
    assert "an old cat" in changed.texts and "an old fox" not in changed.texts
    plain = default_bank(
        counting, tmp_path / "banks", progress=False, vocabulary=False, templates=False
    )
    assert "an old owl" not in plain.texts and plain.manifest["templates"] == []


def test_templates_fill_every_combination_with_agreeing_articles(tmp_path):
    folder = _template_folder(
        tmp_path / "t",
        "# a comment\nsubjects: a {adj} {animal}  # two slots\n\nactions: holding a {thing}\n",
        adj=["old", "tiny", "# not an item", "  big  "],
        animal=["owl", "unicorn", "big cat"],
        thing=["hourglass", "umbrella", "lantern"],
    )
    phrases = list(expand_templates(folder))
    texts = [p.text for p in phrases]
    assert texts == [
        "an old owl",
        "an old unicorn",
        "an old big cat",
        "a tiny owl",
        "a tiny unicorn",
        "a tiny big cat",
        "a big owl",
        "a big unicorn",  # not "a big big cat": no word twice
        "holding an hourglass",
        "holding an umbrella",
        "holding a lantern",
    ]
    assert {p.category for p in phrases} == {"subjects", "actions"}
    assert phrases[0].source.endswith("rules.txt:2") and phrases[-1].source.endswith("rules.txt:4")
    assert fix_articles("a apple and an pear, an unicorn") == "an apple and a pear, a unicorn"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("subjects a {animal}\n", r"rules\.txt:1: expected 'category: template'"),
        ("subjects: a {animal}\nplaces: in a {place}\n", r"rules\.txt:2: .*no word list place"),
        ("subjects: a {Animal}\n", r"rules\.txt:1: bad slot"),
    ],
)
def test_bad_template_rules_name_the_line(tmp_path, rules, message):
    folder = _template_folder(tmp_path / "t", rules, animal=["owl"])
    with pytest.raises(InputError, match=message):
        list(expand_templates(folder))


def test_packaged_templates_make_clean_phrases():
    from img2prompt.text.decode import MODIFIER_CATEGORIES

    folder = bank_module.default_template_folder()
    for path in folder.glob("*.txt"):
        if path.name == "rules.txt":
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        assert all(line and line == line.strip() and "#" not in line for line in lines), path.name
        assert len(set(lines)) == len(lines), f"{path.name} repeats an item"
    phrases = list(expand_templates(folder))
    assert 20_000 <= len(phrases) <= 40_000
    categories = {p.category for p in phrases}
    assert categories <= {"subjects", "places", "descriptors", "actions"} | MODIFIER_CATEGORIES
    texts = [p.text for p in phrases]
    assert {"an old owl", "a unicorn", "wearing sunglasses", "holding an umbrella"} <= set(texts)
    assert not [t for t in texts if re.search(r"\ba [aeio]|\ban [^aeiouh]", t)][:5]


def test_vocabulary_entries_are_the_encoders_whole_words(encoder):
    entries = vocabulary_entries(encoder)
    words = {e.text for e in entries}
    assert 15_000 < len(words) < 30_000
    assert {"crater", "lighthouse", "samurai"} <= words
    assert not words & {"the", "and", "with"}  # stop words
    assert all(w.isalpha() and w.islower() and len(w) >= 3 for w in words)  # no "##ing" pieces
    assert {e.category for e in entries} == {"vocabulary"}


def test_packaged_bank_files_are_clean():
    files = [f for f in bank_module.default_bank_files() if f.stem != "dictionary"]
    assert len(files) >= 8
    lines = [line for f in files for line in f.read_text(encoding="utf-8").splitlines()]
    assert 1500 <= len(lines) <= 5000
    for f in files:
        listed = f.read_text(encoding="utf-8").splitlines()
        assert len(set(listed)) == len(listed), f"{f.name} lists a phrase twice"
    assert all(line and line == line.strip() for line in lines)


def test_packaged_public_flavors_hold_no_fragments():
    """Mined phrases cut off mid-way ("trending on", "a bright") would end up in prompts."""
    (flavors,) = [f for f in bank_module.default_public_files() if f.stem == "flavors"]
    phrases = flavors.read_text(encoding="utf-8").splitlines()
    assert len(phrases) > 70_000
    cut = {"a", "an", "the", "of", "in", "on", "at", "by", "with", "and", "or", "to", "for"}
    fragments = [
        p
        for p in phrases
        if p.split()[-1].lower() in cut
        or (len(p.split()) == 2 and p.split()[0].lower() in ("a", "an"))
    ]
    assert fragments == []


def test_packaged_dictionary_is_real_lowercase_words():
    (path,) = [f for f in bank_module.default_bank_files() if f.stem == "dictionary"]
    words = path.read_text(encoding="utf-8").splitlines()
    assert 40_000 < len(words) < 60_000 and words == sorted(set(words))
    assert all(w.isalpha() and w.isascii() and w.islower() and len(w) >= 3 for w in words)
    assert not set(words) & {"the", "and", "with"}  # stop words pad prompts
    # Words the encoder splits into pieces are there; the pieces of names are not.
    assert {"beakers", "cybernetic", "motherboard", "swirls", "welder"} <= set(words)
    assert not set(words) & {"vol", "syd", "spp"}


def test_bf16_bank_vectors_match_fp32_and_stay_out_of_the_target_cache(tmp_path, encoder):
    phrases = write_lines(tmp_path / "subjects.txt", PHRASES)
    cache = tmp_path / "cache"
    fp32 = build_bank([phrases], tmp_path / "fp32", encoder, words=False, cache_dir=cache)
    assert load_bank(fp32.path).manifest["embeddings_precision"] == "fp32"
    counting = CountingEncoder(encoder)
    bf16 = build_bank(
        [phrases], tmp_path / "bf16", counting, words=False, cache_dir=cache, precision="bf16"
    )
    assert counting.encoded == len(PHRASES)  # not served from the float32 cache
    a, b = load_bank(fp32.path), load_bank(bf16.path)
    assert b.manifest["embeddings_precision"] == "bf16" and a.texts == b.texts
    cosines = np.einsum("ij,ij->i", a.vectors, b.vectors)
    assert cosines.min() > 0.999
    with pytest.raises(ValueError, match="precision"):
        build_bank([phrases], tmp_path / "x", encoder, precision="fp8")


def test_cli_build_with_templates(tmp_path):
    folder = _template_folder(
        tmp_path / "t", "subjects: a {adj} {animal}\n", adj=["old"], animal=["owl", "fox"]
    )
    subjects = write_lines(tmp_path / "subjects.txt", PHRASES[:3])
    out = tmp_path / "bank"
    args = ["bank", "build", str(subjects), "--out", str(out), "--templates", str(folder), "-q"]
    result = runner.invoke(app, [*args, "--no-words"])
    assert result.exit_code == 0, result.output
    assert load_bank(out).texts == [*PHRASES[:3], "an old owl", "an old fox"]


def test_cli_build_and_add(tmp_path):
    subjects = write_lines(tmp_path / "subjects.txt", PHRASES)
    styles = write_lines(tmp_path / "styles.txt", STYLES)
    out = tmp_path / "bank"
    result = runner.invoke(app, ["bank", "build", str(subjects), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert f"{len(PHRASES)} entries" in result.output.replace(",", "")
    result = runner.invoke(app, ["bank", "add", str(out), str(styles), "-q"])
    assert result.exit_code == 0, result.output
    bank = load_bank(out)
    assert set(bank.texts) >= set(PHRASES) | set(STYLES)
    assert bank.categories.count("styles") == len(STYLES)
    result = runner.invoke(app, ["bank", "add", str(tmp_path / "nope"), str(styles)])
    assert result.exit_code == 2 and "no such folder" in result.output


@pytest.mark.parametrize(
    ("mined", "written"),
    [
        ("award - winning photo", "award-winning photo"),
        ("( ( ( colorful ) ) )", "colorful"),
        ("4 k post - processing", "4k post-processing"),
        ("8 k resolution : 0. 8", "8k resolution"),
        ("2 0 0 1 : a space odyssey", "2001: a space odyssey"),
        ("1 6 : 9", "16:9"),
        ("f / 1. 4", "f/1.4"),
        ("black dress : : symmetrical face", "black dress, symmetrical face"),
        ("depth of field : - 2", "depth of field"),
        ("octane render : : 3", "octane render"),
        ("snowstorm ::5", "snowstorm"),
        ("2 5 6 x 2 5 6 pixels", "256x256 pixels"),
        ("d & d", "d & d"),
        ("( )", ""),
    ],
)
def test_mined_phrases_are_written_as_a_person_writes_them(mined, written):
    """Phrase lists mined from prompts come tokenized and with emphasis syntax; the bank keeps
    them the way a prompt says them, so no decoded prompt prints "award - winning"."""
    from img2prompt.text.bank_sources import phrase_text

    assert phrase_text(mined) == written


def test_the_shared_phrase_tree_has_no_tokenized_phrases_left(shared_data):
    entries = read_entries(shared_data / "prompt_banks" / "ddb_phrases_tree.json", ErrorLog("fail"))
    tokenized = re.compile(r"\w - \w|\( | \)|\b\d (?:k|\d)\b| / |: :")
    assert entries and not [e.text for e in entries if tokenized.search(e.text)]
