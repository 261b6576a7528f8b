"""`dvc plots show` and `dvc plots diff` render with the Vega libraries inline: no network needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run
from model_helpers import CHROMIUM, launch_chromium


def render(project: Path, *command: str) -> str:
    out = project / "plots-html" / command[-1]
    run(["dvc", "plots", *command, "-o", str(out)], project)
    return (out / "index.html").read_text()


@pytest.fixture(scope="module")
def pages(tiny_project: Path) -> dict[str, str]:
    run(["python", "-m", "neurodigits.plots_template"], tiny_project)  # what `make setup` does
    return {"show": render(tiny_project, "show"), "diff": render(tiny_project, "diff")}


@pytest.mark.parametrize("command", ["show", "diff"])
def test_plots_html_loads_nothing_from_the_network(pages: dict[str, str], command: str):
    html = pages[command]
    assert not re.search(r"<script[^>]*\bsrc\s*=", html)  # DVC's default template pulls Vega from a CDN
    # loss, accuracy, confusion, and the CER per epoch that only a line model fills (empty here)
    assert "window.vegaEmbed=" in html and html.count("vegaEmbed('#") == 4


@pytest.mark.skipif(not CHROMIUM.exists(), reason="apt-get install chromium")
def test_plots_draw_in_a_browser_with_the_network_blocked(tiny_project: Path, pages: dict[str, str]):
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    requested, errors = [], []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.on("pageerror", lambda error: errors.append(error))
        page.route(re.compile(r"^https?://"), lambda route: (requested.append(route.request.url), route.abort()))
        page.goto((tiny_project / "plots-html" / "show" / "index.html").as_uri())
        page.wait_for_function("document.querySelectorAll('.vega-embed svg.marks').length === 4", timeout=30000)
        drawn = page.evaluate("[...document.querySelectorAll('.mark-line path, .mark-rect path')]"
                              ".filter(p => (p.getAttribute('d') || '').length > 10).length")
        browser.close()
    assert requested == [] and errors == []
    assert drawn >= 3  # loss and accuracy lines, confusion cells: drawn from the data, not blank charts
