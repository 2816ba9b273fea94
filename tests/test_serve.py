"""The web app: the API with the real default model (FastAPI's TestClient), its limits and
error answers, batching and back-pressure on a live server, and the page in a real headless
Chromium."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from image_helpers import drawn_png, png_header_only
from img2prompt.app.serve.app import create_app
from img2prompt.describer import Description
from sd_files import a1111_text, picture, png_with_text

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def client(describer) -> Iterator[TestClient]:
    app = create_app(describer, max_upload_mb=1, max_megapixels=64)
    with TestClient(app) as c:  # `with` runs the lifespan: the batching worker starts
        yield c


def post_image(client, data: bytes, name: str = "image.png", mime: str = "image/png"):
    return client.post("/api/describe", files={"image": (name, data, mime)})


def check_answer(answer: dict, encoder) -> np.ndarray:
    embedding = np.asarray(answer["embedding"], dtype=np.float32)
    assert embedding.shape == (384,)
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    assert answer["prompt"].strip() and answer["model_prompt"].strip()
    # match is the cosine of MiniLM(the model's prompt) to the embedding, recomputed
    # independently; the old alias "score" is gone.
    recomputed = float(encoder.encode([answer["model_prompt"]])[0] @ embedding)
    assert answer["match"] == pytest.approx(recomputed, abs=1e-5)
    assert "score" not in answer and "interrogation_score" not in answer
    cosines = [n["cosine"] for n in answer["neighbors"]]
    assert cosines and cosines == sorted(cosines, reverse=True)
    return embedding


def test_health(client, describer):
    health = client.get("/api/health").json()
    assert health["status"] == "ok"
    assert health["model"] == "default" and health["mode"] == "fast"
    assert health["bank_entries"] == len(describer.bank)
    assert health["max_upload_mb"] == 1


def test_describe_a_real_image(client, describer, encoder, kaggle_sample):
    path = kaggle_sample / "images" / "20057f34d.png"
    response = post_image(client, path.read_bytes(), path.name)
    assert response.status_code == 200, response.text
    answer = response.json()
    embedding = check_answer(answer, encoder)
    assert answer["image"] == {
        "name": path.name,
        "format": "PNG",
        "width": 512,
        "height": 512,
        "bytes": path.stat().st_size,
    }
    # An upload gets the embedding `predict` gives the same file.
    from_file = describer.predictor.predict_files([path], progress=False).embeddings[0]
    np.testing.assert_allclose(embedding, from_file, atol=1e-5)


def test_describe_a_drawn_image(client, encoder):
    response = post_image(client, drawn_png(), "drawn.png")
    assert response.status_code == 200, response.text
    check_answer(response.json(), encoder)


def test_an_embedded_prompt_answers_with_the_models_guess_beside_it(client, encoder, tmp_path):
    hostile = '<img src=x onerror="alert(1)"> a fox'
    path = png_with_text(tmp_path / "a.png", {"parameters": a1111_text(hostile)}, picture())
    answer = post_image(client, path.read_bytes(), "a.png").json()
    check_answer(answer, encoder)
    assert (answer["prompt"], answer["source"], answer["generator"]) == (
        hostile,
        "metadata",
        "AUTOMATIC1111",
    )
    assert answer["negative_prompt"] == "blurry" and answer["settings"]["steps"] == 20
    assert answer["model_prompt"] != hostile
    ignored = client.post(
        "/api/describe?metadata=ignore", files={"image": ("a.png", path.read_bytes(), "image/png")}
    ).json()
    assert ignored["source"] == "model" and ignored["prompt"] == answer["model_prompt"]
    assert ignored["settings"] == {} and ignored["negative_prompt"] is None
    assert (
        client.post("/api/describe?metadata=maybe", files={"image": ("a.png", b"x")}).status_code
        == 422
    )


def test_real_front_end_files_upload(client, shared_data):
    comfy = shared_data / "sd_metadata" / "parsers" / "ComfyUI" / "img2img_cropped.png"
    answer = post_image(client, comfy.read_bytes(), comfy.name).json()
    assert answer["source"] == "metadata" and answer["generator"] == "ComfyUI"
    assert answer["prompt"] == "photograph of victorian woman with wings, sky clouds, meadow grass"


def test_oversize_uploads_get_413(client):
    big = b"\0" * (1024 * 1024 + 1)
    response = post_image(client, big)
    assert response.status_code == 413 and "1 MB" in response.json()["detail"]

    # No Content-Length (chunked): cut off while reading.
    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 65536

    response = client.post(
        "/api/describe",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 413
    assert client.get("/api/health").status_code == 200


@pytest.mark.parametrize(
    ("name", "data", "status", "message"),
    [
        ("notes.txt", b"just some text, not an image\n", 415, "not an image"),
        ("cut.png", drawn_png()[:300], 400, "truncated"),
        ("bomb.png", png_header_only(100_000, 100_000), 400, "decompression bomb"),
        ("big.png", png_header_only(9000, 8000), 400, "64,000,000-pixel limit"),
        ("empty.png", b"", 400, "empty upload"),
    ],
)
def test_bad_uploads_get_clear_errors(client, name, data, status, message):
    response = post_image(client, data, name)
    assert response.status_code == status
    assert message in response.json()["detail"]
    assert name in response.json()["detail"] or name == "empty.png"


def test_missing_field_and_survival(client, encoder):
    response = client.post("/api/describe", files={"file": ("x.png", drawn_png(), "image/png")})
    assert response.status_code == 400 and "'image'" in response.json()["detail"]
    assert post_image(client, drawn_png(seed=2)).status_code == 200  # still serving


def test_page_and_schema(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="file"' in page.text
    # Works offline: nothing is fetched from another site (an SVG namespace is not a fetch).
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)
    for asset in ("/static/app.js", "/static/style.css"):
        response = client.get(asset)
        assert response.status_code == 200 and not re.search(r"https?://", response.text)
    schema = client.get("/openapi.json").json()
    assert "/api/describe" in schema["paths"] and "/api/health" in schema["paths"]
    for docs in ("/docs", "/redoc"):  # the API documentation pages work offline too
        html = client.get(docs).text
        assert "/openapi.json" in html and not re.search(r"https?://", html)
        for script in re.findall(r"""<script src=["']([^"']+)""", html):
            assert client.get(script).status_code == 200


# --- a live server: batching, back-pressure, failures -----------------------------------------


class FakeDescriber:
    """Answers instantly (or when released); records the batches it was given."""

    model_name, bank_name, mode, bank_entries = "fake", "none", "fast", 0

    def __init__(self, fail_first: bool = False, gate: threading.Event | None = None) -> None:
        self.batches: list[int] = []
        self.fail_first = fail_first
        self.gate = gate
        self.started = threading.Event()

    def describe_uploads(self, uploads, max_pixels):
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        self.batches.append(len(uploads))
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("the model broke")
        time.sleep(0.05)
        vector = np.full(384, 384**-0.5, np.float32)
        return [Description(name, "a prompt", 0.5, vector, ["a prompt"]) for name, _ in uploads]


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """uvicorn on a free loopback port, in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_concurrent_uploads_are_batched_and_bounded():
    gate = threading.Event()
    fake = FakeDescriber(gate=gate)
    app = create_app(fake, max_pending=3)
    png = drawn_png()
    with live_server(app) as url, ThreadPoolExecutor(8) as pool:

        def post():
            with httpx.Client(base_url=url, timeout=20) as c:
                return c.post("/api/describe", files={"image": ("x.png", png, "image/png")})

        first = pool.submit(post)
        assert fake.started.wait(10)  # the worker holds the first upload
        waiting = [pool.submit(post) for _ in range(3)]
        deadline = time.monotonic() + 10
        while app.state.worker.pending < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        refused = post()  # the queue is full
        assert refused.status_code == 503 and "busy" in refused.json()["detail"]
        gate.set()
        answers = [f.result() for f in [first, *waiting]]
    assert [a.status_code for a in answers] == [200] * 4
    assert fake.batches == [1, 3]  # the three that waited went through together


def test_a_model_failure_is_a_500_and_the_server_goes_on():
    fake = FakeDescriber(fail_first=True)
    with live_server(create_app(fake)) as url, httpx.Client(base_url=url) as c:
        files = {"image": ("x.png", drawn_png(), "image/png")}
        failed = c.post("/api/describe", files=files)
        assert failed.status_code == 500 and "model failed" in failed.json()["detail"]
        assert c.post("/api/describe", files=files).status_code == 200


# --- the page in a real browser ---------------------------------------------------------------


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"
)
def test_the_page_in_a_headless_browser(describer, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    image = tmp_path / "sunset.png"
    image.write_bytes(drawn_png(640, 480))
    with live_server(create_app(describer)) as url, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 900},
                accept_downloads=True,
                permissions=["clipboard-read", "clipboard-write"],
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            expect(page.locator("#status")).to_have_class("status ok", timeout=10_000)
            page.set_input_files("#file", str(image))
            prompt = page.locator("#prompt")
            expect(prompt).not_to_be_empty(timeout=30_000)
            expect(page.locator("#output")).to_be_visible()
            expect(page.locator("#preview")).to_be_visible()
            expect(page.locator("#image-meta")).to_contain_text("640×480")
            assert float(page.locator("#score-value").inner_text()) > 0
            assert page.locator("#neighbors li").count() > 0
            expect(page.locator("#copy")).to_be_enabled()

            # The page's own .npy writer gives the API's embedding back.
            with page.expect_download() as download:
                page.click("#dl-npy")
            saved = tmp_path / "embedding.npy"
            download.value.save_as(saved)
            vector = np.load(saved)
            assert vector.shape == (384,) and vector.dtype == np.float32
            api = httpx.post(
                f"{url}/api/describe", files={"image": ("s.png", image.read_bytes(), "image/png")}
            ).json()
            np.testing.assert_allclose(vector, api["embedding"], atol=1e-6)
            assert prompt.inner_text() == api["prompt"]

            # A bad file shows the server's message, and the page keeps working.
            notes = tmp_path / "notes.png"
            notes.write_text("not an image")
            page.set_input_files("#file", str(notes))
            expect(page.locator("#error")).to_contain_text("not an image", timeout=10_000)
            page.set_input_files("#file", str(image))
            expect(page.locator("#output")).to_be_visible(timeout=30_000)
            expect(page.locator("#error")).to_be_hidden()
            expect(page.locator("#embedded")).to_be_hidden()  # no metadata in this file

            # A file that carries its prompt: shown as text (never as HTML), with its negative
            # prompt and settings, each with a copy button, and the model's guess beside it.
            hostile = '<img src=x onerror="window.hacked=1"> a fox in the snow'
            sd_file = png_with_text(tmp_path / "a1111.png", {"parameters": a1111_text(hostile)})
            page.set_input_files("#file", str(sd_file))
            expect(page.locator("#source")).to_contain_text("AUTOMATIC1111", timeout=30_000)
            expect(prompt).to_have_text(hostile)
            assert page.locator("#prompt img").count() == 0
            assert page.evaluate("window.hacked === undefined")
            expect(page.locator("#negative")).to_have_text("blurry")
            expect(page.locator("#settings")).to_contain_text("seed")
            expect(page.locator("#model-prompt")).not_to_be_empty()
            for button, text in (("#copy-negative", "blurry"), ("#copy", hostile)):
                page.click(button)
                assert page.evaluate("navigator.clipboard.readText()") == text
            page.click("#copy-settings")
            assert "steps: 20" in page.evaluate("navigator.clipboard.readText()")
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            if target := os.environ.get("IMG2PROMPT_SCREENSHOT"):
                shutil.copy(shot, target)

            # /docs renders Swagger UI from the app's own files: nothing from another origin.
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"{url}/docs")
            expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=20_000)
            expect(page.get_by_text("/api/describe", exact=True)).to_be_visible()
            assert requests and all(r.startswith(url) for r in requests), requests
            assert errors == []
        finally:
            browser.close()
