"""The top-C eigenspace of the Gauss-Newton matrix by averaging (Papyan) against a dense eigendecomposition and Lanczos on G.

Problem: digits, a 64-64-10 ReLU MLP (P = 4,810, float64), 2,000 GD steps at step 0.5 on 50 images per class (N = 500,
C = 10), cross-entropy, through the lab's run cache. Methods, each from the trained Objective:
  averaging  averaged_top_space(obj, C): class means by one batched backward pass per class, a C x C eigenproblem
  dense      ggn(obj) then torch.linalg.eigh (P x P)
  lanczos    lanczos(ggn_op(obj), k=C): matrix-free products with G
Reported: time (best of 3 interleaved rounds), products with G, and the overlap of each subspace with the dense top-C
eigenspace (||Q^T Q_dense||_F^2 / C), plus the top-C eigenvalues' ratio to G's.

    HESSIAN_NB_QUIET=1 .venv/bin/python bench/class_structure.py
"""
import math
import time

import torch

from hessian_nb.class_structure import averaged_top_space, class_split, subspace_overlap
from hessian_nb.core import Objective
from hessian_nb.gauss_newton import ggn
from hessian_nb.gauss_newton import ggn_op
from hessian_nb.spectrum import lanczos
from hessian_nb.train import TrainConfig, run

torch.set_num_threads(2)
CFG = TrainConfig(data={"name": "digits", "n_per_class": 50}, model={"arch": "mlp", "hidden": [64]}, lr=0.5, max_steps=2000,
                  grad_tol=0, log_every=0)


def main():
    r = run(CFG)
    obj = Objective(r.model, r.data.X, r.data.y)
    C = obj.num_classes

    def averaging():
        w, Q = averaged_top_space(obj, C)  # class means by C batched backward passes
        return w, Q, 0

    def dense():
        w, U = torch.linalg.eigh(ggn(obj))
        return w.flip(0)[:C], U.flip(1)[:, :C], 0

    def krylov():
        e = lanczos(ggn_op(obj), k=C)
        return e.values, e.vectors, e.products

    methods = {"averaging (class means, C x C)": averaging, "dense ggn + eigh (P x P)": dense, "lanczos on ggn_vp": krylov}
    best = {m: (math.inf, None) for m in methods}
    for rnd in range(3):
        for m in list(methods)[rnd % 3:] + list(methods)[:rnd % 3]:
            t = time.perf_counter(); out = methods[m](); t = time.perf_counter() - t
            if t < best[m][0]: best[m] = (t, out)
    ref_w, ref_Q = best["dense ggn + eigh (P x P)"][1][:2]
    t0 = best["averaging (class means, C x C)"][0]
    print(f"P = {obj.num_params:,}, N = {obj.N}, C = {C}\n")
    print("| method | time (s) | time / averaging | products with G | overlap with dense top-C space | top-C eigenvalue / G's |")
    print("|---|---|---|---|---|---|")
    for m, (t, (w, Q, n)) in best.items():
        ratio = w / ref_w
        print(f"| {m} | {t:.3f} | {t / t0:.1f} | {n} | {subspace_overlap(Q, ref_Q):.3f} | {float(ratio.min()):.2f}-{float(ratio.max()):.2f} |")


if __name__ == "__main__":
    main()
