"""Scale: curvature of a network too large to store (a ResNet-style CNN, P = 1,022,716) on Fashion-MNIST, float32, CPU.

Every method runs in a fresh process (so its peak memory, ru_maxrss, is its own), on the same seeded network and images:
  hessian_nb        lanczos(obj.H, k=10, tol=1e-4, max_iter=150), also the reference; the same at eigsh's tol 1e-3, with
                    and without the verification restart; slq; hutchpp
  eigenthings       hessian_eigenthings.lanczos(HessianOperator, k=10) at its defaults (max_iter 2k)
  curvlinops+eigsh  scipy eigsh(HessianLinearOperator.to_scipy(), k=10, which='LA', tol=1e-3)
  pyhessian         hessian(...).eigenvalues(top_n=1, maxIter=20, tol=1e-3) (power iteration; top-10 by deflation would cost
                    hundreds of products here)
Sharded: 2 gloo processes (1 thread each, half the images each) against 1 process: time per product, and the time of the
one all_reduce of a (P,) float32 block, measured on its own; projection to n devices: t(n) = t_product(1) / n + t_allreduce.
The default size (1,000 images, --n-per-class 100) keeps the run near 10 minutes on 2 CPU cores; the issue's 5,000 images
(--n-per-class 500) costs about 14 s per product here, 5 times more.

    HESSIAN_NB_QUIET=1 .venv/bin/python bench/scale.py [--n-per-class 100] [--device cuda] [--skip-peers]
"""
import argparse
import datetime
import math
import os
import resource
import socket
import sys
import time
import warnings

import torch
import torch.multiprocessing as mp
from torch import nn

warnings.filterwarnings("ignore")


class Block(nn.Module):
    "A residual block: x + conv(relu(conv(x))), then ReLU."
    def __init__(self, c):
        super().__init__()
        self.a, self.b = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
    def forward(self, x): return torch.relu(x + self.b(torch.relu(self.a(x))))


def network(seed=0):
    "ResNet-style CNN for 28x28 images: 16 channels at 14x14, 32 at 7x7, a 630-unit head; P = 1,022,716."
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(), Block(16),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), Block(32),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 630), nn.ReLU(), nn.Linear(630, 10))


def problem(n_per_class, device):
    from hessian_nb.data import fashion_mnist
    d = fashion_mnist(n_per_class=n_per_class, image=True)
    return network().to(device), d.X.to(device), d.y.to(device)


def peak_mb(device):
    if device == "cuda": return torch.cuda.max_memory_allocated() / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


class Counter:
    def __init__(self, f): self.f, self.n = f, 0
    def __call__(self, v):
        self.n += 1 if v.ndim == 1 else v.shape[1]
        return self.f(v)


def m_ours(model, X, y):
    from hessian_nb.core import Objective
    from hessian_nb.spectrum import lanczos
    e = lanczos(Objective(model, X, y).H, k=10, tol=1e-4, max_iter=150)
    return e.values.double().cpu(), e.products


def m_ours_1e3(model, X, y, verify=True):
    "At eigsh's tolerance (1e-3), for the comparison at equal accuracy; verify=False skips the multiplicity restart."
    from hessian_nb.core import Objective
    from hessian_nb.spectrum import lanczos
    e = lanczos(Objective(model, X, y).H, k=10, tol=1e-3, max_iter=150, verify=verify)
    return e.values.double().cpu(), e.products


def m_ours_1e3_noverify(model, X, y): return m_ours_1e3(model, X, y, verify=False)


def m_ours_G(model, X, y):
    from hessian_nb.core import Objective
    from hessian_nb.gauss_newton import ggn_op
    from hessian_nb.spectrum import lanczos
    e = lanczos(ggn_op(Objective(model, X, y)), k=10, tol=1e-3)
    return e.values.double().cpu(), e.products


def m_slq(model, X, y):
    from hessian_nb.core import Objective
    from hessian_nb.spectrum import slq
    q = slq(Objective(model, X, y).H, probes=1, steps=20)
    return q.nodes[0].sort(descending=True).values[:10], q.products


