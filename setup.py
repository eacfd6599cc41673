"""Packaging for hessian_nb: reads settings.ini (nbdev 2 layout), without pkg_resources.

`requirements` is what `import hessian_nb` needs. Every other key NAME_requirements is the extra `hessian_nb[NAME]`
(plot, data, widgets, book, dev); `dev` also gets everything `book` has. No extra may name torch or torchvision: an extra
never replaces the user's torch (tests/test_packaging.py checks it).
"""
from configparser import ConfigParser
from pathlib import Path

import setuptools

HERE = Path(__file__).parent
cfg = ConfigParser(delimiters=["="])
cfg.read(HERE / "settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]

# nbdev's own keys of this shape that are not extras of this package
_NOT_EXTRAS = {"pip", "conda", "console_scripts"}


def extras(cfg):
    "Every settings.ini key NAME_requirements as the extra NAME; `dev` includes `book`."
    out = {k[: -len("_requirements")]: cfg[k].split() for k in cfg if k.endswith("_requirements")}
    out = {k: v for k, v in out.items() if k not in _NOT_EXTRAS}
    if "dev" in out and "book" in out:
        out["dev"] = list(dict.fromkeys(out["book"] + out["dev"]))
    return out


optional = dict(author_email=cfg["author_email"]) if cfg.get("author_email", "").strip() else {}
if cfg.get("git_url", "").strip():
    optional["url"] = cfg["git_url"]
if cfg.get("console_scripts", "").strip():  # e.g. hessian-nb=hessian_nb.cli:main (the chapters' experiments from a shell)
    optional["entry_points"] = {"console_scripts": cfg["console_scripts"].split()}

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    author=cfg["author"],
    license="Apache-2.0",
    license_files=["LICENSE"],
    packages=setuptools.find_packages(include=[cfg["lib_path"], cfg["lib_path"] + ".*"]),
    package_data={cfg["lib_path"]: ["py.typed"]},  # PEP 561: the library's annotations are meant for type checkers
    python_requires=">=" + cfg["min_python"],
    install_requires=cfg["requirements"].split(),
    extras_require=extras(cfg),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    zip_safe=False,
    **optional,
)
