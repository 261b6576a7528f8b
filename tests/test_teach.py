"""Teach mode: POST /api/samples and the drawing page save one PNG per labelled sample under a class folder."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from model_helpers import (
    CHROMIUM,
    PYTHON,
    draw,
    export_tiny_model,
    launch_chromium,
    start_server,
    stop_server,
)
from PIL import Image
from test_server import png

from neurodigits.net import free_port
from neurodigits.synth import held_out_digits


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    export = export_tiny_model(tmp_path_factory.mktemp("export"))
    samples = tmp_path_factory.mktemp("samples") / "user"
    base = f"http://127.0.0.1:{free_port()}"
    process = start_server([PYTHON, "-m", "neurodigits.cli", "serve", "--model", str(export), "--samples", str(samples),
                            "--port", base.rsplit(":", 1)[1]], f"{base}/api/info")
    yield base, samples
    stop_server(process)


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def digit_png() -> bytes:
    x, _, _ = held_out_digits(28)
    return png(1 - x[0] / 255.0)  # dark ink on white paper, as drawn


def test_each_sample_becomes_one_png_in_its_class_folder(server):
    url, samples = server
    before = files(samples)
    for label in ("7", "a", "7"):
        response = httpx.post(f"{url}/api/samples", files={"file": ("d.png", digit_png(), "image/png")},
                              data={"label": label})
        assert response.status_code == 200, response.text
    assert response.json()["counts"] == {"7": 2, "a": 1} == httpx.get(f"{url}/api/samples").json()["counts"]
    new = [p for p in files(samples) if p not in before]
    assert sorted(p.parent.name for p in new) == ["7", "7", "a"] and all(p.suffix == ".png" for p in new)
    for path in new:  # decodable PNGs of the drawing, nothing else left behind (no temporaries)
        with Image.open(path) as image:
            assert image.format == "PNG" and image.mode == "L" and np.asarray(image).min() < 50


@pytest.mark.parametrize(("content", "label", "status", "message"), [
    (b"not an image at all", "7", 415, "not a readable image"),
    (png(np.full((100, 100), 0.9)), "7", 422, "blank"),
    (b"", "7", 422, "empty upload"),
    (b"\0" * (6 * 1024 * 1024), "7", 413, "over 5 MB"),
    (None, "../etc", 422, "use 1-32 letters, digits"),
    (None, "", 422, "use 1-32 letters, digits"),
    (None, "x" * 33, 422, "use 1-32 letters, digits"),
    (None, ".hidden", 422, "use 1-32 letters, digits"),
], ids=["undecodable", "blank", "empty", "too large", "path label", "empty label", "long label", "dot label"])
def test_bad_samples_are_rejected_and_write_nothing(server, content, label, status, message):
    url, samples = server
    before = files(samples)
    content = digit_png() if content is None else content
    response = httpx.post(f"{url}/api/samples", files={"file": ("x.png", content, "image/png")}, data={"label": label})
    assert response.status_code == status and message in response.json()["detail"]
    assert files(samples) == before


@pytest.mark.skipif(not CHROMIUM.exists(), reason="apt-get install chromium")
def test_teach_mode_on_the_drawing_page(server):
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    url, samples = server
    before = len(list((samples / "3").glob("*.png"))) if (samples / "3").exists() else 0
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 900, "height": 900})
        page.goto(url)
        page.check("#teach")
        draw(page, [[(x / 280, y / 280) for x, y in ((100, 60), (180, 70), (120, 140), (185, 200), (100, 230))]])  # a 3
        page.fill("#label", "3")
        page.click("#save")
        page.wait_for_selector("#counts li[data-label='3']")
        shown = page.locator("#counts li[data-label='3']").text_content()
        saved = page.locator("#saved").text_content()
        browser.close()
    assert shown == f"3: {before + 1}" and saved.startswith("saved as 3/")
    assert len(list((samples / "3").glob("*.png"))) == before + 1
