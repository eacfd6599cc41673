"""Checks what pip would install, from its `--dry-run --report` JSON files (several reports: one install done in steps).

  complete   every requirement of every package in the set (markers evaluated for this Python, with the extras that were
             asked for) is met by a package in the set, except the names given with --allow-missing: what a --no-deps
             install of the set would leave broken;
  --torch V  torch is in the set at version V (a local build label such as +cpu allowed);
  --forbid   none of these names is in the set (a glob such as 'nvidia-*' allowed).

Prints one line per report set; exits 1 with the problems otherwise.
"""
import argparse
import fnmatch
import json
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ap = argparse.ArgumentParser()
ap.add_argument("reports", nargs="+")
ap.add_argument("--complete", action="store_true")
ap.add_argument("--allow-missing", default="", help="space-separated names a --no-deps install leaves out on purpose")
ap.add_argument("--torch", help="the torch version the set must hold")
ap.add_argument("--forbid", default="", help="space-separated names (globs) that must not be in the set")
ap.add_argument("--label", default="")
a = ap.parse_args()

items = {}
for f in a.reports:
    for it in json.load(open(f))["install"]:
        md = it["metadata"]
        items[canonicalize_name(md["name"])] = (Version(md["version"]), md.get("requires_dist") or [],
                                                 it.get("requested_extras") or [])

problems = []
if a.complete:
    allowed = {canonicalize_name(n) for n in a.allow_missing.split()}
    for name, (_, reqs, extras) in items.items():
        for r in map(Requirement, reqs):
            if r.marker and not any(r.marker.evaluate({"extra": e}) for e in [""] + extras):
                continue
            dep = canonicalize_name(r.name)
            if dep in allowed:
                continue
            if dep not in items:
                problems.append(f"{name} requires {r}, which is not in the set")
            elif not r.specifier.contains(items[dep][0], prereleases=True):
                problems.append(f"{name} requires {r}, the set has {dep} {items[dep][0]}")
if a.torch:
    got = items.get("torch", (None,))[0]
    if got is None or got.public != a.torch:
        problems.append(f"torch: expected {a.torch}, the set has {got}")
for pat in a.forbid.split():
    hits = [n for n in items if fnmatch.fnmatch(n, canonicalize_name(pat))]
    if hits:
        problems.append(f"the set would install {', '.join(sorted(hits))}")

torch = items.get("torch", (None,))[0]
nvidia = sum(n.startswith("nvidia-") for n in items)
if problems:
    print(f"{a.label}: FAILED", *problems, sep="\n  ")
    sys.exit(1)
print(f"{a.label}: ok, {len(items)} packages" + (f", torch {torch} ({nvidia} nvidia-* wheels beside it)" if torch else ", no torch"))
