"""The API reference: every module exported by a chapter has an API page in the book, and every public name is documented there.

The API pages (nbs/api/<module>.md) are generated when the book is built, from the library's docstrings and nbdev docments
comments (_ext/apidoc.py), so this test checks what that generation needs: each page exists, is in the table of contents and
names its module; each public function and class has a docstring; the generated Markdown has an entry for each public name;
and each converted chapter links to its API page instead of listing show_doc cells in its main flow.
(tests/test_book.py checks the built pages in a browser.)
"""
import importlib
import inspect
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
from apidoc import module_markdown  # noqa: E402

# Chapters whose show_doc cells have not yet moved to the API page (and that do not link to it yet). Remove a chapter from
# this set when it is converted; the checks below then hold for it too.
SHOW_DOC_IN_CHAPTER: set[str] = set()  # every chapter is converted


def chapters():
    "(notebook, module, code of its cells, its Markdown) for every notebook that exports a module."
    out = []
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        md = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        m = re.search(r"#\|[ \t]*default_exp[ \t]+(\w+)", code)
        # __main__ is the entry glue of `python -m hessian_nb` (nbs/99_main): no API of its own, no page
        if m and m.group(1) != "__main__": out.append((nb, m.group(1), code, md))
    return out


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part["chapters"]]


IDS = [m for _, m, _, _ in chapters()]


@pytest.mark.parametrize("nb,module,code,md", chapters(), ids=IDS)
def test_every_module_has_an_api_page_in_the_book(nb, module, code, md):
    page = ROOT / "nbs" / "api" / f"{module}.md"
    assert page.exists(), f"add nbs/api/{module}.md (copy another API page) and list it in _toc.yml"
    assert f"```{{apidoc}} hessian_nb.{module}\n```" in page.read_text()
    assert f"nbs/api/{module}" in toc_files(), f"list nbs/api/{module} in _toc.yml, under API reference"


@pytest.mark.parametrize("nb,module,code,md", chapters(), ids=IDS)
def test_every_public_name_is_documented_on_the_api_page(nb, module, code, md):
    mod = importlib.import_module(f"hessian_nb.{module}")
    undocumented = [n for n in mod.__all__ if (inspect.isfunction(getattr(mod, n)) or inspect.isclass(getattr(mod, n)))
                    and not (inspect.getdoc(getattr(mod, n)) or "").strip()]
    assert not undocumented, f"{nb.name}: give {undocumented} a one-line docstring"
    text = module_markdown(f"hessian_nb.{module}")
    missing = [n for n in mod.__all__ if not re.search(rf"^\(hessian_nb\.{module}\.{n}(-\w+)?\)=\n### `{n}`$", text, re.M)]
    assert not missing, f"the API page of {module} lacks {missing}"


@pytest.mark.parametrize("nb,module,code,md", chapters(), ids=IDS)
def test_converted_chapters_link_to_their_api_page_and_hold_no_show_doc(nb, module, code, md):
    if module in SHOW_DOC_IN_CHAPTER: pytest.skip(f"{nb.name} is not converted yet (SHOW_DOC_IN_CHAPTER)")
    assert "show_doc(" not in code, f"{nb.name}: move the show_doc cells out; the API page documents {module}"
    assert f"api/{module}" in md, f"{nb.name}: link the API page, e.g. {{doc}}`api/{module}`"


def test_the_allow_list_names_real_modules():
    assert SHOW_DOC_IN_CHAPTER <= set(IDS), SHOW_DOC_IN_CHAPTER - set(IDS)
    assert {"spectrum", "widgets", "cli"} <= set(IDS) - SHOW_DOC_IN_CHAPTER


def test_there_are_chapters():
    assert set(IDS) >= {"core", "data", "train"}
