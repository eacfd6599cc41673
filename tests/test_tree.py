"""The shape of the library: modules import only from chapters before them, the math never imports the lab, no private
name crosses a module boundary, and modules stay small.

Each module is exported by one notebook (`#| default_exp`); "before" is the order of the notebooks' file names
(00a_basics < 00b_losses < ... < 00f_core < 01_data < ...), which is also the order nbdev_test runs them in.
"""
import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
LIB = ROOT / "hessian_nb"
MATH = {"basics", "losses", "distributed", "operators", "checks", "core", "operands", "gauss_newton", "spectrum", "class_structure"}
MAX_LINES = 450
# Modules still over MAX_LINES, with what a split would take; remove an entry when its module shrinks (the last test
# fails for an entry that is no longer needed).
OVER: dict[str, str] = {}


def notebook_of():
    "module -> the notebook (file stem) that exports it"
    out = {}
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        if m := re.search(r"#\|[ \t]*default_exp[ \t]+(\w+)", code): out[m.group(1)] = nb.stem
    return out


NOTEBOOK = notebook_of()


def imports(module: str):
    "[(imported module, [names], line)] for every import of a hessian_nb module in `module`, lazy ones included."
    out = []
    for node in ast.walk(ast.parse((LIB / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: name = node.module
            elif node.level == 0 and (node.module or "").startswith("hessian_nb."): name = node.module.split(".")[1]
            else: continue
            out.append((name, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name.split(".")[1], [], node.lineno) for a in node.names if a.name.startswith("hessian_nb.")]
    return out


def test_every_module_has_its_notebook():
    mods = {p.stem for p in LIB.glob("*.py")} - {"__init__", "_modidx"}
    assert mods == set(NOTEBOOK), f"modules without a notebook (delete them): {mods - set(NOTEBOOK)}; " \
                                  f"notebooks whose module is missing (run nbdev_export): {set(NOTEBOOK) - mods}"
    assert {"basics", "losses", "distributed", "operators", "checks", "core"} <= mods


@pytest.mark.parametrize("module", sorted(NOTEBOOK))
def test_imports_only_from_chapters_before_it(module):
    later = [(m, line) for m, _, line in imports(module) if NOTEBOOK[m] >= NOTEBOOK[module]]
    assert not later, f"{module} ({NOTEBOOK[module]}) imports from a chapter at or after its own: {later}"


@pytest.mark.parametrize("module", sorted(MATH))
def test_the_math_never_imports_the_lab(module):
    outside = sorted({m for m, _, _ in imports(module)} - MATH)
    assert not outside, f"the math module {module} imports {outside}: the lab and the experiments sit above the math"


@pytest.mark.parametrize("module", sorted(NOTEBOOK))
def test_no_private_name_crosses_a_module(module):
    private = [(m, n, line) for m, names, line in imports(module) for n in names if n.startswith("_")]
    assert not private, f"{module} imports private names {private}: make them public (documented) or keep them home"


def test_modules_stay_small():
    sizes = {p.stem: len(p.read_text().splitlines()) for p in LIB.glob("*.py") if p.stem != "_modidx"}
    over = {m: n for m, n in sizes.items() if n > MAX_LINES and m not in OVER}
    assert not over, f"modules over {MAX_LINES} lines: {over}; split them by concern (a notebook each)"
    stale = [m for m in OVER if sizes.get(m, 0) <= MAX_LINES]
    assert not stale, f"{stale} are no longer over {MAX_LINES} lines: remove them from OVER"


def test_the_checks_see_a_back_edge(tmp_path, monkeypatch):
    "The import walk finds a lazy import inside a function (the kind a back-edge hides in)."
    (tmp_path / "probe.py").write_text("def f():\n    from .train import train\n    from hessian_nb.core import _call\n")
    monkeypatch.setattr(__import__(__name__), "LIB", tmp_path)
    assert imports("probe") == [("train", ["train"], 2), ("core", ["_call"], 3)]


def test_notebook_sources_hold_one_line_per_entry():
    "JupyterLab saves a cell's source one line per list entry: a notebook written otherwise changes when saved unedited."
    bad = [(nb.name, i) for nb in sorted((ROOT / "nbs").glob("*.ipynb"))
           for i, c in enumerate(json.loads(nb.read_text())["cells"])
           if isinstance(c["source"], list) and any("\n" in line[:-1] for line in c["source"])]
    assert not bad, f"cells whose source entries hold several lines (re-split them one line per entry): {bad}"
