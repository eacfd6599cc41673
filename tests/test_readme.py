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


def test_the_command_line_section_runs_as_written_from_another_folder(tmp_path):
    """The README's shell block, line by line, from a folder outside the checkout with the environment active (its bin on
    PATH): `list` and `report` run (report on a small mynet.py there); every `run` line parses (its --help), since the
    runs themselves take minutes to hours; `list` names the cache it uses."""
    import os, shlex, subprocess, sys
    block = next(b for b in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S) if "hessian-nb list" in b)
    lines = [l.split("#")[0].strip() for l in block.splitlines()]
    lines = [l for l in lines if l]
    assert lines[0] == "source .venv/bin/activate", lines[0]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HESSIAN_NB_CACHE": str(tmp_path / "cache"), "HESSIAN_NB_QUIET": "1"}
    (tmp_path / "mynet.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def make():\n    torch.manual_seed(0)\n    X, y = torch.randn(30, 4), torch.arange(30) % 3\n"
        "    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)), (X, y)\n")
    ran = []
    for line in lines[1:]:
        argv = shlex.split(line)
        if "run" in argv: argv = argv[:argv.index("run") + 1] + ["--help"]
        out = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, (line, out.stderr[-2000:])
        ran.append((argv, out.stdout))
    listed = next(o for a, o in ran if a[-1] == "list")
    assert f"cache: {tmp_path / 'cache'} (set by $HESSIAN_NB_CACHE)" in listed
    assert "top eigenvalues of H" in next(o for a, o in ran if "report" in a)
