"""Sphinx extension: nbdev's `#|` cell directives become myst-nb cell tags, and the reader never sees them.

The notebooks in nbs/ are nbdev sources, so their code cells start with lines such as `#| export` or `#| hide`.
Before myst-nb parses a notebook, this extension strips those lines from every code cell and maps the ones that
change what a reader sees onto myst-nb's tags:

    #| hide            -> remove-cell       (the cell runs, nothing of it is shown)
    #| echo: false     -> remove-input
    #| output: false   -> remove-output
    #| eval: false     -> skip-execution
    #| default_exp ... -> remove-cell       (a cell holding only directives is removed)
    nbdev_export()     -> skip-execution    (as under nbdev_test: the book build does not rewrite the library)
    #| fold            -> hide-input        (the code is folded behind a "show code" toggle; its output stays)
    #| code-fold: true -> hide-input        (Quarto's name for it; nbdev exports directives with a colon into the
                                             library's code as comments, so exported cells use `#| fold`)

and two directives, named as in Quarto, make the cell's figure a numbered, captioned figure that the text can reference:

    #| label: fig-scree                     -> the figure's name: {numref}`fig-scree` in the text gives "Figure N"
    #| fig-cap: One sentence: what to see.  -> its caption (Markdown: math and citations work)

They go into the cell's myst-nb metadata (`mystnb.figure`) only in the copy the book parses, so nbdev_clean, which keeps only
the `tags` metadata, cannot strip them: the directives live in the cell's source.

The key figure at a chapter's opening is pasted with MyST's `{embed}` directive (`embed` below): here it is myst-nb's
`{glue:figure}` under the name that JupyterLab's MyST renderer (jupyterlab-myst, installed by `make`) knows, so a chapter
opened in JupyterLab shows no "Unknown Directive" box where the book shows the figure.

It also drops two things that break a strict build or a clean browser console: the horizontal rule (`---`) that nbdev's `show_doc` puts at the top of its Markdown: inside a cell output
docutils cannot place a transition and stops the build; and script tags that appear twice on a page (sphinx-thebe, loaded by
Jupyter Book, registers its inline configuration once per build phase, and the second copy is a console error).
Files the book includes as they are (bench/RESULTS.md, on the benchmarks page) lose their references to the project's
internal issue numbers, which a reader cannot follow.
"""
import json

import re

from docutils import nodes
from docutils.transforms import Transform

_TAGS = {("hide", ""): "remove-cell", ("echo", "false"): "remove-input", ("output", "false"): "remove-output",
         ("eval", "false"): "skip-execution", ("fold", ""): "hide-input",
         ("code-fold", "true"): "hide-input"}


def _directives(source: str):
    "Split a cell's source into its leading `#|` directives, as (key, value) pairs, and the rest."
    lines = source.splitlines(keepends=True)
    found = []
    while lines and lines[0].lstrip().startswith("#|"):
        body = lines.pop(0).strip()[2:].strip()
        key, sep, value = body.partition(":")
        if not sep or " " in key.strip(): key, _, value = body.partition(" ")  # `#| default_exp core`, `#| export`
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"": value = value[1:-1]
        found.append((key.strip().lower(), value))
    return found, "".join(lines)


def process_cell(cell: dict) -> dict:
    "Strip a code cell's `#|` lines, tag it for myst-nb and give its figure a caption; other cells pass unchanged."
    if cell.get("cell_type") != "code": return cell
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    found, rest = _directives(source)
    if not found: return cell
    meta = cell.setdefault("metadata", {})
    tags = set(meta.get("tags", []))
    tags |= {_TAGS[(k, v.lower())] for k, v in found if (k, v.lower()) in _TAGS}
    if not rest.strip(): tags.add("remove-cell")
    if "nbdev_export(" in rest: tags.add("skip-execution")  # as nbdev_test does: building the book must not rewrite the library
    fig = {"caption" if k == "fig-cap" else "name": v for k, v in found if k in ("fig-cap", "label") and v}
    if fig: meta.setdefault("mystnb", {}).setdefault("figure", {}).update(fig)
    meta["tags"] = sorted(tags)
    cell["source"] = rest
    return cell


# Words that name the project's internal planning (its issue tracker) in files the book includes as they are
# (bench/RESULTS.md): a reader has no such issue list, so the book shows the text without them.
_PLANNING = [(re.compile(r" \(issues? \d+(?:(?:, | and )\d+)*\)"), ""), (re.compile(r"\bthe goals of issue \d+"), "its goals"),
             (re.compile(r"\b[Ii]ssues? \d+(?:(?:, | and )\d+)*"), "an earlier round")]


def clean_included(text: str) -> str:
    "An included file's text without references to internal issue numbers."
    for pattern, repl in _PLANNING: text = pattern.sub(repl, text)
    return text


def _include_read(app, relative_path, parent_docname, content):
    content[0] = clean_included(content[0])


def _source_read(app, docname, source):
    if not str(app.env.doc2path(docname)).endswith(".ipynb"): return
    nb = json.loads(source[0])
    nb["cells"] = [process_cell(c) for c in nb.get("cells", [])]
    source[0] = json.dumps(nb)


class DropNestedTransitions(Transform):
    "Remove transitions (horizontal rules) that are not direct children of a section or the document."
    default_priority = 500  # before docutils' own check of transitions (830)

    def apply(self):
        for node in list(self.document.findall(nodes.transition)):
            if not isinstance(node.parent, (nodes.document, nodes.section)):
                node.parent.remove(node)


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    "Keep the first of identical script tags (same file, same attributes and body)."
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (str(getattr(script, "filename", script) or ""), repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen: seen.add(key); unique.append(script)
    context["script_files"] = unique


WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _drop_unused_widgets(app, pagename, templatename, context, doctree):
    """A page that displays no widget gets no widget machinery: widgets created while a notebook ran (in a test cell, say)
    leave their state in the notebook, and myst-nb would load the widget embedder, which fetches fonts the book does not have."""
    body = context.get("body", "")
    if "application/vnd.jupyter.widget-view+json" in body: return
    context["body"] = re.sub(r'<script type="application/vnd\.jupyter\.widget-state\+json">.*?</script>', "", body, flags=re.S)
    keep = []
    for script in context.get("script_files", []):
        attrs = getattr(script, "attributes", {}) or {}
        name = str(getattr(script, "filename", script) or "")
        if attrs.get("type") == WIDGET_STATE or name.removeprefix("_static/").startswith("widgets/"): continue
        keep.append(script)
    context["script_files"] = keep


def setup(app):
    from myst_nb.ext.glue.directives import PasteFigureDirective
    app.add_directive("embed", PasteFigureDirective)  # see the module's docstring
    app.connect("source-read", _source_read)
    app.connect("include-read", _include_read)
    app.connect("html-page-context", _dedupe_scripts)
    app.connect("html-page-context", _drop_unused_widgets, priority=900)  # after myst-nb has added its widget scripts
    app.add_transform(DropNestedTransitions)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
