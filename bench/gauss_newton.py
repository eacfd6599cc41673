"""Top-10 eigenvalues of the Gauss-Newton matrix G: the Gram route against matrix-free Lanczos and curvlinops + scipy eigsh.

Problem: the digits 64-256-10 ReLU MLP of bench/spectrum.py (P = 19,210, float64, trained 300 GD steps through the lab's run
cache), cross-entropy; G is taken on balanced subsets of the training set with N = 20, 50, 100, 200 samples, so that
N C = 200 .. 2,000 is far below P. Methods, all on the same G:
  gram      hessian_nb.gauss_newton.gram_eigh(obj, 10): per-sample Jacobians -> V (P x N C) -> eigh of V^T V; no products
  lanczos   hessian_nb.spectrum.lanczos(ggn_op(obj), 10): matrix-free G v (forward mode, output Hessian, reverse mode)
  eigsh     scipy.sparse.linalg.eigsh(curvlinops GGNLinearOperator, k=10, which='LA'), default tol (machine precision)
Time: methods interleaved, best of 3 rounds. Agreement: max relative difference of the 10 eigenvalues to the gram route.
A second table asks for the whole nonzero spectrum, k = N (C - 1) eigenvalues (the rank of G), for N = 20 and 50; agreement
there is the largest difference relative to the top eigenvalue.

    HESSIAN_NB_QUIET=1 .venv/bin/python bench/gauss_newton.py
"""
import math
import sys
import time
import warnings

import numpy as np
import torch
from torch import nn

from hessian_nb.core import Objective
from hessian_nb.data import subset
from hessian_nb.gauss_newton import gram_eigh
from hessian_nb.gauss_newton import ggn_op
from hessian_nb.spectrum import lanczos
from hessian_nb.train import TrainConfig, run

warnings.filterwarnings("ignore")
torch.set_num_threads(2)
CFG = TrainConfig(data={"name": "digits"}, model={"arch": "mlp", "hidden": [256]}, lr=0.5, max_steps=300, grad_tol=0, log_every=0)


def eigsh_ggn(model, X, y, k=10):
    from curvlinops import GGNLinearOperator
    from scipy.sparse.linalg import LinearOperator, eigsh
    op = GGNLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), [(X, y)], check_deterministic=False).to_scipy()
    n = [0]
    def mv(v): n[0] += 1; return op.matvec(np.asarray(v).reshape(-1))
    wrapped = LinearOperator(op.shape, matvec=mv, dtype=op.dtype)
    vals = eigsh(wrapped, k=k, which="LA", return_eigenvectors=False, v0=np.ones(op.shape[0]) / math.sqrt(op.shape[0]))
    return torch.sort(torch.tensor(vals, dtype=torch.float64), descending=True).values, n[0]


def table(r, npcs, whole):
    print("| N | N C | k | method | time (s) | products | max diff to gram | time / gram |")
    print("|---|---|---|---|---|---|---|---|")
    for npc in npcs:
        d = subset(r.data, npc)
        obj = Objective(r.model, d.X, d.y)
        k = obj.N * 9 if whole else 10
        methods = {
            "gram (hessian_nb)": lambda: (gram_eigh(obj, k, vectors=False), 0),
            "lanczos on ggn_vp (hessian_nb)": lambda: (lambda e: (e.values, e.products))(lanczos(ggn_op(obj), k=k)),
            "curvlinops GGN + eigsh": lambda: eigsh_ggn(r.model, d.X, d.y, k),
        }
        best = {m: (math.inf, None) for m in methods}
        for rnd in range(3 if not whole else 1):
            for m in list(methods)[rnd % 3:] + list(methods)[:rnd % 3]:
                t = time.perf_counter(); out = methods[m](); t = time.perf_counter() - t
                if t < best[m][0]: best[m] = (t, out)
        t0, (ref, _) = best["gram (hessian_nb)"]
        for m, (t, (vals, n)) in best.items():
            diff = float(((vals[:k] - ref) / (ref[0] if whole else ref)).abs().max())
            print(f"| {obj.N} | {obj.N * 10:,} | {k} | {m} | {t:.3f} | {n} | {diff:.1e} | {t / t0:.2f} |")
        sys.stdout.flush()


def main():
    import curvlinops  # noqa: F401
    from importlib.metadata import version
    r = run(CFG)
    for p in r.model.parameters(): p.requires_grad_(True)
    print(f"torch {torch.__version__}, curvlinops-for-pytorch {version('curvlinops-for-pytorch')}, scipy "
          f"{__import__('scipy').__version__}; P = {sum(p.numel() for p in r.model.parameters()):,}\n")
    print("Top 10 eigenvalues:\n"); table(r, (2, 5, 10, 20), whole=False)
    print("\nThe whole nonzero spectrum, k = N (C - 1):\n"); table(r, (2, 5), whole=True)


if __name__ == "__main__":
    main()
