import csv

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from img2prompt.data.clean import clean_prompt, dedup_key, latin_fraction, word_count

CASES = [
    # (raw, cleaned)
    ("((masterpiece)), best quality, a cat", "masterpiece, best quality, a cat"),
    ("a (red:1.3) fox in the snow", "a red fox in the snow"),
    ("a (red fox: 0.7) in the snow", "a red fox in the snow"),
    ("portrait of a (((beautiful))) woman", "portrait of a beautiful woman"),
    ("a [blurry] photo of {a dog}", "a blurry photo of a dog"),
    ("[[ugly]], a house", "ugly, a house"),
    (r"a sign saying \(hello\)", "a sign saying (hello)"),
    ("a castle <lora:fantasy_v2:0.8>, epic", "a castle, epic"),
    ("((a:1.2), b) c", "(a, b) c"),
    ("  lots   of\tspace\n here ", "lots of space here"),
    ("zero\u200bwidth and bell\x07 char", "zerowidth and bell char"),
    ("ｆｕｌｌ－ｗｉｄｔｈ letters", "full-width letters"),
    ("a, , b ,,c ,", "a, b,c"),
    ("(( ))", ""),
    ("(a:[1])", "a"),
    ("a\\\\(b", "a(b"),
    ("e\u200b\u0301", "\u00e9"),
    # Terminal escapes copied from generator logs (real_pairs has "\x1b[AAn astronaut ...").
    ("\x1b[AAn astronaut", "An astronaut"),
    ("a \x1b[1;32mgreen\x1b[0m cat", "a green cat"),
    ("", ""),
]

ORDINARY = [
    "a cat (in the style of Picasso), oil on canvas",
    'Kaggle employee Phil at a donut shop, with a speech bubble that says "Donuts!"',
    "An astronaut riding a horse; 35mm photo. Trending on ArtStation?",
    "portrait of a woman by Alphonse Mucha - art nouveau, 1900s",
    "Café in Paris, pâtisserie window, naïve art",
    "a clock showing (3:00), aspect ratio (16:9), a photo (1:1)",
    "time: 3:00 pm, smiley :) and sad face :(",
    "a family emoji \U0001f468\u200d\U0001f469\u200d\U0001f467",
]


@pytest.mark.parametrize(("raw", "cleaned"), CASES)
def test_cleaning_cases(raw, cleaned):
    assert clean_prompt(raw) == cleaned


@pytest.mark.parametrize("prompt", ORDINARY)
def test_ordinary_prompt_is_unchanged(prompt):
    assert clean_prompt(prompt) == prompt


def test_real_competition_prompts_are_unchanged(kaggle_sample):
    with open(kaggle_sample / "prompts.csv", newline="", encoding="utf-8") as f:
        prompts = [row["prompt"] for row in csv.DictReader(f)]
    assert [clean_prompt(p) for p in prompts] == prompts


def test_real_pairs_prompts_lose_their_terminal_escapes(shared_data):
    with open(shared_data / "real_pairs" / "pairs.csv", newline="", encoding="utf-8") as f:
        prompts = {row["prompt"] for row in csv.DictReader(f)}
    escaped = [p for p in prompts if "\x1b" in p]
    assert escaped, "real_pairs changed: no prompt with a terminal escape left to test"
    for prompt in escaped:
        cleaned = clean_prompt(prompt)
        assert "[A" not in cleaned and cleaned[0].isalnum(), cleaned
        assert cleaned == clean_prompt(prompt.replace("\x1b[A", " "))


markup = st.sampled_from(
    [
        "(",
        ")",
        "((",
        "))",
        "[",
        "]",
        "{",
        "}",
        ":1.3",
        ":2",
        "\\",
        "\\(",
        "<lora:x:1>",
        "\u200b",
        "\u0301",
        "\u200d",
        "\x07",
        "a",
        "1",
    ]
)
text = st.lists(st.one_of(st.text(max_size=6), markup, st.sampled_from([" ", ",", ", "])))


@settings(max_examples=400, deadline=None)
@given(text.map("".join))
def test_cleaning_is_idempotent(raw):
    once = clean_prompt(raw)
    assert clean_prompt(once) == once


def test_word_count_and_latin_fraction():
    assert word_count("a  red\tfox") == 3
    assert latin_fraction("a red fox") == 1.0
    assert latin_fraction("一只猫 cat") == pytest.approx(0.5)
    assert latin_fraction("1234 !!") == 0.0


def test_dedup_key_ignores_case_spacing_and_punctuation():
    assert dedup_key("A cat, by  Monet.") == dedup_key("a cat by monet")
    assert dedup_key("a cat") != dedup_key("a cats")