def m_hutchpp(model, X, y):
    from hessian_nb.core import Objective
    from hessian_nb.spectrum import hutchpp
    obj = Objective(model, X, y)
    H = obj.H
    t, se = hutchpp(H, products=30)
    return torch.tensor([t, se], dtype=torch.float64), H.products


def m_eigenthings(model, X, y):
    import hessian_eigenthings as he
    op = he.HessianOperator(model, [(X, y)], he.supervised_loss(nn.CrossEntropyLoss()))
    c = Counter(op.matvec); op.matvec = c
    res = he.lanczos(op, k=10, which="LA", seed=0)
    return torch.sort(res.eigenvalues.double().cpu(), descending=True).values, c.n


def m_curvlinops(model, X, y):
    import numpy as np
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import LinearOperator, eigsh
    op = HessianLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), [(X, y)], check_deterministic=False).to_scipy()
    c = Counter(op.matvec)
    w = LinearOperator(op.shape, matvec=lambda v: c(np.asarray(v).reshape(-1)), dtype=op.dtype)
    vals = eigsh(w, k=10, which="LA", tol=1e-3, return_eigenvectors=False, v0=np.ones(op.shape[0], dtype=op.dtype) / math.sqrt(op.shape[0]))
    return torch.sort(torch.tensor(vals, dtype=torch.float64), descending=True).values, c.n


def m_pyhessian(model, X, y):
    import pyhessian  # noqa: F401
    ph = sys.modules["pyhessian.hessian"]
    c, orig = Counter(None), ph.hessian_vector_product
    def counted(g, p, v): c.n += 1; return orig(g, p, v)
    ph.hessian_vector_product = counted
    torch.manual_seed(0)
    h = ph.hessian(model, nn.CrossEntropyLoss(), data=(X, y), cuda=X.is_cuda)
    vals, _ = h.eigenvalues(maxIter=20, tol=1e-3, top_n=1)
    return torch.tensor(vals, dtype=torch.float64), c.n


METHODS = {"hessian_nb lanczos H (tol 1e-4)": m_ours, "hessian_nb lanczos H (tol 1e-3)": m_ours_1e3,
           "hessian_nb lanczos H (tol 1e-3, verify=False)": m_ours_1e3_noverify, "hessian_nb lanczos G (tol 1e-3)": m_ours_G, "hessian_nb slq (1 x 20)": m_slq,
           "hessian_nb hutchpp (12)": m_hutchpp, "eigenthings lanczos (defaults)": m_eigenthings,
           "curvlinops + eigsh (tol 1e-3)": m_curvlinops, "pyhessian power (top 1, maxIter 20)": m_pyhessian}


def _child(_, name, n, device, threads, q):
    torch.set_num_threads(threads)
    os.environ["HESSIAN_NB_QUIET"] = "1"
    model, X, y = problem(n, device)
    t = time.perf_counter()
    try:
        vals, products = METHODS[name](model, X, y)
        q.put((name, vals.tolist(), products, time.perf_counter() - t, peak_mb(device), None))  # lists: no shared memory
    except Exception as e:
        q.put((name, None, 0, time.perf_counter() - t, peak_mb(device), f"{type(e).__name__}: {str(e)[:120]}"))


def run_fresh(name, n, device, threads):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(0, name, n, device, threads, q))
    p.start()
    out = q.get()
    p.join()
    return out


