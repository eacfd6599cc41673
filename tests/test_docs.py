"""Every public name of every module is documented in its chapter with show_doc (so the book is the API reference)."""
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DATA_ONLY = {"CLOSED_FORMS", "SCALES", "TRAJECTORY", "EXPLORER_GRID", "LOSSES", "ACTIVATIONS", "DATASETS", "CACHE_VERSION", "EXPERIMENTS"}  # registries and constants, described in the text next to their definition


def chapters():
    "(notebook, module) for every notebook that exports a module."
    out = []
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        src = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        if m := re.search(r"#\|[ \t]*default_exp[ \t]+(\w+)", src): out.append((nb, m.group(1), src))
    return out


@pytest.mark.parametrize("nb,module,src", chapters(), ids=[m for _, m, _ in chapters()])
def test_every_public_name_has_show_doc(nb, module, src):
    mod = importlib.import_module(f"hessian_nb.{module}")
    documented = set(re.findall(r"show_doc\(([\w.]+)", src))
    missing = [n for n in mod.__all__ if n not in documented and n not in DATA_ONLY]
    assert not missing, f"{nb.name}: add show_doc(...) for {missing}"


def test_there_are_chapters():
    assert {m for _, m, _ in chapters()} >= {"core", "data", "train"}
