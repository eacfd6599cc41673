"""Packaging, checked cheaply and offline: what `pip install hessian_nb` declares against what the code imports; extras that
never touch torch; the Makefile's Python floor against the pins' metadata; the prerequisite checks. (.ci/package-check
installs the built wheel into a clean venv and checks the README's install commands against the public index.)"""
import ast
import configparser
import importlib.metadata as md
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[1]
LIB = ROOT / "hessian_nb"
# imported lazily on purpose and in no extra: mnist() needs a torchvision built for the user's torch, which an extra would
# replace; it says so when missing.
NOT_IN_EXTRAS = {"torchvision"}
TORCH_LIKE = {"torch", "torchvision", "torchaudio", "backpack-for-pytorch", "curvlinops-for-pytorch", "hessian-eigenthings",
              "pyhessian", "unfoldnd", "einconv", "linear-operator"}


def settings():
    p = configparser.ConfigParser(delimiters=["="])
    p.read(ROOT / "settings.ini", encoding="utf-8")
    return p["DEFAULT"]


def setup_kwargs():
    "The arguments setup.py hands to setuptools.setup, without building anything."
    import setuptools
    seen = {}
    orig, setuptools.setup = setuptools.setup, lambda **kw: seen.update(kw)
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        exec(compile((ROOT / "setup.py").read_text(), "setup.py", "exec"), {"__file__": str(ROOT / "setup.py"), "__name__": "__main__"})
    finally:
        setuptools.setup = orig
        os.chdir(cwd)
    return seen


def names(reqs):
    return {canonicalize_name(Requirement(r).name) for r in reqs}


def dist_of(module):
    "The distribution that provides top-level `module` (from this environment's metadata)."
    dists = md.packages_distributions().get(module, [])
    return canonicalize_name(dists[0]) if dists else canonicalize_name(module)


