"""Dense Hessian and Hessian-vector products: hessian_nb against the routes a user would otherwise take.

Problem: an MLP 64-42-42-10 (ReLU, P = 4,966) on 1,000 scikit-learn digits, cross-entropy, full batch.
Peers: torch.func.hessian, torch.autograd.functional.hessian, curvlinops' HessianLinearOperator applied to the identity
(dense); torch.func jvp-of-grad, torch.autograd.functional.hvp and curvlinops (products).
Peak memory: each dense method runs once alone in a fresh subprocess (the rise of the process's maximum resident set over its
size just before the call, after a warm-up of the same method on a tiny problem has loaded code and thread pools).
Time: the dense methods (and, separately, the products) run in one process in rounds that rotate their order (the machine is shared and noisy; interleaving
makes drift hit every method alike); medians over the rounds. Ratios are method / hessian_nb.

    .venv/bin/python bench/dense_hessian.py            # everything (about 15 minutes on 2 cores)
    .venv/bin/python bench/dense_hessian.py --quick    # one repeat, float64 only
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from sklearn.datasets import load_digits
from torch import nn

from hessian_nb.core import Objective

DENSE = ["hessian_nb", "torch.func.hessian", "torch.autograd.functional.hessian", "curvlinops H @ I"]
HIDDEN, N = 42, 1000


def problem(dtype, hidden=HIDDEN, n=N):
    "The benchmark model, data and Objective, seeded."
    torch.manual_seed(0)
    d = load_digits()
    X = torch.tensor(d.data[:n], dtype=dtype) / 16
    y = torch.tensor(d.target[:n])
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, 10)).to(dtype)
    return model, X, y, Objective(model, X, y, loss="ce")


def loss_of_theta(obj):
    return lambda t: obj.loss_fn(obj.forward(t, obj.X), obj.y)


def curvlinops_op(model, X, y):
    from curvlinops import HessianLinearOperator
    params = [p for p in model.parameters()]
    return HessianLinearOperator(model, nn.CrossEntropyLoss(), params, [(X, y)], check_deterministic=False)


def dense_method(name, model, X, y, obj):
    "A zero-argument function computing the dense Hessian the way `name` does."
    f, th = loss_of_theta(obj), obj.theta
    if name == "hessian_nb":
        return lambda: Objective(model, X, y, loss="ce").hessian()  # a fresh Objective: nothing cached
    if name == "torch.func.hessian":
        return lambda: torch.func.hessian(f)(th)
    if name == "torch.autograd.functional.hessian":
        return lambda: torch.autograd.functional.hessian(f, th)
    if name == "curvlinops H @ I":
        op = curvlinops_op(model, X, y)
        return lambda: op @ torch.eye(obj.num_params, dtype=th.dtype)
    raise ValueError(name)


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_rss_bytes():
    "This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that over from the parent across fork and exec."
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def run_one(name, dtype_name, repeats):
    "Worker: time one dense method in this fresh process; print JSON."
    dtype = getattr(torch, dtype_name)
    dense_method(name, *problem(dtype, hidden=4, n=50))()  # warm-up on a tiny problem: code pages and thread pools
    model, X, y, obj = problem(dtype)
    fn = dense_method(name, model, X, y, obj)
    before = rss_bytes()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); H = fn(); times.append(time.perf_counter() - t0)
        if _ < repeats - 1: del H
    peak = peak_rss_bytes() - before
    ref = Objective(model, X, y).hessian() if name != "hessian_nb" else H
    err = float((H - ref).abs().max() / ref.abs().max())
    print(json.dumps({"method": name, "dtype": dtype_name, "times": times, "peak_bytes": peak,
                      "P": obj.num_params, "max_rel_diff_vs_hessian_nb": err}))


def interleaved_times(dtype, names, repeats):
    "Wall times of each dense method in this process, in rounds that rotate the order, so drift hits all alike."
    model, X, y, obj = problem(dtype)
    fns = {n: dense_method(n, model, X, y, obj) for n in names}
    times = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter(); fns[n](); times[n].append(time.perf_counter() - t0)
    return times


def products(dtype, rounds=15, k=32):
    "Gradient and Hessian-vector product times, hessian_nb and peers, in interleaved rounds (medians)."
    model, X, y, obj = problem(dtype)
    f, th, P = loss_of_theta(obj), obj.theta, obj.num_params
    v, V = torch.randn(P, dtype=dtype), torch.randn(P, k, dtype=dtype)
    op = curvlinops_op(model, X, y)

    def plain_backward():
        model.zero_grad(set_to_none=True); nn.functional.cross_entropy(model(X), y).backward()

    def fresh(M):  # a product at a new theta: the gradient graph is rebuilt
        obj._graph_cache = None; return obj.hvp(M)

    fwd_rev = lambda w: torch.func.jvp(torch.func.grad(f), (th,), (w,))[1]
    ops = {"gradient (hessian_nb)": obj.grad,
           "gradient (plain loss.backward)": plain_backward,
           "HVP hessian_nb (new theta)": lambda: fresh(v),
           "HVP hessian_nb (same theta, graph kept)": lambda: obj.hvp(v),
           "HVP torch.func jvp(grad)": lambda: fwd_rev(v),
           "HVP torch.autograd.functional.hvp": lambda: torch.autograd.functional.hvp(f, th, v),
           "HVP curvlinops": lambda: op @ v,
           f"{k} HVPs hessian_nb (new theta)": lambda: fresh(V),
           f"{k} HVPs hessian_nb (same theta)": lambda: obj.hvp(V),
           f"{k} HVPs torch.func vmap(jvp(grad))": lambda: torch.vmap(fwd_rev, in_dims=1, out_dims=1)(V),
           f"{k} HVPs curvlinops": lambda: op @ V}
    for fn in ops.values(): fn(); fn()  # warm-up
    times = {name: [] for name in ops}
    for _ in range(rounds):  # one call of each per round: drift on the shared machine hits all alike
        for name, fn in ops.items():
            t0 = time.perf_counter(); fn(); times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}, P


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one repeat, float64 only")
    ap.add_argument("--repeats", type=int, default=3, help="repeats per dense method (median)")
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "DTYPE"), help=argparse.SUPPRESS)
    ap.add_argument("--products", action="store_true", help="only the gradient and product tables (no dense Hessians)")
    a = ap.parse_args()
    if a.one: return run_one(a.one[0], a.one[1], a.repeats)
    dtypes = ["float64"] if a.quick else ["float64", "float32"]
    repeats = 1 if a.quick else a.repeats
    print(f"# bench/dense_hessian.py: torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    for dt in dtypes:
        if a.products: print_products(dt); continue
        rows = []
        for name in DENSE:  # memory: each method alone in a fresh process, one call
            out = subprocess.run([sys.executable, __file__, "--one", name, dt, "--repeats", "1"], capture_output=True, text=True)
            if out.returncode: rows.append({"method": name, "error": out.stderr.strip().splitlines()[-1]}); continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        times = interleaved_times(getattr(torch, dt), [r["method"] for r in rows if "error" not in r], repeats)
        for r in rows: r["times"] = times.get(r["method"], [])
        ours = statistics.median(rows[0]["times"])
        P = rows[0]["P"]; result = P * P * torch.empty(0, dtype=getattr(torch, dt)).element_size()
        print(f"## Dense Hessian, {dt}, P = {P:,} (the P x P result is {result / 1e6:.0f} MB)\n")
        print("| method | median time (s) | time / hessian_nb | peak extra memory (MB) | peak / result | max rel. diff vs hessian_nb |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            if "error" in r: print(f"| {r['method']} | failed: {r['error']} | | | | |"); continue
            t = statistics.median(r["times"])
            print(f"| {r['method']} | {t:.2f} | {t / ours:.2f} | {r['peak_bytes'] / 1e6:.0f} | "
                  f"{r['peak_bytes'] / result:.2f} | {r['max_rel_diff_vs_hessian_nb']:.1e} |")
        print()
        print_products(dt)


def print_products(dt):
    times, P = products(getattr(torch, dt))
    g = times["gradient (hessian_nb)"]
    print(f"## Gradient and Hessian-vector products, {dt} (median ms; ratio to one hessian_nb gradient)\n")
    print("| operation | time (ms) | per product / gradient |")
    print("|---|---|---|")
    for k, t in times.items():
        n = int(k.split()[0]) if k[0].isdigit() else 1
        print(f"| {k} | {t * 1e3:.2f} | {t / n / g:.2f} |")
    print(); sys.stdout.flush()


if __name__ == "__main__":
    main()
