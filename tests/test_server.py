"""`neurodigits serve` on loopback: the JSON API through httpx, the drawing page in headless Chromium."""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import httpx
import numpy as np
import pytest
from model_helpers import (
    CHROMIUM,
    PYTHON,
    export_tiny_model,
    launch_chromium,
    start_server,
    stop_server,
)
from PIL import Image

from neurodigits.inference import classify, load_classifier
from neurodigits.net import free_port
from neurodigits.preprocess import load_digit, preprocess_image
from neurodigits.synth import held_out_digits, realistic_photo

SCREENSHOT_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_model(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def url(export: Path):
    base = f"http://127.0.0.1:{free_port()}"
    port = base.rsplit(":", 1)[1]
    server = start_server([PYTHON, "-m", "neurodigits.cli", "serve", "--model", str(export), "--port", port],
                          f"{base}/api/info")
    yield base
    stop_server(server)


def png(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_page_and_static_files_are_served(url):
    page = httpx.get(url)
    assert page.status_code == 200 and "<canvas" in page.text and "/static/app.js" in page.text
    for name in ("app.js", "style.css"):
        assert httpx.get(f"{url}/static/{name}").status_code == 200
    assert "http" not in httpx.get(f"{url}/static/app.js").text  # no external CDN


def test_static_files_ship_in_the_package():
    static = resources.files("neurodigits.server") / "static"
    assert {"index.html", "app.js", "style.css"} <= {p.name for p in static.iterdir()}


def test_predict_an_uploaded_photo(url, export):
    x, y, _ = held_out_digits(28)
    photo = realistic_photo(x[0], np.random.default_rng(0))
    response = httpx.post(f"{url}/api/predict", files={"file": ("digit.jpg", photo, "image/jpeg")})
    assert response.status_code == 200
    body = response.json()
    assert set(body["probabilities"]) == set("0123456789") and abs(sum(body["probabilities"].values()) - 1) < 1e-4
    assert body["label"] == body["top"][0]["label"] and body["input"].startswith("data:image/png;base64,")


def test_concurrent_requests_get_the_answers_of_single_ones(url, export):
    """Eight clients at once on the shared TFLite interpreter: each answer is the one the library gives."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    x, _, _ = held_out_digits(28)
    rng = np.random.default_rng(1)
    photos = [realistic_photo(digit, rng) for digit in x[:48]]
    classifier = load_classifier(export)
    expected = [classify(classifier, load_digit(io.BytesIO(p), classifier.image_size)[None])[0].probabilities
                for p in photos]

    def ask(photo: bytes) -> dict:
        return httpx.post(f"{url}/api/predict", files={"file": ("d.jpg", photo, "image/jpeg")}).json()["probabilities"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, photos))
    for answer, probabilities in zip(answers, expected):
        assert answer == pytest.approx(probabilities, abs=1e-6)


@pytest.mark.parametrize(("content", "status", "message"), [
    (b"not an image at all", 415, "not a readable image"),
    (png(np.full((100, 100), 0.9)), 422, "blank"),
    (b"", 422, "empty upload"),
    (b"\0" * (6 * 1024 * 1024), 413, "over 5 MB"),
])
def test_bad_uploads_get_clear_4xx(url, content, status, message):
    response = httpx.post(f"{url}/api/predict", files={"file": ("x.png", content, "image/png")})
    assert response.status_code == status and message in response.json()["detail"]


def test_missing_file_field_is_422(url):
    assert httpx.post(f"{url}/api/predict", data={"nothing": "here"}).status_code == 422


@pytest.mark.skipif(not CHROMIUM.exists(), reason="apt-get install chromium")
def test_drawing_on_the_canvas_shows_the_prediction(url, export):
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    classifier = load_classifier(export)
    x, y, classes = held_out_digits(28)
    predictions = classify(classifier, np.stack([preprocess_image(d / 255.0, 20) for d in x[:50]]))
    index = next(i for i, p in enumerate(predictions)  # a held-out digit the model reads confidently
                 if p.label == classes[y[i]] and p.probability > 0.95 and p.label in "2357")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 900, "height": 620})
        page.goto(url)
        empty_before = page.locator("#input").is_hidden() and page.locator("#input-box").is_visible()
        box = page.locator("#canvas").bounding_box()
        cell = box["width"] / 28
        for row in range(28):  # trace the digit's ink, row by row, as pen strokes
            columns = np.flatnonzero(x[index][row] > 128)
            for run in np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1) if len(columns) else []:
                top = box["y"] + (row + 0.5) * cell
                page.mouse.move(box["x"] + (run[0] + 0.5) * cell, top)
                page.mouse.down()
                page.mouse.move(box["x"] + (run[-1] + 0.5) * cell, top, steps=2)
                page.mouse.up()
        page.wait_for_function("document.getElementById('digit').textContent !== '?'")
        page.wait_for_timeout(800)  # let the last stroke's prediction land
        shown = page.locator("#digit").text_content()
        input_shown = page.locator("#input").is_visible() and page.locator("#input-box").is_hidden()
        bars = page.locator(".bar").count()
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_DIR / "serve_page.png"))
        page.click("#clear")
        cleared = page.locator("#digit").text_content()
        browser.close()
    assert shown == classes[y[index]] and bars == 10 and cleared == "?"
    assert empty_before and input_shown  # an empty box, not a broken image, before the first prediction
