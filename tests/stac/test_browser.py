"""STAC Browser (4, from the npm registry) in headless Chromium opens a lake served by
`lake serve`: the catalogue, each collection with its thumbnail, and an item of each, with
no console error. `.ci/run` builds STAC Browser and installs Chromium; elsewhere this test
skips, saying why. No request leaves the machine: the map's basemap tiles are answered
with a blank tile."""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.postgres

BROWSER_ENV = "LAKE_TEST_STAC_BROWSER"
"""The folder of a built STAC Browser (`.ci/stac-browser` prints it)."""
CHROMIUM_ENV = "LAKE_TEST_CHROMIUM"


def _chromium() -> str:
    found = (
        os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if not found:
        pytest.skip(f"no Chromium: install Debian's chromium or set {CHROMIUM_ENV}")
    return found


def _app() -> Path:
    folder = os.environ.get(BROWSER_ENV)
    if not folder or not (Path(folder) / "index.html").is_file():
        pytest.skip(
            f"no STAC Browser build: run `bash .ci/stac-browser` and set {BROWSER_ENV} "
            "to the folder it prints (.ci/run does)"
        )
    return Path(folder)


def _serve(server: Any) -> Iterator[str]:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


def _blank_tile() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGBA", (256, 256), (0, 0, 0, 0)).save(buffer, format="png")
    return buffer.getvalue()


@pytest.fixture
def browser_setup() -> tuple[Any, Path, str]:
    """Playwright, the STAC Browser build and Chromium: checked before the lake is built."""
    return pytest.importorskip("playwright.sync_api"), _app(), _chromium()


def test_stac_browser_shows_every_collection_item_and_thumbnail(
    browser_setup: tuple[Any, Path, str], lake: Path
) -> None:
    playwright, app, chromium = browser_setup
    from lake.serve import make_server

    served = _serve(make_server(str(lake), port=0))
    ui = _serve(ThreadingHTTPServer(("127.0.0.1", 0),
                                    functools.partial(_Quiet, directory=str(app))))  # fmt: skip
    base, ui_base = next(served), next(ui)
    errors: list[str] = []
    outside: list[str] = []
    tile = _blank_tile()
    catalog = json.loads((lake / "catalog.json").read_text())
    children = [link["href"].removeprefix("./") for link in catalog["links"]
                if link["rel"] == "child"]  # fmt: skip
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def route(r: Any) -> None:
                if r.request.url.startswith(("http://127.0.0.1", "data:", "blob:")):
                    r.continue_()
                    return
                outside.append(r.request.url)
                r.fulfill(status=200, content_type="image/png", body=tile)

            page.route("**/*", route)

            def open_page(path: str, title: str) -> None:
                page.goto(f"{ui_base}/#/external/{base}/{path}")
                page.wait_for_function("t => document.body.innerText.includes(t)", arg=title,
                                       timeout=30_000)  # fmt: skip
                page.wait_for_load_state("networkidle")
                text = page.inner_text("body")
                assert "could not be loaded" not in text, (path, text[:500])

            open_page("catalog.json", catalog["title"])
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.src, e.complete && e.naturalWidth > 0])"
            )
            thumbnails = {src for src, ok in images if ok and src.endswith("/thumbnail.png")}
            for href in children:
                collection = json.loads((lake / href).read_text())
                assert f"{base}/{href.rsplit('/', 1)[0]}/thumbnail.png" in thumbnails
                open_page(href, collection["title"])
                item = next(link["href"] for link in collection["links"] if link["rel"] == "item")
                folder = href.rsplit("/", 1)[0]
                item_path = f"{folder}/{item.removeprefix('./')}"
                open_page(item_path, json.loads((lake / item_path).read_text())["id"])
            browser.close()
    finally:
        for server in (served, ui):
            next(server, None)
    assert errors == []
    assert all("tile.openstreetmap.org" in url for url in outside), outside
