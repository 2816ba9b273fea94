"""Decoding embeddings into prompts: exactness on bank entries, honest scores, prompt constraints,
clear errors for bad vectors, and the `decode` command."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from bank_helpers import PHRASES, STYLES, write_lines
from img2prompt.app.cli import app
from img2prompt.text.bank import build_bank, load_bank
from img2prompt.text.bank_sources import content_stems
from img2prompt.text.decode import DecodeOptions, Decoder, check_targets

runner = CliRunner()
STOP = {"a", "an", "the", "of", "in", "on", "at", "by", "with", "and", "to", "for", "from"}
ROUND_TRIP = [
    "a red fox sleeping in the snow, watercolor illustration",
    "a samurai riding a horse in the rain, ukiyo-e woodblock print",
]


@pytest.fixture(scope="module")
def bank_dir(tmp_path_factory, encoder):
    folder = tmp_path_factory.mktemp("bank")
    subjects = write_lines(folder / "subjects.txt", PHRASES)
    styles = write_lines(folder / "styles.txt", STYLES)
    build_bank([subjects, styles], folder / "bank", encoder, words=True, progress=False)
    return folder / "bank"


@pytest.fixture(scope="module")
def bank(bank_dir, encoder):
    return load_bank(bank_dir, encoder)


@pytest.mark.parametrize("mode", ["fast", "best"])
def test_an_entrys_own_vector_decodes_to_that_entry(bank, encoder, mode):
    decoder = Decoder(bank, encoder, DecodeOptions(mode=mode))
    rows = [0, 5, len(PHRASES) + 1]
    decoded = decoder.decode(encoder.encode([bank.texts[i] for i in rows]))
    assert [d.prompt for d in decoded] == [bank.texts[i] for i in rows]
    assert all(d.match > 0.9999 for d in decoded)
    assert decoded[0].neighbors[0][0] == bank.texts[0]


@pytest.mark.parametrize("mode", ["fast", "best"])
def test_printed_score_is_the_encoders_cosine(bank, encoder, mode):
    targets = encoder.encode(ROUND_TRIP)
    decoded = Decoder(bank, encoder, DecodeOptions(mode=mode)).decode(targets)
    again = encoder.encode([d.prompt for d in decoded])
    np.testing.assert_allclose(
        [d.match for d in decoded], np.einsum("ij,ij->i", again, targets), atol=1e-5
    )
    # Several phrases, each from the bank; better than the nearest entry alone.
    for d in decoded:
        assert len(d.phrases) >= 2 and d.prompt.replace(",", "") == " ".join(d.phrases)
        assert set(d.phrases) <= set(bank.texts)
        assert d.match > max(c for _, c in d.neighbors) + 0.05


def test_a_bank_whose_vectors_came_with_it_decodes_without_norms(tmp_path, encoder):
    """Entries from a prepared table bring their vectors, so the bank has no norms for them;
    decoding weighs them with the typical norm and still scores honestly."""
    import pyarrow as pa

    texts = PHRASES + STYLES
    table = pa.table(
        {
            "id": [str(i) for i in range(len(texts))],
            "prompt": texts,
            "target": list(encoder.encode(texts)),
        }
    )
    pq.write_table(table, tmp_path / "prompts.parquet")
    build_bank([tmp_path / "prompts.parquet"], tmp_path / "bank", encoder, words=False)
    bank = load_bank(tmp_path / "bank", encoder)
    assert np.isnan(bank.norms).all()
    targets = encoder.encode(ROUND_TRIP)
    for mode in ("fast", "best"):
        decoded = Decoder(bank, encoder, DecodeOptions(mode=mode)).decode(targets)
        again = encoder.encode([d.prompt for d in decoded])
        np.testing.assert_allclose(
            [d.match for d in decoded], np.einsum("ij,ij->i", again, targets), atol=1e-5
        )
        assert all(d.match > max(c for _, c in d.neighbors) + 0.05 for d in decoded)


def test_best_never_encodes_what_the_bank_holds(bank, encoder, monkeypatch):
    """A one-entry proposal (the beam's first step, clean-up's last) takes the bank's vector:
    no single entry's text reaches the encoder during the search, and the result is the one
    that encoding them gives."""
    decoder = Decoder(bank, encoder, DecodeOptions(mode="best"))
    searched: list[str] = []
    encode = decoder.scorer.encode

    def spy(texts, exact=False):
        if not exact:
            searched.extend(texts)
        return encode(texts, exact)

    monkeypatch.setattr(decoder.scorer, "encode", spy)
    targets = encoder.encode(ROUND_TRIP)
    chosen = decoder.strategy.search(targets, bank.search(targets, decoder.strategy.shortlist)[1])
    entries = set(bank.texts)
    assert searched and not [t for t in searched if t in entries]
    assert all(len(c) > 1 for c in chosen)  # the searches went past their first step


def test_min_gain_keeps_only_phrases_that_earn_their_place(bank, encoder):
    """A phrase whose removal costs less than `min_gain` is dropped: a huge one leaves a single
    phrase, and every phrase of a prompt decoded with none is needed (removal never helps)."""
    targets = encoder.encode(ROUND_TRIP)
    plain = Decoder(bank, encoder, DecodeOptions(mode="best", min_gain=0.0)).decode(targets)
    terse = Decoder(bank, encoder, DecodeOptions(mode="best", min_gain=1.0)).decode(targets)
    assert all(len(d.phrases) == 1 for d in terse)
    assert any(len(d.phrases) > 1 for d in plain)
    assert all(t.match <= p.match + 1e-6 for t, p in zip(terse, plain, strict=True))


def test_entries_without_a_norm_get_that_of_their_length():
    from img2prompt.text.compose import fill_norms

    norms = np.array([8.0, 7.0, np.nan, 5.0, np.nan, np.nan], np.float32)
    tokens = np.array([1, 1, 1, 4, 4, 9])
    np.testing.assert_allclose(fill_norms(norms, tokens), [8, 7, 7.5, 5, 5, 7])  # 9: overall
    assert np.isnan(norms[2])  # the bank's own array is left alone
    np.testing.assert_array_equal(fill_norms(np.full(3, np.nan), np.arange(3)), [1, 1, 1])


def test_best_beats_fast_on_round_trips(bank, encoder):
    targets = encoder.encode(ROUND_TRIP)
    fast = Decoder(bank, encoder, DecodeOptions(mode="fast")).decode(targets)
    best = Decoder(bank, encoder, DecodeOptions(mode="best")).decode(targets)
    assert np.mean([d.match for d in best]) >= np.mean([d.match for d in fast])
    assert min(d.match for d in best) > 0.8


@pytest.mark.parametrize("mode", ["fast", "best"])
def test_prompts_respect_length_and_never_repeat_a_word(bank, encoder, mode):
    # Targets that pull towards many phrases at once: sums of random entries.
    rng = np.random.default_rng(0)
    targets = np.stack([bank.vectors[rng.choice(len(bank), 12)].sum(0) for _ in range(6)])
    options = DecodeOptions(mode=mode, max_words=8, max_phrases=12)
    for d in Decoder(bank, encoder, options).decode(targets):
        assert len(d.prompt.split()) <= 8
        words = [w.rstrip("s") for w in d.prompt.replace(",", " ").split() if w not in STOP]
        assert len(words) == len(set(words)), d.prompt


@pytest.mark.parametrize("mode", ["fast", "best"])
def test_entries_that_say_a_word_twice_are_never_used(tmp_path, encoder, mode):
    """Mined lists hold entries such as "glasses glasses": even when one is the nearest entry to
    the target, the prompt is built from others."""
    repeating = ["glasses glasses", "dragon in dragon lair", "in 1767, 1767"]
    files = [
        write_lines(tmp_path / "subjects.txt", [*repeating, *PHRASES]),
        write_lines(tmp_path / "styles.txt", STYLES),
    ]
    bank = load_bank(
        build_bank(files, tmp_path / "b", encoder, words=False, progress=False).path, encoder
    )
    targets = encoder.encode(["glasses glasses", "a dragon in its lair, oil painting", "in 1767"])
    _, ids = bank.search(targets, 1)
    assert [bank.texts[i] for i in ids[:, 0]] == repeating  # each the nearest to its target
    for d in Decoder(bank, encoder, DecodeOptions(mode=mode)).decode(targets):
        assert not set(d.phrases) & set(repeating), d.prompt
        assert d.match > 0


def test_a_word_its_plural_and_its_inflections_count_as_one():
    def repeat(a: str, b: str) -> bool:
        return bool(content_stems(a) & content_stems(b))

    plurals = [("a dog", "dogs"), ("puppies", "a puppy"), ("sneeze", "sneezes"), ("box", "boxes")]
    plurals += [("highly detailed", "hyper-detailed"), ("sci-fi", "fi")]  # hyphenated parts
    plurals += [("a cow", "cowed"), ("lights", "cinematic lighting"), ("eggs", "egging")]
    plurals += [("run", "running"), ("carry", "carried"), ("painted", "oil paints")]
    for a, b in plurals:
        assert repeat(a, b) and repeat(b, a), (a, b)
    unrelated = [("a cat", "a dog"), ("the glass", "a gla"), ("of the 1960s", "4k"), ("in", "on")]
    for a, b in [*unrelated, ("red", "a bed"), ("a king", "kin"), ("flowers", "flowing")]:
        assert not repeat(a, b), (a, b)


def test_runs_of_single_words_are_written_without_commas(tmp_path, encoder):
    files = [
        write_lines(tmp_path / "subjects.txt", ["a red fox"]),
        write_lines(tmp_path / "actions.txt", ["sleeping", "curled"]),
        write_lines(tmp_path / "styles.txt", ["oil painting"]),
    ]
    bank = load_bank(
        build_bank(files, tmp_path / "b", encoder, words=False, progress=False).path, encoder
    )
    decoder = Decoder(bank, encoder, DecodeOptions())
    names = ["a red fox", "sleeping", "curled", "oil painting"]
    fox, sleeping, curled, style = (bank.texts.index(t) for t in names)
    target = encoder.encode(["a red fox sleeping curled"])[0]
    prompt = decoder.compose([style, curled, fox, sleeping], target)
    words = " ".join(bank.texts[i] for i in decoder.order([sleeping, curled], target))
    assert prompt == f"a red fox, {words}, oil painting"  # subject, other content, modifiers
    # The final prompt may also be written with a comma after every phrase, or (`max`, or where
    # each phrase goes on from the last: "on a boat") with none.
    every_comma = f"a red fox, {words.replace(' ', ', ')}, oil painting"
    assert decoder.joinings([fox, sleeping, curled, style], target) == [prompt, every_comma]
    raw = Decoder(bank, encoder, DecodeOptions(mode="max"))
    assert raw.joinings([fox, sleeping, curled, style], target) == [
        prompt,
        every_comma,
        f"a red fox {words} oil painting",
    ]


def test_subjects_come_before_modifiers(bank, encoder):
    target = encoder.encode(["oil painting of a lighthouse on a cliff"])
    decoded = Decoder(bank, encoder, DecodeOptions(mode="best")).decode(target)[0]
    styles = [p in STYLES for p in decoded.phrases]
    assert styles == sorted(styles)  # False (subjects) first, then True
    assert decoded.phrases[0] == "a lighthouse on a cliff"


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((3, 512), np.float32), "512 dimensions, the bank's encoder has 384"),
        (np.zeros((0, 384), np.float32), "empty, no vectors"),
        (np.zeros(0, np.float32), "empty, no vectors"),
        (np.full((2, 384), np.nan, np.float32), "NaN, infinity or all zeros"),
    ],
)
def test_bad_vectors_are_refused_with_the_reason(array, message):
    with pytest.raises(ValueError, match=message):
        check_targets(array, 384, source="x.npy")


def test_cli_decode_text_prints_prompts_and_scores(bank_dir):
    args = ["decode", "--bank", str(bank_dir), "--mode", "fast"]
    result = runner.invoke(app, [*args, "--text", ROUND_TRIP[0], "--text", ROUND_TRIP[1]])
    assert result.exit_code == 0, result.output
    assert "mean match" in result.output and "s per prompt" in result.output
    quiet = runner.invoke(app, [*args, "-q", "--text", ROUND_TRIP[0], "--text", ROUND_TRIP[1]])
    prompts = quiet.stdout.splitlines()
    assert len(prompts) == 2 and all(p in result.output for p in prompts)


def test_cli_decode_writes_txt_and_parquet(tmp_path, bank_dir, encoder):
    texts = write_lines(tmp_path / "in.txt", ROUND_TRIP)
    base = ["decode", "--bank", str(bank_dir), "--texts", str(texts), "-q", "--mode", "best"]
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "out.txt")])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "out.txt").read_text().splitlines()
    assert written == result.stdout.splitlines() and len(written) == 2

    np.save(tmp_path / "targets.npy", encoder.encode(ROUND_TRIP))
    args = ["decode", "--bank", str(bank_dir), "--embeddings", str(tmp_path / "targets.npy")]
    result = runner.invoke(app, [*args, "-q", "--out", str(tmp_path / "out.parquet")])
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [row["prompt"] for row in table] == written  # same search, same prompts
    assert [row["input"] for row in table] == ["row 0", "row 1"]
    for row, target in zip(table, encoder.encode(ROUND_TRIP), strict=True):
        assert abs(row["match"] - float(encoder.encode([row["prompt"]])[0] @ target)) < 1e-5
        cosines = [n["cosine"] for n in row["neighbors"]]
        assert len(cosines) == 5 and cosines == sorted(cosines, reverse=True)
    # `.json` holds the same results under the same names (describe's layout: results.py).
    result = runner.invoke(app, [*args, "-q", "--out", str(tmp_path / "out.json")])
    assert result.exit_code == 0, result.output
    body = json.loads((tmp_path / "out.json").read_text())
    assert body["failures"] == [] and len(body["results"]) == len(table)
    for row, obj in zip(table, body["results"], strict=True):
        assert row.keys() == obj.keys() and row["prompt"] == obj["prompt"]
        assert row["match"] == pytest.approx(obj["match"], abs=1e-6)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((3, 512), np.float32), "512 dimensions"),
        (np.zeros((0, 384), np.float32), "empty"),
        (np.vstack([np.ones((1, 384)), np.full((1, 384), np.nan)]), "row 1"),
    ],
)
def test_cli_bad_embeddings_name_the_file(tmp_path, bank_dir, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    result = runner.invoke(app, ["decode", "--bank", str(bank_dir), "--embeddings", str(path)])
    assert result.exit_code == 2
    assert "error:" in result.output and str(path) in result.output.replace("\n", "")
    assert message in result.output.replace("\n", "")


def test_cli_decode_option_errors(tmp_path, bank_dir):
    both = ["decode", "--bank", str(bank_dir), "--text", "a fox", "--embeddings", "x.npy"]
    assert runner.invoke(app, both).exit_code == 2
    bad_out = ["decode", "--bank", str(bank_dir), "--text", "a fox", "--out", "x.csv"]
    result = runner.invoke(app, bad_out)
    assert result.exit_code == 2 and ".parquet" in result.output
    not_npy = tmp_path / "x.npy"
    not_npy.write_text("hello")
    result = runner.invoke(app, ["decode", "--bank", str(bank_dir), "--embeddings", str(not_npy)])
    assert result.exit_code == 2 and "not a readable .npy" in result.output


def test_modes_come_from_the_registry_alone(bank_dir, encoder):
    """A mode a plugin registers is taken everywhere a mode is (no list of modes repeats the
    registry); an unknown one is refused naming the registered modes."""
    from img2prompt.errors import ConfigError
    from img2prompt.text.strategies import DECODE_MODES, GreedyStrategy, Strategy, register_mode

    assert {"fast", "best", "max"} <= set(DECODE_MODES)
    for name in DECODE_MODES:
        assert issubclass(DECODE_MODES.get(name), Strategy)
    if "plugin-fast" not in DECODE_MODES:
        register_mode("plugin-fast")(type("PluginFast", (GreedyStrategy,), {}))
    bank = load_bank(bank_dir, encoder)
    decoded = Decoder(bank, encoder, DecodeOptions(mode="plugin-fast")).decode(
        encoder.encode(["a red fox in the snow"])
    )
    assert decoded[0].prompt and decoded[0].match > 0.3
    with pytest.raises(ConfigError, match=r"unknown decode mode 'nope' \(--mode\); known: .*best"):
        Decoder(bank, encoder, DecodeOptions(mode="nope"))


@pytest.fixture(scope="module")
def filler_bank(tmp_path_factory, encoder):
    """Prompt phrases, a dictionary of single words (some used by the phrases, some filler) and
    a phrase with a safety-list word."""
    folder = tmp_path_factory.mktemp("filler")
    files = [
        write_lines(folder / "subjects.txt", [*PHRASES, "a nude statue in a museum"]),
        write_lines(folder / "styles.txt", STYLES),
        write_lines(folder / "dictionary.txt", ["fox", "snow", "gestalt", "salvia", "rind"]),
    ]
    return load_bank(
        build_bank(files, folder / "b", encoder, words=False, progress=False).path, encoder
    )


def test_readable_modes_take_dictionary_words_only_where_prompts_use_them(filler_bank, encoder):
    from img2prompt.text.compose import Composer

    entry = {text: i for i, text in enumerate(filler_bank.texts)}
    readable = Composer(filler_bank, max_words=60, readable=True)
    anything = Composer(filler_bank, max_words=60, readable=False)
    for word in ("gestalt", "salvia", "rind"):  # no prompt phrase says them: filler
        assert not readable.usable(entry[word]) and anything.usable(entry[word])
    for word in ("fox", "snow"):  # "a red fox", "covered in snow": prompt words
        assert readable.usable(entry[word])
    targets = encoder.encode(["gestalt salvia rind", "a red fox covered in snow, gestalt"])
    for d in Decoder(filler_bank, encoder, DecodeOptions(mode="best")).decode(targets):
        assert not {"gestalt", "salvia", "rind"} & set(d.prompt.split()), d.prompt
    fast = Composer(filler_bank, max_words=60, readable=True, filler=True)
    assert fast.usable(entry["gestalt"])  # `fast` may take dictionary words
    best_max = Decoder(filler_bank, encoder, DecodeOptions(mode="max")).decode(targets[:1])[0]
    assert "gestalt" in best_max.prompt  # max takes anything that raises the cosine


@pytest.mark.parametrize("mode", ["fast", "best"])
def test_safety_words_only_where_the_nearest_entries_say_them(
    filler_bank, encoder, mode, monkeypatch
):
    from img2prompt.text import compose

    nude = filler_bank.texts.index("a nude statue in a museum")
    composer = compose.Composer(filler_bank, max_words=60, readable=True)
    assert composer.unsafe(nude) == {"nude"}
    assert not composer.usable(nude, frozenset()) and composer.usable(nude, frozenset({"nude"}))
    asked = encoder.encode(["a nude statue in a museum"])
    # Its nearest entries say the word (it is the nearest itself): the prompt may say it...
    assert "nude" in Decoder(filler_bank, encoder, DecodeOptions(mode=mode)).decode(asked)[0].prompt
    # ...but where they do not (here: none is consulted), a readable prompt never brings it in,
    # while `max`, not meant to be read, takes whatever raises the cosine.
    monkeypatch.setattr(compose, "NEAREST_PERMIT", 0)
    readable = Decoder(filler_bank, encoder, DecodeOptions(mode=mode)).decode(asked)[0]
    assert "nude" not in readable.prompt, readable.prompt
    assert (
        "nude" in Decoder(filler_bank, encoder, DecodeOptions(mode="max")).decode(asked)[0].prompt
    )


def test_readable_modes_leave_out_lone_codes(tmp_path, encoder):
    """A lone word mixing letters and digits reads as a code ("c4", "h0"): readable modes never
    use one, though a number with its unit ("8k") is a word prompts use."""
    from img2prompt.text.compose import Composer

    files = [write_lines(tmp_path / "subjects.txt", [*PHRASES, "c4", "h0", "8k", "r2d2"])]
    bank = load_bank(
        build_bank(files, tmp_path / "b", encoder, words=False, progress=False).path, encoder
    )
    index = {text: i for i, text in enumerate(bank.texts)}
    readable, raw = Composer(bank, 60, readable=True), Composer(bank, 60, readable=False)
    for code in ("c4", "h0", "r2d2"):
        assert not readable.usable(index[code]) and raw.usable(index[code])
    assert readable.usable(index["8k"])
    targets = encoder.encode(["c4", "h0 r2d2"])
    for mode in ("fast", "best"):
        for d in Decoder(bank, encoder, DecodeOptions(mode=mode)).decode(targets):
            assert not {"c4", "h0", "r2d2"} & set(d.phrases), d.prompt


def test_readable_prompts_drop_commas_only_where_a_phrase_goes_on(tmp_path, encoder):
    """ "a bicycle on a boat" may be written without commas; "a wine glass a dog" may not (in
    readable modes; `max` keeps every joining)."""
    from img2prompt.text.compose import Composer

    phrases = ["a bicycle", "on a boat", "a wine glass", "a dog"]
    files = [write_lines(tmp_path / "subjects.txt", [*phrases, *PHRASES])]
    bank = load_bank(
        build_bank(files, tmp_path / "b", encoder, words=False, progress=False).path, encoder
    )
    ids = {text: i for i, text in enumerate(bank.texts)}
    target = encoder.encode(["a bicycle on a boat"])[0]
    readable, raw = Composer(bank, 60, readable=True), Composer(bank, 60, readable=False)
    goes_on = readable.joinings([ids["a bicycle"], ids["on a boat"]], target)
    assert "a bicycle on a boat" in goes_on and "a bicycle, on a boat" in goes_on
    apart = [ids["a wine glass"], ids["a dog"]]
    assert all("," in text for text in readable.joinings(apart, target))
    assert any("," not in text for text in raw.joinings(apart, target))
