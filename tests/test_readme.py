"""The README's "use it on your own model" example runs as written."""
import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    example = blocks[0]
    assert len(example.strip().splitlines()) <= 5
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("Objective(P=67, N=32, C=3, loss='ce', float64, 1 batch(es))"), out


def test_readme_examples_run_in_sequence(capsys):
    "Every python block of the README, run one after the other in one namespace, as a reader would paste them."
    ns = {}
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)):
        exec(compile(block, f"README.md block {i}", "exec"), ns)
    out = capsys.readouterr().out.splitlines()
    assert float(out[1].split("(")[1].split(",")[0]) < 1e-12  # ||G + R - H||
