"""`make lab`: a chapter saved from JupyterLab (with the kernel's metadata, outputs and execution counts a run leaves) is
written back byte for byte as git has it, so opening and running a chapter never dirties the repository."""
import json
import os
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
    p = subprocess.Popen([str(JUPYTER), "lab", "--no-browser", f"--port={port}", "--IdentityProvider.token=t",
                          f"--config={ROOT / '_ext' / 'lab_config.py'}", "--allow-root", "--notebook-dir", "nbs"],
                         cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".jupyter")})
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


@pytest.mark.parametrize("chapter", ["00_core", "05_bulk_and_outliers", "index"])
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
