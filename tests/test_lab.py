"""`make lab`: a chapter saved from JupyterLab (with the kernel's metadata, outputs and execution counts a run leaves) is
written back byte for byte as git has it, so opening and running a chapter never dirties the repository."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
JUPYTER = Path(sys.executable).parent / "jupyter"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")  # make test CHROMIUM=/path/to/chromium


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    "JupyterLab as `make lab` starts it (the same --config), on a copy of nbs/ and settings.ini."
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "nbs", root / "nbs")
    shutil.copy(ROOT / "settings.ini", root / "settings.ini")
    port = free_port()
    # As a reader has it: progress bars shown (the test run's quiet switches left out); the project's run cache.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "HESSIAN_NB_QUIET", "IN_TEST")}
    env.setdefault("HESSIAN_NB_CACHE", str(ROOT / ".cache" / "hessian_nb"))
    # every cell drawn at once (JupyterLab otherwise renders a cell when it is scrolled to), no news pop-up
    settings = root / "lab-settings"
    for plugin, value in (("notebook-extension/tracker", {"windowingMode": "none"}),
                          ("apputils-extension/notification", {"fetchNews": "false"})):
        f = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True); f.write_text(json.dumps(value))
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    p = subprocess.Popen([str(JUPYTER), "lab", "--no-browser", f"--port={port}", "--IdentityProvider.token=t",
                          f"--config={ROOT / '_ext' / 'lab_config.py'}", "--allow-root", "--notebook-dir", "nbs",
                          f"--LabApp.workspaces_dir={root / 'workspaces'}"],
                         cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env={**env, "JUPYTER_CONFIG_DIR": str(root / ".jupyter")})
    url = f"http://127.0.0.1:{port}/api/contents"
    for _ in range(120):
        try: urllib.request.urlopen(f"{url}?token=t", timeout=2); break
        except OSError: time.sleep(0.5)
    else:
        p.kill(); pytest.fail("JupyterLab did not start in 60 s: " + p.stderr.read()[-2000:])
    yield url, root
    p.terminate()
    try: p.wait(timeout=20)
    except subprocess.TimeoutExpired: p.kill()


@pytest.mark.parametrize("chapter", ["00f_core", "05_bulk_and_outliers", "index"])
def test_a_chapter_saved_after_a_run_is_as_git_has_it(lab, chapter):
    url, root = lab
    nb = json.loads((ROOT / "nbs" / f"{chapter}.ipynb").read_text())
    nb["metadata"]["kernelspec"]["display_name"] = "Python 3 (ipykernel)"  # what JupyterLab writes on open
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.2", "file_extension": ".py"}
    for i, c in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):  # what a run leaves
        c["execution_count"] = i + 1
        c["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["a result\n"]}]
    body = json.dumps({"type": "notebook", "format": "json", "content": nb}).encode()
    req = urllib.request.Request(f"{url}/{chapter}.ipynb?token=t", data=body, method="PUT",
                                 headers={"Content-Type": "application/json"})
    assert urllib.request.urlopen(req, timeout=30).status in (200, 201)
    assert (root / "nbs" / f"{chapter}.ipynb").read_bytes() == (ROOT / "nbs" / f"{chapter}.ipynb").read_bytes()


@pytest.fixture(scope="module")
def lab_browser(lab):
    "Open a chapter in JupyterLab in headless Chromium: returns the page, the copy's root and the page's uncaught errors."
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install the Debian package `chromium` (.ci/run does it)")
    from playwright.sync_api import sync_playwright
    url, root = lab
    base = url.removesuffix("/api/contents")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        def open_chapter(chapter, cells=None):
            if cells is not None:  # a notebook of these Markdown cells instead of a chapter
                chapter = "_markdown_check"
                nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": c} for c in cells],
                      "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                      "nbformat": 4, "nbformat_minor": 5}
                (root / "nbs" / f"{chapter}.ipynb").write_text(json.dumps(nb))
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/lab/tree/{chapter}.ipynb?token=t&reset")
            page.wait_for_selector(".jp-MarkdownCell .myst", timeout=120_000)  # rendered by jupyterlab-myst
            page.wait_for_selector("#jp-main-statusbar :text('Idle')", timeout=120_000)  # the kernel is up
            page.wait_for_timeout(2000)
            return page, root, errors
        yield open_chapter
        b.close()


# Raw MyST a reader must not see in a rendered Markdown cell (jupyterlab-myst renders roles, directives and dropdowns).
RAW_MYST = re.compile(r"\{[a-z:]+\}`|```|^:::|Unknown (Directive|Role)", re.M)


def markdown_problems(page) -> list[str]:
    "Rendered Markdown cells that show raw MyST, and dropdowns that are open (hints and solutions must start folded)."
    texts = page.eval_on_selector_all(".jp-MarkdownCell .myst",
                                      "els => els.map(e => e.textContent)")  # innerText is empty off screen
    raw = [m.group(0) + " in: " + t[max(0, m.start() - 60):m.end() + 60] for t in texts for m in RAW_MYST.finditer(t)]
    open_ = page.eval_on_selector_all(".jp-MarkdownCell details[open]", "els => els.map(e => e.textContent.slice(0, 80))")
    return raw + [f"an open dropdown: {t}" for t in open_] + ([] if texts else ["no rendered Markdown cell"])


@pytest.mark.parametrize("chapter", ["04_spectrum"])
def test_a_chapter_run_in_jupyterlab_in_a_browser(lab_browser, chapter):
    """A chapter opened in JupyterLab (Chromium) and run top to bottom: its MyST is rendered (no raw roles or directives,
    hints folded), no cell fails, no progress bar is left red (a loop that stops because it converged ends green at its
    real count), and after saving, the file on disk is byte for byte as git has it."""
    page, root, errors = lab_browser(chapter)
    assert page.query_selector_all(".jp-MarkdownCell details.myst-dropdown"), "no dropdown rendered: nothing to find open"
    assert not markdown_problems(page), markdown_problems(page)
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
    prompts = ".jp-CodeCell .jp-InputPrompt"
    for _ in range(2400):  # at most 20 minutes (about 2 minutes on an idle machine with a warm cache)
        page.wait_for_timeout(500)
        failed = page.query_selector_all(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] pre, "
                                         ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
        if failed: pytest.fail("a cell failed in JupyterLab:\n" + failed[0].inner_text()[-3000:])
        done = page.eval_on_selector_all(prompts, "els => els.map(e => /\\[\\d+\\]/.test(e.textContent))")
        if done and all(done): break
    else:
        pytest.fail("the chapter did not finish in 20 minutes in JupyterLab")
    bars = page.query_selector_all(".jp-OutputArea .widget-hprogress")  # tqdm's bars, as ipywidgets draws them
    red = page.query_selector_all(".jp-OutputArea .progress-bar-danger")
    assert bars, "no progress bar was drawn: the check below would pass whatever the bars look like"
    assert not red, f"{len(red)} progress bar(s) left red: " + red[0].evaluate("e => e.closest('.jp-OutputArea').textContent")
    assert not markdown_problems(page), markdown_problems(page)
    page.keyboard.press("Control+s")
    page.wait_for_timeout(3000)
    assert (root / "nbs" / f"{chapter}.ipynb").read_bytes() == (ROOT / "nbs" / f"{chapter}.ipynb").read_bytes()
    assert not errors, errors
    page.close()


def test_the_markdown_check_sees_raw_myst(lab_browser):
    "The check above can fail: a directive JupyterLab's MyST does not know, and a fenced block, are found."
    page, root, _ = lab_browser(None, cells=["```{glue:figure} a-name\nA caption.\n```", "A role {unknown:role}`x`."])
    problems = markdown_problems(page)
    page.close()
    assert any("Unknown Directive" in p for p in problems), problems
