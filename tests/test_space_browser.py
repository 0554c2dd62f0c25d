"""The Space in a real browser: Debian Chromium driven by Playwright (see ../shared/docs/STACK_NOTES.md).

Type a query and see the thumbnails; select one and see every modality and the caption; upload a real
Sentinel-2 GeoTIFF and see captions; upload a text file and see the error. Screenshots go to the test's
output folder (pytest's tmp_path, printed with -s).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
K = 8


@pytest.fixture(scope="module")
def browser() -> object:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e .[dev])")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Debian chromium not found at {CHROMIUM}: install it with `apt-get install chromium` (scripts/bootstrap.sh does as root)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def _open(browser: object, url: str) -> object:
    page = browser.new_page(viewport={"width": 1400, "height": 1800})  # type: ignore[attr-defined]
    page.set_default_timeout(60_000)
    page.goto(url)
    page.locator("#query textarea").wait_for()
    return page


def _upload(page: object, path: Path, out: Path) -> None:
    """Switch to the image -> text tab, choose the upload source and upload ``path``; waits for the file name."""
    page.get_by_role("tab", name="Image → text").click()  # type: ignore[attr-defined]
    page.locator("#upload").wait_for()  # type: ignore[attr-defined]
    page.get_by_label("uploaded GeoTIFF").check()  # type: ignore[attr-defined]
    page.locator("#upload input[type=file]").set_input_files(str(path))  # type: ignore[attr-defined]
    try:
        page.wait_for_function(  # type: ignore[attr-defined]
            f"document.querySelector('#upload').textContent.replace(/\\s+/g, '').includes({path.name!r})"
        )
    except Exception:
        page.screenshot(path=str(out / f"failed_upload_{path.stem}.png"), full_page=True)  # type: ignore[attr-defined]
        raise


def test_search_select_and_upload_in_chromium(browser: object, space_server: str, terramind_dir: Path, tmp_path: Path) -> None:
    page = _open(browser, space_server)
    page.locator("#query textarea").fill("lush fields on a flat plain")
    page.locator("#search").click()
    thumbnails = page.locator("#results img")
    thumbnails.nth(K - 1).wait_for()
    assert thumbnails.count() >= K
    assert "matches" in page.locator("#status").inner_text()

    thumbnails.first.click()
    page.locator("#modalities img").nth(3).wait_for()
    assert page.locator("#modalities img").count() >= 4
    page.wait_for_function("document.querySelector('#caption').innerText.trim().length > 20")
    caption = page.locator("#caption").inner_text()
    assert page.locator("#selected textarea").input_value() in caption
    page.wait_for_function("document.querySelector('#facts').innerText.includes('supported')")
    page.locator("#map img").wait_for()
    page.screenshot(path=str(tmp_path / "text_to_image.png"), full_page=True)

    _upload(page, terramind_dir / "S2L2A" / "637U_59R_1_3.tif", tmp_path)
    page.locator("#to-text").click()
    page.locator("#to-text-status").get_by_text("637U_59R_1_3.tif").wait_for()
    # the table is virtualised (no <tr> per row): count the tile ids of the listed captions instead
    page.wait_for_function(r"(document.querySelector('#captions').innerText.match(/\w+_\w+_\d_\d_\d\b/g) || []).length >= 3")
    page.locator("#similar img").nth(2).wait_for()
    page.screenshot(path=str(tmp_path / "image_to_text.png"), full_page=True)

    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a GeoTIFF")
    page = _open(browser, space_server)
    _upload(page, notes, tmp_path)
    page.locator("#to-text").click()
    page.get_by_text("not a GeoTIFF").first.wait_for()
    page.screenshot(path=str(tmp_path / "bad_upload.png"), full_page=True)
    print(f"\nscreenshots in {tmp_path}")

    # the app still serves after the error
    page.get_by_role("tab", name="Text → image").click()
    page.locator("#query textarea").fill("coast")
    page.locator("#search").click()
    page.locator("#results img").nth(K - 1).wait_for()
