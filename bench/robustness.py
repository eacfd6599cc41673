"""How robust each chapter's assertions are: run the chapters under several realizations and tabulate every claim.

A realization is one run of every experiment: a seed offset (HESSIAN_NB_SEED_OFFSET, which moves every seed the library
draws from) and a CPU kernel set (ATEN_CPU_CAPABILITY). Each chapter runs under each realization with its own cold cache;
every `claim(...)` in it records the range of values it saw (HESSIAN_NB_CLAIMS) and does not stop the chapter when it
fails (HESSIAN_NB_CLAIMS_RAISE=0). The table gives, per claim: its bounds, the smallest / median / largest value over the
realizations, and the margin (how far the worst realization stays inside the bounds, relative to the bound).

    python bench/robustness.py                     # the default design (9 realizations), all chapters with claims
    python bench/robustness.py --offsets 0 1 --kernels default --notebooks 03_gauss_newton
    python bench/robustness.py --table-only        # re-tabulate what is in --out

Results stay in --out (per realization, per chapter: the claims file, the log and the time), so an interrupted sweep
resumes where it stopped; the table is written between markers into bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ["index", "02_train", "03_gauss_newton", "04_spectrum", "05_bulk_and_outliers", "06b_class_structure_at_scale",
            "06c_papyan_regime",
            "07_interpolation", "08_explore", "10_your_network"]
START, END = "<!-- robustness table: start -->", "<!-- robustness table: end -->"


def native_kernels() -> str:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().lower()


def default_design() -> list[tuple[int, str]]:
    "Five seed offsets under the CPU's own kernels, three under the portable ones, one under AVX2 (where it is not native)."
    native = native_kernels()
    design = [(k, native) for k in range(5)] + [(0, "default"), (1, "default"), (5, "default")]
    if native == "avx512": design.append((0, "avx2"))
    else: design.append((2, "default"))
    return design


def run_one(out: Path, offset: int, kernels: str, nb: str) -> dict:
    folder = out / f"offset{offset}-{kernels}"
    done = folder / f"{nb}.done.json"
    if done.exists(): return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    claims = folder / f"{nb}.claims.jsonl"
    claims.unlink(missing_ok=True)
    env = {**os.environ, "HESSIAN_NB_CLAIMS": str(claims), "HESSIAN_NB_CLAIMS_RAISE": "0", "HESSIAN_NB_QUIET": "1",
           "HESSIAN_NB_SEED_OFFSET": str(offset), "ATEN_CPU_CAPABILITY": kernels, "OMP_NUM_THREADS": "1",
           "HESSIAN_NB_CACHE": str(folder / "cache")}
    t0 = time.time()
    p = subprocess.run([str(Path(sys.executable).parent / "nbdev_test"), "--path", f"nbs/{nb}.ipynb"], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    (folder / f"{nb}.log").write_text(p.stdout + p.stderr)
    err = ""
    if p.returncode:
        lines = [l for l in (p.stdout + p.stderr).splitlines() if l.strip()]
        err = next((l for l in reversed(lines) if "Error" in l and "Failed" not in l), lines[-1] if lines else "?")[:200]
    res = {"notebook": nb, "offset": offset, "kernels": kernels, "seconds": round(time.time() - t0, 1),
           "returncode": p.returncode, "error": err}
    done.write_text(json.dumps(res))
    print(f"{nb} offset {offset} {kernels}: {res['seconds']:.0f} s, rc {p.returncode} {err}", flush=True)
    return res


def current_bounds(nb: str) -> dict:
    """{what: (lo, hi)} of the notebook's claim(...) calls as its source reads now, where the bounds are numbers or
    arithmetic on numbers (a bound computed from a variable keeps the value the run recorded)."""
    import ast
    cells = json.loads((ROOT / "nbs" / f"{nb}.ipynb").read_text())["cells"]
    out = {}
    for c in cells:
        if c["cell_type"] != "code": continue
        try: tree = ast.parse("".join(l for l in "".join(c["source"]).splitlines(True) if not l.lstrip().startswith(("#|", "%", "!"))))
        except SyntaxError: continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "claim" and node.args
                    and isinstance(node.args[0], ast.Constant)): continue
            args = dict(zip(("what", "values", "lo", "hi"), node.args)) | {k.arg: k.value for k in node.keywords}
            def value(n):
                if n is None: return None
                try: return float(eval(compile(ast.Expression(n), "<bound>", "eval"), {"__builtins__": {}}, {}))
                except Exception: return "recorded"
            out[node.args[0].value] = (value(args.get("lo")), value(args.get("hi")))
    return out


def fmt(x) -> str:
    if x is None: return ""
    if x == 0: return "0"
    a = abs(x)
    return f"{x:.3g}" if 1e-3 <= a < 1e4 else f"{x:.2e}"


def table(out: Path) -> str:
    rows, runs, errors, bounds = {}, [], [], {}
    for done in sorted(out.glob("*/*.done.json")):
        r = json.loads(done.read_text()); runs.append(r)
        if r["returncode"]: errors.append(r)
        claims = done.with_name(f"{r['notebook']}.claims.jsonl")
        if not claims.exists(): continue
        for line in claims.read_text().splitlines():
            c = json.loads(line)
            key = (r["notebook"], c["what"])
            now = bounds.setdefault(r["notebook"], current_bounds(r["notebook"])).get(c["what"])
            if now is None: continue  # a claim the chapter no longer makes
            lo, hi = (c[k] if b == "recorded" else b for k, b in zip(("lo", "hi"), now))
            d = rows.setdefault(key, {"lo": lo, "hi": hi, "mins": [], "maxs": [], "fails": set(), "real": set()})
            d["mins"].append(c["min"]); d["maxs"].append(c["max"])
            if (lo is not None and c["min"] < lo) or (hi is not None and c["max"] > hi): d["fails"].add((r["offset"], r["kernels"]))
            d["real"].add((r["offset"], r["kernels"]))
    realizations = sorted({(r["offset"], r["kernels"]) for r in runs})
    out_lines = ["Per claim: its bounds as the chapter states them; the smallest and largest value seen over all realizations (a "
                 "claim over several values counts each); the median over realizations of the value nearest a bound; the "
                 "margin, how far the worst realization stays inside the bounds, relative to the bound (negative: outside); "
                 "and in how many realizations it failed. ", "",
                 f"{len(realizations)} realizations (seed offset, kernels): "
                 + ", ".join(f"({o}, {k})" for o, k in realizations) + ".", "",
                 "| ch. | claim | bounds | min | median | max | margin | failed |", "|---|---|---|---|---|---|---|---|"]
    for (nb, what), d in rows.items():
        lo, hi = d["lo"], d["hi"]
        mn, mx = min(d["mins"]), max(d["maxs"])
        def slack(a, b):  # how far a realization's values [a, b] stay inside the bounds, relative to the bound
            out = []
            if lo is not None: out.append((a - lo) / abs(lo) if lo else a)
            if hi is not None: out.append((hi - b) / abs(hi) if hi else -b)
            return min(out)
        worst = sorted(zip(d["mins"], d["maxs"]), key=lambda ab: slack(*ab))
        w = worst[len(worst) // 2]  # the median realization, by how close it comes to a bound
        med = w[0] if lo is not None and (hi is None or slack(w[0], w[0]) <= slack(w[1], w[1])) else w[1]
        bounds = f"[{fmt(lo) if lo is not None else '-inf'}, {fmt(hi) if hi is not None else 'inf'}]"
        m = 100 * slack(*worst[0])
        mtxt = "exact" if lo == hi else f"{m:.0f}%" if round(m) else "0%"
        out_lines.append(f"| {nb.split('_')[0]} | {what.replace('|', chr(92) + '|')} | {bounds} | {fmt(mn)} | {fmt(med)} | {fmt(mx)} | {mtxt} | "
                         f"{len(d['fails'])} of {len(d['real'])} |")
    if errors:
        out_lines += ["", "Chapters that stopped on an error (not a claim):", ""]
        out_lines += [f"- {e['notebook']}, offset {e['offset']}, {e['kernels']}: `{e['error']}`" for e in errors]
    return "\n".join(out_lines)


def write_results(text: str):
    path = ROOT / "bench" / "RESULTS.md"
    doc = path.read_text()
    if START in doc: doc = doc[:doc.index(START) + len(START)] + "\n" + text + "\n" + doc[doc.index(END):]
    else: doc += f"\n{START}\n{text}\n{END}\n"
    path.write_text(doc)


def main():
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--offsets", type=int, nargs="*", help="seed offsets (with --kernels: their product)")
    a.add_argument("--kernels", nargs="*", help="ATEN_CPU_CAPABILITY values, e.g. default avx2 avx512")
    a.add_argument("--notebooks", nargs="*", default=CHAPTERS)
    a.add_argument("--jobs", type=int, default=2, help="chapters run at once (one thread each)")
    a.add_argument("--out", default=str(ROOT / ".cache" / "robustness"))
    a.add_argument("--table-only", action="store_true")
    a.add_argument("--no-write", action="store_true", help="print the table; leave bench/RESULTS.md alone")
    args = a.parse_args()
    out = Path(args.out)
    if not args.table_only:
        design = ([(o, k) for k in (args.kernels or [native_kernels()]) for o in (args.offsets or [0])]
                  if args.offsets is not None or args.kernels else default_design())
        # the heavy chapters first, so that the two workers finish together
        jobs = [(o, k, nb) for nb in sorted(args.notebooks, key=lambda n: n[:2] not in ("05", "06", "07"))
                for o, k in design]
        with ThreadPoolExecutor(args.jobs) as ex: list(ex.map(lambda j: run_one(out, *j), jobs))
    text = table(out)
    print(text)
    if not args.no_write: write_results(text)


if __name__ == "__main__":
    main()
