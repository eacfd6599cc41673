"""Your own network (chapter 10): per-block traces, the diagonal and tracking, against what the peers offer.

Problems (float64, full batch, cross-entropy, trained through the lab's run cache):
  mlp : digits 64-64-64-10 ReLU MLP (P = 8,970, three modules), N = 500 images (50 per class), 2,000 steps of GD
        at lr 0.5; its dense Hessian (645 MB) is the reference
  cnn : the lab's Fashion-MNIST convnet (P = 19,898), 500 images (50 per class), float32, SGD (batch 50, lr 0.05, 1,000
        steps), tracked every 50 steps

  traces   : the trace of every module's block of H at equal product budgets, rms relative error over 10 seeds against the
             dense Hessian: hessian_nb block_traces (one set of shared Rademacher products), hessian_nb hutchpp on each
             block (budget split over the blocks), and PyHessian's trace() run once per module with only that module's
             parameters requiring grad (budget split over the modules), which is how its users get per-layer traces
  diagonal : the diagonal of G exactly (hessian_nb ggn_diagonal against BackPACK's DiagGGNExact) and of H (hessian_nb
             diagonal, exact and estimated, against BackPACK's DiagHessian), time and error against the dense matrices
  tracking : Tracker(k=5) every 50 steps of SGD, Lanczos warm-started from the previous eigenvectors against random starts:
             products and time

    HESSIAN_NB_QUIET=1 .venv/bin/python bench/network.py [--only traces|diagonal|tracking]
"""
import argparse
import math
import time
import warnings

import torch
from torch import nn

from hessian_nb.core import Objective
from hessian_nb.gauss_newton import ggn, ggn_diagonal
from hessian_nb.network import Tracker, block_traces, diagonal, param_blocks
from hessian_nb.spectrum import hutchpp
from hessian_nb.models import FMNIST_CNN
from hessian_nb.train import TrainConfig, make_data, make_model, run, train

warnings.filterwarnings("ignore")
torch.set_num_threads(2)
MLP = TrainConfig(data={"name": "digits", "n_per_class": 50}, model={"arch": "mlp", "hidden": [64, 64]}, lr=0.5,
                  max_steps=2000, grad_tol=0, log_every=0)
CNN = TrainConfig(data={"name": "fashion_mnist", "n_per_class": 50, "n_test_per_class": 10, "image": True}, model=FMNIST_CNN,
                  lr=0.05, batch_size=50, max_steps=1000, grad_tol=0, dtype="float32", log_every=0)
SEEDS = range(10)


def rms(errors): return math.sqrt(sum(e * e for e in errors) / len(errors))


