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


def test_figure_directives_become_a_numbered_captioned_figure():
    c = process_cell(cell('#| label: fig-scree\n#| fig-cap: "The scree: $\\lambda_i$ against i."\nplot_scree(e)'))
    assert c["source"] == "plot_scree(e)"
    assert c["metadata"]["mystnb"]["figure"] == {"name": "fig-scree", "caption": r"The scree: $\lambda_i$ against i."}
    assert c["metadata"]["tags"] == []


def test_a_caption_may_hold_colons_and_needs_no_quotes():
    c = process_cell(cell("#| fig-cap: Left: the density; right: its log.\nplot()"))
    assert c["metadata"]["mystnb"]["figure"] == {"caption": "Left: the density; right: its log."}


def test_code_fold_hides_the_input_behind_a_toggle():
    c = process_cell(cell("#| export\n#| fold\ndef plot(): pass\n"))
    assert c["source"] == "def plot(): pass\n" and c["metadata"]["tags"] == ["hide-input"]
    assert process_cell(cell("#| code-fold: true\nx = 1"))["metadata"]["tags"] == ["hide-input"]
    assert process_cell(cell("#| code-fold: false\nx = 1"))["metadata"]["tags"] == []


def test_included_files_lose_internal_issue_numbers():
    from nbdev_directives import clean_included
    assert clean_included("## Training loop (issue 3)\n") == "## Training loop\n"
    assert clean_included("### Against the goals of issue 2\n") == "### Against its goals\n"
    assert "issue" not in clean_included("as issues 4 and 5 asked; see issue 12.")


def test_api_markdown_covers_every_public_name_within_88_columns():
    import re
    from apidoc import module_markdown, public_names, signature
    md = module_markdown("hessian_nb.spectrum")
    for name in public_names("hessian_nb.spectrum"):
        assert f"(hessian_nb.spectrum.{name})=\n### `{name}`" in md, name
    code = "\n".join(re.findall(r"```python\n(.*?)```", md, flags=re.S))
    assert code and max(len(line) for line in code.splitlines()) <= 88
    def f(a, # the first
          b: int = 3) -> float: ...
    assert signature("f", f) == "f(a, b: int = 3) -> float"
    assert "| `a` | the first |" in "\n".join(__import__("apidoc").entry("m", "f", f))


def test_api_prose_is_escaped_for_markdown():
    from apidoc import _escape
    assert _escape("|A v| <= tol * |A|, see `a|b`") == r"\|A v\| \<= tol \* \|A\|, see `a|b`"