def third_party_imports(path):
    "(module-level, lazy) sets of third-party top-level modules that `path` imports."
    top, lazy = set(), set()
    tree = ast.parse(path.read_text())

    def visit(node, inside):
        for child in ast.iter_child_nodes(node):
            mods = []
            if isinstance(child, ast.Import):
                mods = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and not child.level:
                mods = [child.module]
            for m in mods:
                m = m.split(".")[0]
                if m not in sys.stdlib_module_names and m not in ("hessian_nb", "__future__"):
                    (lazy if inside else top).add(m)
            visit(child, inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return top, lazy


def library_imports():
    top, lazy = set(), set()
    for f in sorted(LIB.glob("*.py")):
        t, l = third_party_imports(f)
        top |= t
        lazy |= l
    return top, lazy - top


def test_requirements_cover_module_level_imports():
    "`import hessian_nb` works from `requirements` alone (fastcore was missing once: the installed package did not import)."
    top, _ = library_imports()
    assert {"torch", "fastcore"} <= top, top  # the parse sees the imports at all
    missing = {dist_of(m) for m in top} - names(setup_kwargs()["install_requires"])
    assert not missing, f"hessian_nb imports {sorted(missing)} at module level: add them to settings.ini `requirements`"


def test_lazy_imports_are_in_an_extra():
    "What the library imports inside functions (matplotlib, scikit-learn, ipywidgets, ...) comes with an extra."
    _, lazy = library_imports()
    assert "matplotlib" in lazy, lazy
    kw = setup_kwargs()
    declared = names(kw["install_requires"]) | set().union(*(names(v) for v in kw["extras_require"].values()))
    missing = {dist_of(m) for m in lazy if m not in NOT_IN_EXTRAS} - declared
    assert not missing, f"imported lazily but in no extra: {sorted(missing)} (settings.ini NAME_requirements)"


def test_core_is_light():
    "The plotting, data and widget libraries are extras, not requirements."
    core = names(setup_kwargs()["install_requires"])
    assert not core & {"matplotlib", "scikit-learn", "ipywidgets", "ipython"}, core
    assert {"plot", "book", "dev"} <= set(setup_kwargs()["extras_require"])


def test_extras_never_touch_torch():
    "No extra names torch or a library that requires it (directly, or through what this environment has installed)."
    extras = setup_kwargs()["extras_require"]

    def closure(reqs, seen):
        for r in map(Requirement, reqs):
            n = canonicalize_name(r.name)
            if n in seen or (r.marker and not r.marker.evaluate({"extra": ""})):
                continue
            seen.add(n)
            try:
                closure(md.requires(n) or [], seen)
            except md.PackageNotFoundError:
                pass
        return seen

    for extra, reqs in extras.items():
        assert not names(reqs) & TORCH_LIKE, f"[{extra}] names {sorted(names(reqs) & TORCH_LIKE)}"
        hits = closure(reqs, set()) & TORCH_LIKE
        assert not hits, f"[{extra}] would bring {sorted(hits)}: installing it could replace the user's torch"


def test_license_and_metadata():
    kw = setup_kwargs()
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert kw["license"] == "Apache-2.0" and settings()["license"] == "apache2"
    placeholders = [k for k, v in settings().items() if "example.org" in v or "example.com" in v]
    assert not placeholders, f"placeholder URLs in settings.ini: {placeholders}"
    assert "settings.ini" in (ROOT / "MANIFEST.in").read_text()  # the sdist must carry what setup.py reads
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "build/" in ignored and "dist/" in ignored


def test_py_typed():
    "PEP 561: the library's annotations reach type checkers (setup.py ships the marker file)."
    assert "py.typed" in setup_kwargs()["package_data"][settings()["lib_path"]]
    assert (LIB / "py.typed").exists(), "hessian_nb/py.typed (an empty PEP 561 marker) is missing"


def makefile_var(name):
    m = re.search(rf"^{name}\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), flags=re.M)
    assert m, f"the Makefile defines no {name}"
    return m.group(1)


def pins():
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[canonicalize_name(name)] = version
    return out


def test_python_floor_matches_the_pins():
    """The Makefile's PYTHON_MIN is the real floor: every pin supports it (read from the installed metadata of the pins this
    environment has at the pinned version), some pin needs it, and settings.ini's min_python agrees."""
    floor = makefile_var("PYTHON_MIN")
    assert settings()["min_python"] == floor
    patch0 = Version(floor + ".0" if floor.count(".") == 1 else floor)
    checked, too_new, needs_floor = 0, [], False
    for name, version in pins().items():
        try:
            d = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        if Version(d.version).public != Version(version).public:
            continue
        checked += 1
        spec = SpecifierSet(d.metadata.get("Requires-Python") or "")
        if not spec.contains(patch0):
            too_new.append(f"{name}=={version} needs Python {spec}")
        below = Version(f"{patch0.major}.{patch0.minor - 1}.99")
        needs_floor |= not spec.contains(below)
    assert checked > 50, f"only {checked} pins installed here: run in the project's .venv"
    assert not too_new, f"PYTHON_MIN = {floor}, but: {too_new} (relax the pin, or raise PYTHON_MIN and min_python)"
    assert needs_floor, f"no pin needs Python {floor}: PYTHON_MIN is not the real floor"


def test_torch_pin_and_install_steps():
    "One torch pin everywhere; make installs torch with its dependencies and sends every pip call through constraints.txt."
    cons = [l for l in (ROOT / "constraints.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert cons == [f"torch=={pins()['torch']}"], cons
    mk = (ROOT / "Makefile").read_text()
    pip = re.search(r"^PIP\s*:?=\s*(.*)$", mk, flags=re.M).group(1)
    assert "--constraint constraints.txt" in pip or "-c constraints.txt" in pip, pip
    installs = [l.strip() for l in mk.splitlines() if re.search(r"pip install|\$\(PIP\)", l) and not l.startswith("PIP")]
    assert installs and all("$(PIP)" in l for l in installs), installs
    torch_step = [l for l in installs if re.search(r"\btorch\b", l)]
    assert torch_step and all("--no-deps" not in l for l in torch_step), torch_step


def test_makefile_scopes_and_lab():
    mk = (ROOT / "Makefile").read_text()
    assert not re.search(r"^export HESSIAN_NB_QUIET", mk, flags=re.M), "HESSIAN_NB_QUIET is global: make lab goes quiet too"
    scoped = re.search(r"^([\w ]+):\s*export HESSIAN_NB_QUIET", mk, flags=re.M)
    assert scoped and "lab" not in scoped.group(1).split() and {"test", "book"} <= set(scoped.group(1).split())
    lab = re.search(r"^lab:.*\n((?:\t.*\n)+)", mk, flags=re.M).group(1)
    assert "--allow-root" in lab, lab
    assert "export CHROMIUM" in mk


def run_checks(*what, **env):
    e = {**os.environ, **env}
    return subprocess.run([str(ROOT / "scripts/check-prereqs"), *what], cwd=ROOT, env=e, capture_output=True, text=True)


def test_prereq_checks_name_the_fix(tmp_path):
    r = run_checks("python", "chromium", PYTHON="python3", PYTHON_MIN="99.0", CHROMIUM=str(tmp_path / "no-chromium"))
    assert r.returncode == 1, r
    assert "Python >= 99.0" in r.stderr and "make PYTHON=" in r.stderr
    assert f"Chromium at {tmp_path / 'no-chromium'}" in r.stderr and "apt-get install chromium" in r.stderr
    assert "CHROMIUM=/path/to/chromium" in r.stderr
    r = run_checks("fashion-mnist", HESSIAN_NB_FASHION_MNIST=str(tmp_path))
    assert r.returncode == 1 and "apt-get install dataset-fashion-mnist" in r.stderr, r
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("bash", "id", "printf"):
        if (p := Path("/usr/bin") / tool).exists():
            (bin_ / tool).symlink_to(p)
    r = run_checks("npm", PATH=str(bin_))
    assert r.returncode == 1 and "apt-get install npm" in r.stderr, r
    r = run_checks("python", PYTHON=sys.executable, PYTHON_MIN=makefile_var("PYTHON_MIN"))
    assert r.returncode == 0, r.stderr
    assert run_checks("nonsense").returncode == 2


def test_console_script_points_at_a_function():
    "settings.ini's console_scripts (read by setup.py into entry_points; pyproject lists 'scripts' as dynamic) name a real callable."
    import configparser, importlib, tomllib
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(ROOT / "settings.ini")
    name, target = cfg["DEFAULT"]["console_scripts"].split("=")
    mod, fn = target.split(":")
    assert name == "hessian-nb" and callable(getattr(importlib.import_module(mod), fn))
    assert "scripts" in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dynamic"]
