"""The Sphinx extension that hides nbdev's `#|` directives from the book."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "_ext"))
from nbdev_directives import process_cell  # noqa: E402


def cell(src, tags=None):
    return {"cell_type": "code", "source": src, "metadata": {"tags": tags} if tags else {}}


def test_export_lines_are_stripped_and_the_code_kept():
    c = process_cell(cell("#| export\ndef f(): pass\n"))
    assert c["source"] == "def f(): pass\n" and c["metadata"]["tags"] == []


def test_hide_removes_the_cell():
    assert process_cell(cell("#| hide\nimport x"))["metadata"]["tags"] == ["remove-cell"]


def test_directive_only_cells_are_removed():
    c = process_cell(cell("#| default_exp core"))
    assert c["source"] == "" and c["metadata"]["tags"] == ["remove-cell"]


def test_echo_output_eval_map_to_myst_nb_tags():
    c = process_cell(cell("#| echo: false\n#|output: false\n#| eval:false\nshow_doc(f)", ["keep"]))
    assert c["metadata"]["tags"] == ["keep", "remove-input", "remove-output", "skip-execution"]


def test_the_export_call_is_not_executed_by_the_book():
    c = process_cell(cell("#| hide\nimport nbdev; nbdev.nbdev_export()"))
    assert set(c["metadata"]["tags"]) == {"remove-cell", "skip-execution"}


def test_markdown_and_plain_cells_are_untouched():
    md = {"cell_type": "markdown", "source": "#| not a directive", "metadata": {}}
    assert process_cell(dict(md)) == md
    plain = cell("x = 1  #| trailing")
    assert process_cell(dict(plain)) == plain


def test_pages_without_widget_views_get_no_widget_scripts():
    from types import SimpleNamespace as NS
    from nbdev_directives import _drop_unused_widgets
    state = '<script type="application/vnd.jupyter.widget-state+json">{"state": {}}</script>'
    scripts = lambda: [NS(filename="_static/doctools.js", attributes={}), NS(filename=None, attributes={"type": "application/vnd.jupyter.widget-state+json"}),
                       NS(filename="_static/widgets/require.js", attributes={}), NS(filename="_static/widgets/embed-amd.js", attributes={})]
    ctx = {"body": "<p>text</p>" + state, "script_files": scripts()}
    _drop_unused_widgets(None, "page", None, ctx, None)
    assert ctx["body"] == "<p>text</p>" and [s.filename for s in ctx["script_files"]] == ["_static/doctools.js"]
    shown = {"body": '<script type="application/vnd.jupyter.widget-view+json">{}</script>' + state, "script_files": scripts()}
    _drop_unused_widgets(None, "page", None, shown, None)
    assert len(shown["script_files"]) == 4 and state in shown["body"]  # a displayed widget keeps everything
