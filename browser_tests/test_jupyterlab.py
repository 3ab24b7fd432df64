"""A student's path through a chapter, in a real browser: open chapter 01 in JupyterLab, run all
cells, move the slice browser's slider and see the figure change.

Finds the widget by its slider's description "slice" (ipywidgets' ``.widget-slider``), never by
the chapter's text, so teaching edits to the notebook do not break it. On a failure the page
fixture saves outputs/browser/failure.png.
"""
from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest

from conftest import CHAPTER, SCREENSHOTS

KERNEL_START_S = 120
RUN_ALL_S = 300  # kernel start, torch import and the smoke chapter on 2 shared cores: under a minute
WIDGET_S = 60
STEPS = 3  # arrow presses on the slider

# Every code cell has been run: a number in each prompt, none "[ ]" or "[*]".
ALL_CELLS_RUN = """() => {
    const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')];
    return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
}"""
IMAGE_CHANGED = """([widget, src]) => {
    const img = widget.querySelector('.widget-output img');
    return img !== null && img.src !== src;
}"""


def _wait_for_idle_kernel(page, base_url: str, token: str, timeout_s: float) -> None:
    """The server's own word that the notebook's kernel has started and is idle. Waits with
    Playwright, not time.sleep: the page's requests pass the fixture's route guard only while
    Playwright's event loop runs."""
    deadline, states = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base_url}/api/sessions?token={token}", timeout=10) as answer:
            states = [s["kernel"]["execution_state"] for s in json.load(answer) if s.get("kernel")]
        if "idle" in states:
            return
        page.wait_for_timeout(500)
    pytest.fail(f"no idle kernel within {timeout_s} s (kernel states: {states or 'no session'})", pytrace=False)


def _settled_figure(page, image, base_url: str, token: str, timeout_s: float) -> str:
    """The figure's data URL once every redraw the presses asked for has arrived: the kernel is
    idle and the image has not changed for a second (ipywidgets may send the slider's values to
    the kernel one by one, and an idle kernel between two of them is not the end)."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        _wait_for_idle_kernel(page, base_url, token, timeout_s)
        src = image.get_attribute("src")
        if src == last:
            return src
        last = src
        page.wait_for_timeout(1000)
    pytest.fail(f"the slice browser's figure kept changing for {timeout_s} s after the slider moved", pytrace=False)


def _errors(page) -> str:
    """The tracebacks and stderr the notebook shows, for a failure message."""
    texts = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    return "\n---\n".join(t[-1500:] for t in texts) or "(no error output shown)"


def test_run_chapter_and_move_slice_slider(page, jupyterlab):
    base_url, token, root = jupyterlab
    started = time.monotonic()
    page.goto(f"{base_url}/lab/tree/{CHAPTER.name}?token={token}", wait_until="domcontentloaded")
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(state="visible", timeout=90_000)
    # Run all cells once the kernel is up, as a student would after the status bar says Idle.
    _wait_for_idle_kernel(page, base_url, token, KERNEL_START_S)
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^\s*Run\s*$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^\s*Run All Cells\s*$")).click()
    try:
        page.wait_for_function(ALL_CELLS_RUN, timeout=RUN_ALL_S * 1000, polling=500)
    except Exception:
        pytest.fail(f"Run All Cells did not finish within {RUN_ALL_S} s; the notebook shows:\n{_errors(page)}",
                    pytrace=False)
    _wait_for_idle_kernel(page, base_url, token, WIDGET_S)
    ran = time.monotonic() - started

    label = page.locator(".widget-label", has_text=re.compile(r"^\s*slice\s*$"))
    slider = page.locator(".widget-slider", has=label)
    try:
        slider.wait_for(state="visible", timeout=WIDGET_S * 1000)
    except Exception:
        pytest.fail("no ipywidgets slider described 'slice' was rendered; is LOMIX_HEADLESS set for the kernel, "
                    f"or did a cell fail?\n{_errors(page)}", pytrace=False)
    assert slider.count() == 1, f"expected one 'slice' slider, found {slider.count()}"
    widget = page.locator(".widget-vbox", has=slider).last
    image = widget.locator(".widget-output img")
    readout = slider.locator(".widget-readout")
    image.wait_for(state="visible", timeout=WIDGET_S * 1000)
    widget.scroll_into_view_if_needed()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    widget.screenshot(path=str(SCREENSHOTS / "01_slice_browser_before.png"))
    before_src, before_value = image.get_attribute("src"), readout.inner_text().strip()

    # The keyboard on the focused handle, as a student stepping with the arrow keys.
    handle = slider.locator(".noUi-handle")
    handle.focus()
    for _ in range(STEPS):
        handle.press("ArrowRight")
    expected = str(int(before_value) + STEPS)
    try:
        page.wait_for_function("([r, v]) => r.textContent.trim() === v", arg=[readout.element_handle(), expected],
                               timeout=WIDGET_S * 1000)
    except Exception:
        pytest.fail(f"{STEPS} presses of ArrowRight moved the slider from {before_value} to "
                    f"{readout.inner_text().strip()}, not {expected}", pytrace=False)
    try:
        page.wait_for_function(IMAGE_CHANGED, arg=[widget.element_handle(), before_src], timeout=WIDGET_S * 1000)
    except Exception:
        pytest.fail(f"the slider moved to {expected} but the slice browser's figure did not change", pytrace=False)
    after_src = _settled_figure(page, image, base_url, token, WIDGET_S)
    assert after_src != before_src, "the slice browser's figure is the same before and after the slider moved"

    shot = SCREENSHOTS / "01_slice_browser.png"
    widget.scroll_into_view_if_needed()
    page.screenshot(path=str(shot))
    widget.screenshot(path=str(SCREENSHOTS / "01_slice_browser_after.png"))
    print(f"\nopened the chapter and ran all cells in {ran:.0f} s; slider 'slice' {before_value} -> {expected}; "
          f"figure changed ({len(before_src)} -> {len(after_src)} characters of data URL); "
          f"whole test {time.monotonic() - started:.0f} s; screenshot: {shot}")
    # The notebook's own links (its Colab badge) are requests the guard aborted: listed, not fatal.
    print(f"requests to other hosts, aborted in the browser: {sorted(set(page.blocked)) or 'none'}")
