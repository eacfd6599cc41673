"""The built book in a real browser (headless Debian Chromium driven by Playwright), served from localhost only.

For every page in _toc.yml: the title is there, every figure loads, the math is typeset by the self-hosted MathJax, no nbdev
`#|` directive is visible, nothing is fetched from outside localhost, and the console shows no error.
Build the book first (`make book`; `make test` does it).
"""
import functools
import os
import http.server
import json
import re
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
HTML = ROOT / "_build" / "html"
EXECUTED = ROOT / "_build" / "jupyter_execute"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")  # make test CHROMIUM=/path/to/chromium
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Console errors that are known and harmless, each with the reason. (None so far.)
KNOWN_CONSOLE_ERRORS: dict[str, str] = {}


def toc_files():
    "Every document in the book, in order, from _toc.yml."
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


def source_title(doc: str) -> str:
    "The H1 title a page must show, read from its source (notebook or Markdown)."
    src = ROOT / doc
    if (nb := src.with_suffix(".ipynb")).exists():
        cells = json.loads(nb.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    else:
        text = src.with_suffix(".md").read_text()
    return re.search(r"^# (.+)$", text, flags=re.M).group(1).strip()


def expected_figures(doc: str) -> int:
    "How many image outputs the executed notebook holds (0 for Markdown pages)."
    nb = EXECUTED / f"{doc}.ipynb"
    if not nb.exists(): return 0
    cells = json.loads(nb.read_text())["cells"]
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail("the book is not built: run `make book` first (make test does it)")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(HTML)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install the Debian package `chromium` (.ci/run does it)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def open_page(browser, url, base):
    "Open `url`; return the page, its console errors and every request that tried to leave localhost."
    page = browser.new_page()
    errors, outside = [], []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: r.url.startswith(base) and errors.append(f"failed: {r.url}"))
    def route(r):
        if r.request.url.startswith(base) or r.request.url.startswith("data:"): r.continue_()
        else: outside.append(r.request.url); r.abort()
    page.route("**/*", route)
    page.goto(url, wait_until="load")
    return page, errors, outside


@pytest.mark.parametrize("doc", toc_files())
def test_page(server, browser, doc):
    page, errors, outside = open_page(browser, f"{server}/{doc}.html", server)
    assert source_title(doc) in page.locator("h1").first.inner_text()
    # figures: as many as the executed notebook made, all loaded
    imgs = page.locator("main img")
    page.wait_for_function("() => [...document.querySelectorAll('main img')].every(i => i.complete)")
    widths = imgs.evaluate_all("els => els.map(e => e.naturalWidth)")
    assert len(widths) >= expected_figures(doc), (widths, expected_figures(doc))
    assert all(w > 0 for w in widths), widths
    # math: every math element typeset by MathJax, without errors
    n_math = page.locator("main .math").count()
    if n_math:
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        page.evaluate("() => MathJax.startup.promise")
        assert page.locator("main .math mjx-container").count() >= n_math
        assert page.locator("mjx-merror").count() == 0
    # nbdev directives stay out of sight
    text = page.locator("body").inner_text()
    assert "#|" not in text
    # Markdown tables printed by a notebook (measurements) are rendered as tables, not left as pipes and dashes
    prose = page.evaluate("() => { const m = document.querySelector('main').cloneNode(true);"
                          " m.querySelectorAll('pre, code').forEach(e => e.remove()); return m.innerText; }")
    assert "|---|" not in prose, "a Markdown table was not rendered (nb_render_markdown_format)"
    assert not outside, f"requests outside localhost: {outside}"
    unknown = [e for e in errors if not any(k in e for k in KNOWN_CONSOLE_ERRORS)]
    assert not unknown, unknown
    page.close()


def test_the_chapters_have_math_and_figures(server, browser):
    "The checks above are not vacuous: the core chapter has typeset math and figures."
    assert expected_figures("nbs/00_core") >= 2
    page, _, _ = open_page(browser, f"{server}/nbs/00_core.html", server)
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
    page.evaluate("() => MathJax.startup.promise")
    assert page.locator("main mjx-container").count() > 10
    page.close()


def test_the_offline_sliders_scrub(server, browser):
    "The explorer page's precomputed sliders (matplotlib's JavaScript player) change the frame when moved, offline."
    page, errors, outside = open_page(browser, f"{server}/nbs/08_explore.html", server)
    sliders = page.locator("main input.anim-slider")
    assert sliders.count() >= 2, "the explorer page should hold two offline sliders"
    for i in range(sliders.count()):
        slider = sliders.nth(i)
        img = page.locator("main img[id^='_anim_img']").nth(i)
        before = img.get_attribute("src")
        slider.evaluate("el => { el.value = el.max; el.dispatchEvent(new Event('input')); }")
        page.wait_for_function("([el, src]) => el.src !== src", arg=[img.element_handle(), before])
        assert img.get_attribute("src") != before and img.evaluate("el => el.naturalWidth") > 0
    assert not outside, f"requests outside localhost: {outside}"
    assert not [e for e in errors if not any(k in e for k in KNOWN_CONSOLE_ERRORS)], errors
    page.close()
