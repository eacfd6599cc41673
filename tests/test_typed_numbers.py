"""No number from a run is typed into the text: it is glued from the cell that computes it.

A decimal in a chapter's Markdown or a figure caption (outside code) is either a glued value, {glue:text}`name:.2f`, whose number the book
fills in from the cell that computed it, or a constant: a paper's value, a step size, a spread. Constants are listed,
with what they are, in an HTML comment in the notebook (invisible in the book and in JupyterLab):

    <!-- typed numbers: 0.1, 0.2 (step sizes); 4.0 (the paper's ratio, Fig. 4) -->

This test lists every decimal in every chapter's Markdown cells and fails on any that is neither glued nor on its
notebook's list, and on a listed number the text no longer uses. It also checks that each glued name is glued by a
code cell of the same notebook, so that the book cannot show an empty value.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DECIMAL = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+(?:[eE][-+]?\d+)?|[eE][-+]?\d+)(?!\w|\.\d)"
                     r"|(?<![\w.])\d+(?:\.\d+)?\s*\\times\s*10\^\{?-?\d+\}?")
ALLOW = re.compile(r"<!--\s*typed numbers:(.*?)-->", re.S)
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)(?::[^`]*)?`")
GLUE_CALL = re.compile(r"""\bglue\(\s*(?:f?["'])([^"']+)["']""")


def drop_code_blocks(md: str) -> str:
    "Markdown without its code blocks; the text inside directives (```{embed}, ```{dropdown}, ...) stays."
    out, stack = [], []  # stack: (fence, is_code) of the open blocks
    for line in md.splitlines():
        m = re.match(r"\s*(`{3,}|~{3,})(.*)$", line)
        if m and stack and m.group(1) == stack[-1][0] and not m.group(2).strip():
            stack.pop(); continue  # a closing fence
        if m:
            stack.append((m.group(1), not m.group(2).strip().startswith("{"))); continue  # an opening fence
        if not any(code for _, code in stack): out.append(line)
    return "\n".join(out)


def text_of(md: str) -> str:
    "The Markdown a reader reads as prose and math: code blocks, inline code, glue roles and comments removed (the text of\n    directives such as {embed} captions and {dropdown} hints stays)."
    md = drop_code_blocks(md)
    md = re.sub(r"<!--.*?-->", " ", md, flags=re.S)
    md = GLUE_ROLE.sub(" ", md)
    return re.sub(r"`[^`]*`", " ", md)


def normal(x: str) -> str:
    return re.sub(r"\s+", "", x.replace(",", ""))


def prose(cells) -> str:
    "A notebook's Markdown cells and its figure captions (the `#| fig-cap:` lines of code cells)."
    caps = [l for c in cells if c["cell_type"] == "code" for l in "".join(c["source"]).splitlines() if l.startswith("#| fig-cap:")]
    return "\n".join(["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"] + caps)


def name_pattern(name: str) -> re.Pattern:
    "The names a glue call's name makes: glue(f\"gn-{loss}-slope\", ...) makes gn-ce-slope and gn-mse-slope."
    return re.compile("".join(".+" if p.startswith("{") else re.escape(p) for p in re.split(r"(\{[^}]*\})", name)))


def notebooks():
    return sorted((ROOT / "nbs").glob("*.ipynb"))


@pytest.mark.parametrize("nb", notebooks(), ids=lambda p: p.stem)
def test_every_decimal_is_glued_or_a_listed_constant(nb):
    md = prose(json.loads(nb.read_text())["cells"])
    allowed = {normal(x) for block in ALLOW.findall(md) for x in DECIMAL.findall(block)}
    seen = [normal(x) for x in DECIMAL.findall(text_of(md))]
    typed = sorted({x for x in seen if x not in allowed})
    assert not typed, (f"{nb.name}: typed decimals {typed}: glue each one from the cell that computes it "
                       "({glue:text}`name:.2f`), or, for a constant or a paper's value, list it in the notebook's "
                       "<!-- typed numbers: ... --> comment with what it is")
    unused = sorted(allowed - set(seen))
    assert not unused, f"{nb.name}: the typed-numbers comment lists {unused}, which the text no longer uses: remove them"


@pytest.mark.parametrize("nb", notebooks(), ids=lambda p: p.stem)
def test_every_glued_name_is_glued_by_the_notebook(nb):
    cells = json.loads(nb.read_text())["cells"]
    md = prose(cells)
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    used = set(GLUE_ROLE.findall(md)) | set(re.findall(r"```\{embed\}\s+(\S+)", md))
    made = set(GLUE_CALL.findall(code))
    patterns = [name_pattern(m) for m in made]
    missing = sorted(u for u in used if not any(p.fullmatch(u) for p in patterns))
    assert not missing, f"{nb.name}: the text shows glued values {missing} that no code cell glues"


def test_a_glued_name_must_match_an_f_string_name_whole():
    p = name_pattern("gn-{loss}-slope")
    assert p.fullmatch("gn-ce-slope") and not p.fullmatch("gn-ce-fall") and not p.fullmatch("gn-slope")


def test_the_check_sees_a_typed_number():
    assert DECIMAL.findall(text_of("the ratio is 0.68 while `lr=0.1` and {glue:text}`x:.2f`")) == ["0.68"]
    assert DECIMAL.findall("ranges 9.7-63.5 and -2.5, 2e-13, not 10 or 1,000; edge 2.25.") == ["9.7", "63.5", "2.5", "2e-13", "2.25"]
    md = "```python\nx = 0.5\n```\n```{embed} f\nCaption 0.25.\n```\n  ```{dropdown} Hint\n  About 0.75.\n  ```"
    assert DECIMAL.findall(text_of(md)) == ["0.25", "0.75"]
    assert [normal(x) for x in DECIMAL.findall(text_of(r"at $2 \times 10^{-13}$, <!-- typed numbers: 9.5 -->"))] == [
        r"2\times10^{-13}"]