def _shard_worker(rank, world, port, n, device, reps, q):
    import torch.distributed as dist
    from hessian_nb.core import Objective
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HESSIAN_NB_QUIET="1")
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // world) if device == "cpu" else 1)
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda": torch.cuda.set_device(rank)
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=300))
    model, X, y = problem(n, device)
    s = slice(rank * len(X) // world, (rank + 1) * len(X) // world)
    obj = Objective(model, X[s], y[s], group=True if world > 1 else None)
    v = torch.randn(obj.num_params, generator=torch.Generator().manual_seed(0)).to(device)
    obj.H @ v  # builds and caches the gradient graph
    sync = (lambda: torch.cuda.synchronize()) if device == "cuda" else (lambda: None)
    times, comm = [], []
    for _ in range(reps):
        sync(); t = time.perf_counter(); obj.H @ v; sync(); times.append(time.perf_counter() - t)
    buf = torch.zeros(obj.num_params, device=device)
    for _ in range(reps + 2):
        sync(); t = time.perf_counter(); (dist.all_reduce(buf) if world > 1 else None); sync(); comm.append(time.perf_counter() - t)
    if rank == 0: q.put((world, sorted(times)[len(times) // 2], sorted(comm)[len(comm) // 2], obj.N_local, obj.N))
    dist.barrier()
    dist.destroy_process_group()


def sharded(world, n, device, reps=3):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    mp.start_processes(_shard_worker, args=(world, port, n, device, reps, q), nprocs=world, join=True, start_method="spawn")
    return q.get()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-per-class", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--methods", default="")
    ap.add_argument("--worlds", default="1,2")
    ap.add_argument("--threads", type=int, default=0, help="threads per method process (default: all cores)")
    a = ap.parse_args()
    threads = (a.threads or os.cpu_count()) if a.device == "cpu" else 1
    import hessian_eigenthings, curvlinops, scipy  # noqa: F401  (versions below)
    from importlib.metadata import version
    P = sum(p.numel() for p in network().parameters())
    print(f"### Scale: ResNet-style CNN, P = {P:,}, Fashion-MNIST N = {10 * a.n_per_class:,}, float32, {a.device}"
          f"{f', {threads} threads' if a.device == 'cpu' else ' (' + torch.cuda.get_device_name() + ')'}\n")
    print(f"torch {torch.__version__}; hessian-eigenthings {version('hessian-eigenthings')}, curvlinops "
          f"{version('curvlinops-for-pytorch')}, PyHessian {version('PyHessian')}, scipy {scipy.__version__}\n")
    names = [m for m in METHODS if not (a.skip_peers and not m.startswith("hessian_nb"))]
    if a.methods: names = [m for m in names if any(k in m for k in a.methods.split(","))]
    res = {}
    print("| method | time (s) | products | s / product | peak memory (MB) | top eigenvalues | max rel. error vs reference |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        _, vals, n, t, mem, err = run_fresh(name, a.n_per_class, a.device, threads)
        vals = None if vals is None else torch.tensor(vals, dtype=torch.float64)
        res[name] = vals
        ref = res.get("hessian_nb lanczos H (tol 1e-4)")
        if ref is None:  # the tight reference was not run (--methods): compare with hessian_nb's first top-10 of H
            ref = next((v for k, v in res.items() if k.startswith("hessian_nb lanczos H") and k != name), None)
        if err: print(f"| {name} | {t:.1f} | fails | - | {mem:,.0f} | {err} | - |"); sys.stdout.flush(); continue
        shown = ", ".join(f"{x:.4g}" for x in vals[:3].tolist())
        if "hutchpp" in name: shown, e = f"trace {float(vals[0]):.4g} +- {float(vals[1]):.2g}", "-"
        elif "slq" in name or " G " in name or ref is None: e = "-" if ref is not None or "lanczos H" not in name else "reference"
        else:
            k = min(len(vals), 10)
            e = ("reference" if name == "hessian_nb lanczos H (tol 1e-4)"
                 else f"{float(((vals[:k] - ref[:k]) / ref[:k]).abs().max()):.1e}")
        print(f"| {name} | {t:.1f} | {n:,} | {t / max(n, 1):.2f} | {mem:,.0f} | {shown} | {e} |")
        sys.stdout.flush()
    print("\n| processes | threads each | N per process | s / product (median) | all_reduce of P floats (s) | its share |")
    print("|---|---|---|---|---|---|")
    rows = {}
    for world in map(int, a.worlds.split(",")):
        w, tp, tc, nl, N = sharded(world, a.n_per_class, a.device)
        rows[w] = (tp, tc)
        thr = max(1, threads // w) if a.device == "cpu" else 1
        print(f"| {w} | {thr} | {nl:,} of {N:,} | {tp:.2f} | {tc:.4f} | {tc / tp:.1%} |")
        sys.stdout.flush()
    if 1 in rows and 2 in rows:
        t1, c2 = rows[1][0], rows[2][1]
        print("\nProjection from these measurements (t(n) = t_product(1 process) / n + t_allreduce(2 processes)): "
              + ", ".join(f"{n} devices {t1 / n + c2:.2f} s" for n in (2, 4, 8)))


if __name__ == "__main__":
    main()