def traces():
    r = run(MLP)
    model, X, y = r.model, r.data.X, r.data.y
    obj = Objective(model, X, y)
    H = obj.hessian()
    blocks = param_blocks(obj)
    exact = {lab: float(H[b][:, b].trace()) for lab, b in blocks.items()}
    print(f"MLP P = {obj.num_params:,}, modules {[(lab, len(b)) for lab, b in blocks.items()]}, exact traces "
          + ", ".join(f"{v:.4g}" for v in exact.values()))
    L = len(blocks)
    print("| products | method | time (s) | rms rel. error, per module | mean over modules |")
    print("|---|---|---|---|---|")
    from pyhessian import hessian as PyHessian
    for budget in (30, 90, 270):
        rows = {}
        t = time.perf_counter(); errs = {lab: [] for lab in blocks}
        for s in SEEDS:
            tr = block_traces(obj.H, blocks, probes=budget, seed=s)
            for lab in blocks: errs[lab].append((tr[lab][0] - exact[lab]) / exact[lab])
        rows["hessian_nb block_traces (shared)"] = (time.perf_counter() - t, errs)
        t = time.perf_counter(); errs = {lab: [] for lab in blocks}
        for s in SEEDS:
            for lab, b in blocks.items():
                est, _ = hutchpp(obj.H.block(b), products=max(6, budget // L), seed=s)
                errs[lab].append((est - exact[lab]) / exact[lab])
        rows["hessian_nb hutchpp per block"] = (time.perf_counter() - t, errs)
        t = time.perf_counter(); errs = {lab: [] for lab in blocks}
        crit = nn.CrossEntropyLoss()
        for s in SEEDS:
            torch.manual_seed(s)
            for lab in blocks:
                for n, p in model.named_parameters(): p.requires_grad_(n.rpartition(".")[0] == lab)
                comp = PyHessian(model, crit, data=(X, y), cuda=False)
                est = sum(comp.trace(maxIter=budget // L, tol=0.0)) / (budget // L)
                errs[lab].append((est - exact[lab]) / exact[lab])
        for p in model.parameters(): p.requires_grad_(True)
        rows["PyHessian trace() per module"] = (time.perf_counter() - t, errs)
        for name, (sec, errs) in rows.items():
            per = [rms(errs[lab]) for lab in blocks]
            print(f"| {budget} | {name} | {sec / len(SEEDS):.3f} | " + ", ".join(f"{e:.2e}" for e in per)
                  + f" | {sum(per) / L:.2e} |")


def diag():
    r = run(MLP)
    model, X, y = r.model, r.data.X, r.data.y
    obj = Objective(model, X, y)
    H, G = obj.hessian(), ggn(obj)
    from backpack import backpack, extend
    from backpack.extensions import DiagGGNExact, DiagHessian
    print(f"MLP P = {obj.num_params:,}, N = {obj.N}")
    print("| what | method | time (s) | products | max error / max entry |")
    print("|---|---|---|---|---|")
    rel = lambda d, ref: float((d - ref).abs().max() / ref.abs().max())  # the largest error over the largest entry
    t = time.perf_counter(); dg = ggn_diagonal(obj); tg = time.perf_counter() - t
    print(f"| diag G | hessian_nb ggn_diagonal | {tg:.3f} | - | {rel(dg, G.diagonal()):.1e} |")
    bp = extend(model); crit = extend(nn.CrossEntropyLoss())
    for ext, name, ref in ((DiagGGNExact, "diag_ggn_exact", G.diagonal()), (DiagHessian, "diag_h", H.diagonal())):
        t = time.perf_counter()
        loss = crit(bp(X), y)
        with backpack(ext()): loss.backward()
        d = torch.cat([getattr(p, name).reshape(-1) for p in bp.parameters()])
        sec = time.perf_counter() - t; bp.zero_grad()
        print(f"| diag {'G' if name == 'diag_ggn_exact' else 'H'} | BackPACK {ext.__name__} | {sec:.3f} | - | {rel(d, ref):.1e} |")
    op = obj.H
    t = time.perf_counter(); dh, _ = diagonal(op); th = time.perf_counter() - t
    print(f"| diag H | hessian_nb diagonal (exact, unit vectors) | {th:.3f} | {op.products} | {rel(dh, H.diagonal()):.1e} |")
    for probes in (100, 1000):
        op = obj.H
        t = time.perf_counter(); de, err = diagonal(op, probes=probes); te = time.perf_counter() - t
        print(f"| diag H | hessian_nb diagonal ({probes} probes) | {te:.3f} | {op.products} | {rel(de, H.diagonal()):.1e} |")


def tracking():
    data = make_data(CNN)
    probe = data.X[::2], data.y[::2]  # 250 fixed images to measure on
    out = {}
    for warm in (True, False):
        tr = Tracker(*probe, k=5, every=50, warm=warm, trace_products=0, tol=1e-3)
        t = time.perf_counter()
        train(CNN, data, make_model(CNN, data), progress=False, callback=tr)
        out[warm] = (tr, time.perf_counter() - t)
    (w, tw), (c, tc) = out[True], out[False]
    same = max(float(((a["top"] - b["top"]).abs() / b["top"].abs()).max()) for a, b in zip(w.history, c.history))
    pw, pc = sum(r["products"] for r in w.history), sum(r["products"] for r in c.history)
    print(f"CNN P = {sum(p.numel() for p in make_model(CNN, data).parameters()):,}; {len(w.history)} measurements; "
          f"largest relative difference of the top 5 between the two: {same:.1e}")
    print("| start | products (all measurements) | Lanczos seconds | products per measurement, first / later mean |")
    print("|---|---|---|---|")
    for name, tr in (("warm (previous eigenvectors)", w), ("cold (random)", c)):
        ps = [r["products"] for r in tr.history]
        print(f"| {name} | {sum(ps)} | {sum(r['seconds'] for r in tr.history):.1f} | {ps[0]} / {sum(ps[1:]) / len(ps[1:]):.1f} |")
    print(f"warm / cold products: {pw / pc:.2f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--only", choices=["traces", "diagonal", "tracking"])
    a = p.parse_args()
    for name, f in (("traces", traces), ("diagonal", diag), ("tracking", tracking)):
        if a.only in (None, name):
            print(f"\n## {name}\n"); f()
