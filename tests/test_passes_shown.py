"""Every pass a file names reaches what a person reads: describe's JSON and Parquet, the HTTP
answer and the metadata table; the prompt stays the base pass's, and a prompt made at run time
is never filled in (only its note and literal candidates are shown)."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from img2prompt.app.cli import app
from img2prompt.app.serve.app import create_app
from img2prompt.metadata import read_metadata

runner = CliRunner()
BASE = "(waifu, anime, exceptional, best aesthetic"
HIRES = "beautiful scenery landscape outdoors mountains"


@pytest.fixture(scope="module")
def two_pass(shared_data):
    """A real ComfyUI file: an unCLIP base pass, then a hires pass with another prompt."""
    return shared_data / "sd_metadata" / "parsers" / "ComfyUI" / "unclip_2pass_cropped.png"


def _reader_graph_png(tmp_path):
    """A ComfyUI graph whose prompt comes from a prompt-reader node at run time."""
    from sd_files import png_with_text

    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
        "2": {"class_type": "SDPromptReader", "inputs": {"image": "00067-2302238556.png"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": ["2", 0], "clip": ["1", 1]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": ["2", 1], "clip": ["1", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64}},
        "6": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["3", 0],
                "negative": ["4", 0],
                "latent_image": ["5", 0],
                "seed": 1,
                "steps": 20,
                "denoise": 1.0,
            },
        },
    }
    return png_with_text(tmp_path / "reader.png", {"prompt": json.dumps(graph)})


def test_describe_json_and_parquet_list_every_pass_the_base_first(two_pass, tmp_path):
    out = tmp_path / "d.parquet"
    result = runner.invoke(app, ["describe", str(two_pass), "--metadata", "only", "--json"])
    assert result.exit_code == 0, result.output
    (answer,) = json.loads(result.stdout)["results"]
    assert answer["source"] == "metadata" and answer["prompt"].startswith(BASE)
    assert [p["role"] for p in answer["passes"]] == ["base", "hires"]
    assert answer["passes"][0]["positive"] == answer["prompt"]
    assert answer["passes"][1]["positive"].startswith(HIRES)
    assert answer["metadata_note"] is None and answer["metadata_candidates"] == []
    saved = runner.invoke(app, ["describe", str(two_pass), "--metadata", "only", "--out", str(out)])
    assert saved.exit_code == 0, saved.output
    (row,) = pq.read_table(out).to_pylist()
    assert json.loads(row["passes"]) == answer["passes"]  # JSON text: settings vary by file


def test_a_prompt_made_at_run_time_is_never_filled_in(tmp_path):
    path = _reader_graph_png(tmp_path)
    found = read_metadata(path)
    assert found.prompt is None and found.negative_prompt is None
    assert found.note and "SDPromptReader" in found.note
    assert "00067-2302238556.png" not in found.candidates  # a file name is never a prompt
    result = runner.invoke(app, ["describe", str(path), "--metadata", "only", "--json"])
    (answer,) = json.loads(result.stdout)["results"]
    assert answer["prompt"] is None and answer["source"] == "none"
    assert answer["metadata_note"] == found.note
    table = runner.invoke(app, ["metadata", str(path)])
    assert "(none)" in table.stdout and "SDPromptReader" in table.stdout


def test_the_http_answer_carries_the_passes(describer, two_pass):
    with TestClient(create_app(describer, max_upload_mb=1, max_megapixels=64)) as client:
        files = {"image": (two_pass.name, two_pass.read_bytes(), "image/png")}
        answer = client.post("/api/describe", files=files).json()
        schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert answer["source"] == "metadata" and answer["prompt"].startswith(BASE)
    assert [p["role"] for p in answer["passes"]] == ["base", "hires"]
    assert answer["model_prompt"]  # the model's guess stays beside it
    response = next(s for name, s in schema.items() if name.startswith("DescribeResponse"))
    assert {"passes", "metadata_note", "metadata_candidates"} <= set(response["properties"])


def test_the_metadata_table_shows_later_passes_under_the_base_prompt(two_pass):
    result = runner.invoke(app, ["metadata", str(two_pass)])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "hires pass:" in text and text.index("waifu") < text.index("hires pass:")


def test_the_page_shows_the_base_prompt_and_folds_the_other_passes(describer, two_pass, tmp_path):
    from test_serve import CHROMIUM, live_server

    if not CHROMIUM.exists():
        pytest.skip("needs Chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    reader = _reader_graph_png(tmp_path)
    with live_server(create_app(describer)) as url, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.set_input_files("#file", str(two_pass))
            expect(page.locator("#source")).to_contain_text("ComfyUI", timeout=30_000)
            assert page.locator("#prompt").inner_text().startswith(BASE)
            expect(page.locator("#passes-title")).to_have_text("Other passes (1)")
            expect(page.locator("#passes-list li")).to_have_count(1)
            page.click("#passes-title")  # folded until a person opens it
            expect(page.locator("#passes-list li").first).to_contain_text(HIRES)
            expect(page.locator("#runtime")).to_be_hidden()
            if target := os.environ.get("IMG2PROMPT_SCREENSHOT"):
                page.screenshot(path=target, full_page=True)
            page.set_input_files("#file", str(reader))  # its prompt is made at run time
            expect(page.locator("#runtime")).to_be_visible(timeout=30_000)
            expect(page.locator("#metadata-note")).to_contain_text("SDPromptReader")
            expect(page.locator("#embedded")).to_be_hidden()  # the model's guess is the answer
            expect(page.locator("#passes")).to_be_hidden()
        finally:
            browser.close()
