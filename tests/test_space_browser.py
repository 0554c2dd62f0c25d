"""The Space in a real browser: Debian Chromium driven by Playwright (see ../shared/docs/STACK_NOTES.md).

At a desktop (1400 px) and a phone (420 px) width: the banner says which checkpoint is served and that the
tiny random test model is a pipeline check, the footer carries the data attribution; a query fills the
gallery with no row or label cut off; a selected sample shows every modality, its colour bars, its caption
and its map; an uploaded real Sentinel-2 GeoTIFF gives captions in a table whose four columns all show,
next to a readable query image; a text file gets one message in the status area, no toast and no "Error"
pill, and the next success clears it. Screenshots are kept in ``outputs/screenshots/space`` (or
``$GEOMELD_SCREENSHOTS``) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
K = 8
SHOTS = Path(os.environ.get("GEOMELD_SCREENSHOTS", Path(__file__).resolve().parents[1] / "outputs" / "screenshots" / "space"))

# every gallery item and its label lies inside the visible part of the gallery (nothing clipped or scrolled away)
_GALLERY_CLIPPED = """(sel) => {
  const root = document.querySelector(sel);
  const items = [...root.querySelectorAll('.thumbnail-item')];
  const bad = [];
  let clip = root.getBoundingClientRect();
  for (let el = root.querySelector('.grid-wrap') || root; el && el !== root.parentElement; el = el.parentElement) {
    const style = getComputedStyle(el);
    if (style.overflowY !== 'visible' || style.overflowX !== 'visible') {
      const r = el.getBoundingClientRect();
      clip = {top: Math.max(clip.top, r.top), bottom: Math.min(clip.bottom, r.bottom), left: Math.max(clip.left, r.left), right: Math.min(clip.right, r.right)};
    }
  }
  items.forEach((item, i) => {
    const r = item.getBoundingClientRect();
    if (r.bottom > clip.bottom + 1 || r.right > clip.right + 1 || r.left < clip.left - 1) bad.push(`item ${i} outside the gallery`);
    const label = item.querySelector('.caption-label');
    if (label) {
      const l = label.getBoundingClientRect();
      if (label.scrollWidth > label.clientWidth + 1) bad.push(`label ${i} cut: ${label.innerText}`);
      if (l.bottom > r.bottom + 1 || l.right > r.right + 1) bad.push(`label ${i} outside its item`);
    }
  });
  return {items: items.length, bad};
}"""

# every header of the captions table lies within the table's visible box, wide enough to read
_TABLE_COLUMNS = """(sel) => {
  const root = document.querySelector(sel);
  const box = root.getBoundingClientRect();
  const heads = [...root.querySelectorAll('thead th, [role=columnheader]')].filter(h => h.innerText.trim());
  return heads.map(h => { const r = h.getBoundingClientRect(); const t = h.querySelector('span, div') || h;
    return {text: h.innerText.trim(), width: r.width, inside: r.left >= box.left - 1 && r.right <= box.right + 1,
            one_line: t.getBoundingClientRect().height < 2 * parseFloat(getComputedStyle(t).lineHeight || 20)}; });
}"""


@pytest.fixture(scope="module")
def browser() -> object:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e .[dev])")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Debian chromium not found at {CHROMIUM}: install it with `apt-get install chromium` (scripts/bootstrap.sh does as root)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def _open(browser: object, url: str, width: int) -> object:
    page = browser.new_page(viewport={"width": width, "height": 1600})  # type: ignore[attr-defined]
    page.set_default_timeout(60_000)
    page.goto(url)
    page.locator("#query textarea").wait_for()
    return page


def _shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def _upload(page: object, path: Path, name: str) -> None:
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
        _shot(page, f"failed_upload_{name}")
        raise


def _no_error_pills_or_toasts(page: object) -> None:
    toasts = page.locator(".toast-body").count()  # type: ignore[attr-defined]
    pills = page.evaluate("[...document.querySelectorAll('.wrap .error, .error')].filter(e => e.offsetParent && e.innerText.trim() === 'Error').length")  # type: ignore[attr-defined]
    assert toasts == 0 and pills == 0, f"{toasts} error toasts and {pills} 'Error' pills on the page"


def _assert_gallery_whole(page: object, selector: str, at_least: int) -> None:
    result = page.evaluate(_GALLERY_CLIPPED, selector)  # type: ignore[attr-defined]
    if result["items"] < at_least or result["bad"]:
        _shot(page, f"failed_gallery_{selector.strip('#')}")
    assert result["items"] >= at_least and not result["bad"], result


@pytest.mark.parametrize("width", [1400, 420])
def test_the_space_in_chromium(browser: object, space_server: str, terramind_dir: Path, tmp_path: Path, width: int) -> None:
    tag = f"{width}px"
    page = _open(browser, space_server, width)
    banner = page.locator("#banner").inner_text()
    assert "Pipeline check" in banner and "Checkpoint checkpoint" in banner and "no model card" in banner
    assert "sentinel2" in banner and "sentinel1" in banner
    footer = page.locator("#attribution").inner_text()
    assert "Copernicus Sentinel" in footer and "Natural Earth" in footer and "GeoNames" in footer

    page.locator("#query textarea").fill("lush fields on a flat plain")
    page.locator("#search").click()
    thumbnails = page.locator("#results img")
    thumbnails.nth(K - 1).wait_for()
    page.wait_for_function("document.querySelector('#status').innerText.includes('matches')")
    _assert_gallery_whole(page, "#results", K)

    thumbnails.first.click()
    page.locator("#modalities img").nth(3).wait_for()
    assert page.locator("#modalities img").count() >= 4
    _assert_gallery_whole(page, "#modalities", 4)
    page.wait_for_function("document.querySelector('#caption').innerText.trim().length > 20")
    assert page.locator("#selected textarea").input_value() in page.locator("#caption").inner_text()
    legend = page.locator("#legend").inner_text()
    assert "DEM elevation" in legend and "dB" in legend and "Sentinel-1 VV" in legend
    page.wait_for_function("document.querySelector('#facts').innerText.includes('supported')")
    facts = page.evaluate(_TABLE_COLUMNS, "#facts")
    assert [c["text"] for c in facts][:4] == ["claim", "verdict", "fact", "why"] and all(c["inside"] for c in facts[:4]), facts
    page.locator("#map img").wait_for(state="attached")
    page.locator("#map img").scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector('#map img').complete && document.querySelector('#map img').naturalWidth > 300")
    _shot(page, f"text_to_image_{tag}")
    box = page.locator("#map img").bounding_box()
    assert box and box["width"] >= 0.8 * min(width - 60, 810), box  # the map spans the page, not a thumbnail

    page.get_by_role("tab", name="Image → text").click()
    assert page.get_by_label("Sentinel-1 only").count() == 1  # the test model takes S1: its subset is offered
    _upload(page, terramind_dir / "S2L2A" / "637U_59R_1_3.tif", tag)
    page.locator("#to-text").click()
    page.locator("#status").get_by_text("637U_59R_1_3.tif").wait_for()
    # the table is virtualised (no <tr> per row): count the tile ids of the listed captions instead
    page.wait_for_function(r"(document.querySelector('#captions').innerText.match(/\w+_\w+_\d_\d_\d\b/g) || []).length >= 3")
    page.locator("#similar img").nth(2).wait_for()
    columns = page.evaluate(_TABLE_COLUMNS, "#captions")
    assert [c["text"] for c in columns][:4] == ["#", "score", "caption", "tile"], columns
    assert all(c["inside"] and c["width"] >= 20 and c["one_line"] for c in columns[:4]), columns
    # the image element appears before its pixels: measure it once it has loaded
    page.wait_for_function("(() => { const i = document.querySelector('#query-image img'); return i && i.complete && i.naturalWidth > 0; })()")
    shown = page.evaluate("(() => { const i = document.querySelector('#query-image img'); const r = i.getBoundingClientRect(); return {w: r.width, h: r.height, natural: i.naturalWidth}; })()")
    assert min(shown["w"], shown["h"]) >= 200 and shown["natural"] >= 256, shown  # the 64 px query enlarged, not a stamp
    _assert_gallery_whole(page, "#similar", 3)
    _no_error_pills_or_toasts(page)
    _shot(page, f"image_to_text_{tag}")

    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a GeoTIFF")
    page = _open(browser, space_server, width)
    _upload(page, notes, tag)
    page.locator("#to-text").click()
    page.locator("#status").get_by_text("not a GeoTIFF").wait_for()
    page.wait_for_timeout(500)  # a toast, had there been one, shows within this time
    assert page.get_by_text("not a GeoTIFF").count() == 1  # once, in the status area
    _no_error_pills_or_toasts(page)
    _shot(page, f"bad_upload_{tag}")

    # the app still serves after the error, and the success clears the message
    page.get_by_role("tab", name="Text → image").click()
    page.locator("#query textarea").fill("coast")
    page.locator("#search").click()
    page.locator("#results img").nth(K - 1).wait_for()
    page.wait_for_function("!document.querySelector('#status').innerText.includes('not a GeoTIFF')")
    assert "matches" in page.locator("#status").inner_text()
    print(f"\nscreenshots in {SHOTS}")
