"""Sphinx extension: the book's API reference pages, generated from the library when the book is built.

A page nbs/api/<module>.md holds a title, a sentence and the marker

    ```{apidoc} hessian_nb.<module>
    ```

which this extension replaces, before MyST parses the page, by one section per public name of the module (its `__all__`):
the signature (wrapped to at most 88 columns), the one-line docstring, and a table of the parameters with their nbdev
docments comments. Classes list their public methods and properties below them. Each entry gets a label
`hessian_nb.<module>.<name>`, so a chapter links to it with {ref}`lanczos <hessian_nb.spectrum.lanczos>`.

Generated at every build (the pages are always re-read), so the reference cannot fall behind the notebooks. The chapters keep
the math and the prose; their `show_doc` cells move here.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re

WIDTH = 88  # the widest code line a reader sees (tests/test_book.py checks it on every converted page)
MARKER = re.compile(r"^```\{apidoc\}[ \t]+([\w.]+)[ \t]*\n```[ \t]*$", flags=re.M)


def _escape(text: str) -> str:
    "Markdown-safe prose: markup characters are escaped, except in `code spans` and `$math$`."
    parts = re.split(r"(`[^`]*`|\$[^$\n]+\$)", text)
    esc = lambda s: re.sub(r"([\\*_|<>\[\]{}#])", r"\\\1", s)  # `$...$` stays: docstrings write math
    return "".join(p if len(p) > 1 and p[0] == p[-1] and p[0] in "`$" else esc(p) for p in parts)


def _annotation(a) -> str:
    if a is inspect.Parameter.empty: return ""
    s = a if isinstance(a, str) else inspect.formatannotation(a)
    return s.replace("typing.", "").replace("torch.Tensor", "Tensor").replace("NoneType", "None")


def _params(obj):
    "(name, annotation, default, comment) for each parameter of a function or a class's constructor."
    from fastcore.docments import docments
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return []
    try: notes = docments(obj, full=True)
    except Exception: notes = {}
    out = []
    for p in sig.parameters.values():
        if p.name == "self": continue
        name = ("*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else "") + p.name
        default = "" if p.default is inspect.Parameter.empty else repr(p.default)
        note = (notes.get(p.name) or {}).get("docment") or ""
        out.append((name, _annotation(p.annotation), default, note))
    return out


def _returns(obj) -> str:
    try: r = inspect.signature(obj).return_annotation
    except (TypeError, ValueError): return ""
    return "" if r is inspect.Signature.empty else _annotation(r)


def signature(name: str, obj, prefix: str = "") -> str:
    "The call signature, on one line if it fits in WIDTH columns, else one parameter per line."
    params, ret = _params(obj), ("" if inspect.isclass(obj) else _returns(obj))
    items = [n + (f": {a}" if a else "") + ((" = " if a else "=") + d if d else "") for n, a, d, _ in params]
    tail = f" -> {ret}" if ret else ""
    one = f"{prefix}{name}({', '.join(items)}){tail}"
    if len(one) <= WIDTH: return one
    lines = [f"{prefix}{name}("] + [f"    {i}," for i in items] + [f"){tail}"]
    return "\n".join(l if len(l) <= WIDTH else l[:WIDTH - 3] + "..." for l in lines)


def _doc(obj) -> str:
    d = inspect.getdoc(obj) or ""
    return "" if d.startswith(("Initialize self", "Create a new")) else d


def _param_table(obj) -> list[str]:
    rows = [(n, note) for n, _, _, note in _params(obj) if note]
    if not rows: return []
    return ["", "| parameter | meaning |", "|---|---|"] + [f"| `{n}` | {_escape(note)} |" for n, note in rows]


def _members(cls) -> list[tuple[str, object]]:
    "A class's own public methods and properties (not inherited from object, not dataclass fields)."
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    out = []
    for n, v in vars(cls).items():
        if n.startswith("_") or n in fields: continue
        f = v.fget if isinstance(v, property) else getattr(v, "__func__", v)
        if callable(f) or isinstance(v, property): out.append((n, v))
    return out


def entry(module: str, name: str, obj, level: int = 3, taken: set | None = None) -> list[str]:
    "The Markdown of one public name: label, heading, signature, docstring, parameters; members for a class."
    h, taken = "#" * level, set() if taken is None else taken
    label = f"{module}.{name}"
    if label.lower() in taken: label += "-class" if inspect.isclass(obj) else "-" + type(obj).__name__.lower()
    taken.add(label.lower())  # Sphinx compares labels case-insensitively: `Run` and `run` would collide
    lines = [f"({label})=", f"{h} `{name}`", ""]
    if isinstance(obj, property):
        return lines + [f"*property* {_escape(_doc(obj))}".rstrip(), ""]
    if inspect.isclass(obj) or callable(obj):
        kind = "class " if inspect.isclass(obj) else ""
        short = name.rsplit(".", 1)[-1]
        lines += ["```python", signature(short, obj, kind), "```", "", _escape(_doc(obj))]
        lines += _param_table(obj) + [""]
        if inspect.isclass(obj):
            for n, v in _members(obj):
                lines += entry(module, f"{name}.{n}", v, level + 1, taken)
        return lines
    text = f"{name} = {obj!r}"
    text = text if len(text) <= WIDTH else text[:WIDTH - 3] + "..."
    try: ast.parse(text); lexer = "python"
    except SyntaxError: lexer = "text"  # a repr such as <class ...>, or one cut short
    return lines + [f"A constant of type `{type(obj).__name__}`, described in its chapter:", "", f"```{lexer}",
                    text, "```", ""]


def public_names(module: str) -> list[str]:
    mod = importlib.import_module(module)
    return list(getattr(mod, "__all__", []))


def module_markdown(module: str) -> str:
    "The API reference of a module: one section per name in its `__all__`."
    mod = importlib.import_module(module)
    out, taken = [], set()
    for name in public_names(module):
        out += entry(module, name, getattr(mod, name), taken=taken)
    return "\n".join(out)


def _source_read(app, docname, source):
    if not MARKER.search(source[0]): return
    source[0] = MARKER.sub(lambda m: module_markdown(m.group(1)), source[0])


def _always_reread(app, env, added, changed, removed):
    "API pages follow the library: re-read them at every build (they are cheap)."
    return [d for d in env.found_docs if d.startswith("nbs/api/")]


def setup(app):
    app.connect("source-read", _source_read)
    app.connect("env-get-outdated", _always_reread)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
