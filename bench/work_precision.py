"""Work against precision: top-10 eigenvalues of H for the scale benchmark's network (ResNet-style CNN, P = 1,022,716,
Fashion-MNIST, float32), every method swept over its accuracy knob, in one process, one after the other.

bench/scale.py compares the methods at one setting each (tol 1e-3). "Fewer products and at most half the time at equal
accuracy" needs the accuracy each setting actually reaches, so here every method is swept and each run's top-10 is
compared with a tight reference (hessian_nb at tol 1e-6, checked against eigsh at tol 1e-8):
  hessian_nb        lanczos(obj.H, k=10, tol=t, vectors=False), with the verification restart (the default) and without
  curvlinops+eigsh  scipy eigsh(HessianLinearOperator.to_scipy(), k=10, which='LA', tol=t, no eigenvectors)
  eigenthings       hessian_eigenthings.lanczos(HessianOperator, k=10, max_iter=m) (it has no tolerance: m is its knob)
and the cost of one product is split into its parts: a gradient (forward and backward: what curvlinops rebuilds for
every product) and the double backward over the cached graph (hessian_nb's product).

    HESSIAN_NB_QUIET=1 OMP_NUM_THREADS=1 .venv/bin/python bench/work_precision.py [--n-per-class 20] [--threads 1]
"""
import argparse
import math
import os
import sys
import time
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale import Counter, problem  # noqa: E402  (the same network and images)

warnings.filterwarnings("ignore")


def ours(model, X, y, tol, verify=True):
    from hessian_nb.core import Objective
    from hessian_nb.spectrum import lanczos
    H = Objective(model, X, y).H
    e = lanczos(H, k=10, tol=tol, max_iter=250, verify=verify, vectors=False)
    return e.values.double(), H.products


def eigsh_(model, X, y, tol):
    import numpy as np
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import LinearOperator, eigsh
    op = HessianLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), [(X, y)],
                               check_deterministic=False).to_scipy()
    c = Counter(op.matvec)
    w = LinearOperator(op.shape, matvec=lambda v: c(np.asarray(v).reshape(-1)), dtype=op.dtype)
    vals = eigsh(w, k=10, which="LA", tol=tol, return_eigenvectors=False,
                 v0=np.ones(op.shape[0], dtype=op.dtype) / math.sqrt(op.shape[0]))
    return torch.sort(torch.tensor(vals, dtype=torch.float64), descending=True).values, c.n


def eigenthings(model, X, y, m):
    import hessian_eigenthings as he
    op = he.HessianOperator(model, [(X, y)], he.supervised_loss(nn.CrossEntropyLoss()))
    c = Counter(op.matvec); op.matvec = c
    res = he.lanczos(op, k=10, which="LA", max_iter=m, seed=0)
    return torch.sort(torch.as_tensor(res.eigenvalues).double(), descending=True).values, c.n


def product_parts(model, X, y, reps=3):
    "Seconds for a gradient (forward + backward) and for hessian_nb's product (double backward over the cached graph)."
    from hessian_nb.core import Objective
    params = list(model.parameters())
    def grad(): torch.autograd.grad(nn.functional.cross_entropy(model(X), y), params)
    H = Objective(model, X, y).H
    v = torch.randn(H.P, generator=torch.Generator().manual_seed(0))
    def best(f):
        f(); ts = []
        for _ in range(reps):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        return min(ts)
    return best(grad), best(lambda: H @ v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-per-class", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.environ["HESSIAN_NB_QUIET"] = "1"
    model, X, y = problem(a.n_per_class, "cpu")
    P = sum(p.numel() for p in model.parameters())
    print(f"### Work against precision: ResNet-style CNN, P = {P:,}, Fashion-MNIST N = {len(X):,}, float32, "
          f"{a.threads} thread(s)\n")
    runs = []
    def run(method, setting, f):
        t = time.perf_counter(); vals, n = f(); runs.append((method, setting, n, time.perf_counter() - t, vals))
        print(f"  {method} {setting}: {n} products, {runs[-1][3]:.1f} s", file=sys.stderr)
    run("reference", "hessian_nb tol 1e-6", lambda: ours(model, X, y, 1e-6))
    run("check", "eigsh tol 1e-8", lambda: eigsh_(model, X, y, 1e-8))
    for tol in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4):
        run("hessian_nb", f"tol {tol:g}", lambda: ours(model, X, y, tol))
        run("hessian_nb, verify=False", f"tol {tol:g}", lambda: ours(model, X, y, tol, verify=False))
        run("curvlinops + eigsh", f"tol {tol:g}", lambda: eigsh_(model, X, y, tol))
    for m in (20, 40, 60, 80):
        run("eigenthings", f"max_iter {m}", lambda: eigenthings(model, X, y, m))
    ref = runs[0][4][:10]
    def err(v): return float(((v[:10] - ref) / ref).abs().max())
    print(f"Reference top 3: {', '.join(f'{x:.4g}' for x in ref[:3].tolist())}; eigsh at tol 1e-8 agrees to "
          f"{err(runs[1][4]):.1e} ({runs[1][2]} products).\n")
    print("| method | setting | products | time (s) | s / product | max rel. error (top 10) |\n|---|---|---|---|---|---|")
    for method, setting, n, t, v in runs[2:]:
        print(f"| {method} | {setting} | {n} | {t:.1f} | {t / n:.3f} | {err(v):.1e} |")
    print("\nCheapest run reaching each accuracy (products, time), and hessian_nb's against the best peer's:\n")
    print("| max rel. error at most | " + " | ".join(dict.fromkeys(r[0] for r in runs[2:])) + " | products: ours / best peer | "
          "time: ours / best peer |\n|" + "---|" * 7)
    methods = list(dict.fromkeys(r[0] for r in runs[2:]))
    for level in (1e-2, 1e-3, 1e-4, 1e-5):
        best = {}
        for m in methods:
            ok = [r for r in runs[2:] if r[0] == m and err(r[4]) <= level]
            best[m] = min(((r[2], r[3]) for r in ok)) if ok else None  # the run with the fewest products (then time)
        cells = [f"{b[0]}, {b[1]:.1f} s" if b else "not reached" for b in best.values()]
        peers = [best[m] for m in methods if not m.startswith("hessian_nb") and best[m]]
        def ratio(i, who):
            return f"{best[who][i] / min(p[i] for p in peers):.2f}" if peers and best[who] else "-"
        print(f"| {level:.0e} | " + " | ".join(cells) + f" | {ratio(0, 'hessian_nb')} ({ratio(0, 'hessian_nb, verify=False')} "
              f"unverified) | {ratio(1, 'hessian_nb')} ({ratio(1, 'hessian_nb, verify=False')} unverified) |")
    g, h = product_parts(model, X, y)
    print(f"\nOne product's parts (best of 3): gradient (forward + backward) {g:.3f} s, double backward over the cached "
          f"graph {h:.3f} s. A product that rebuilds the graph costs about {g + h:.3f} s, so hessian_nb's products cost at "
          f"best {h / (g + h):.2f} of a rebuilding peer's; half the time then needs at most {0.5 * (g + h) / h:.2f} times "
          f"the peer's products.")


if __name__ == "__main__":
    main()
