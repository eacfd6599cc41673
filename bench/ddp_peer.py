"""Hessian-vector products over data sharded across 2 processes: hessian_nb's sharded Objective against
hessian-eigenthings' DDPHessianOperator (the only peer with a distributed operator), on gloo, CPU.

Problem: digits MLP 64-32-10 (P = 2,410), 1,000 images, float64, one fixed vector v; the reference is H v over all 1,000
images in one process. Four ways to split the data over 2 processes, each run in 2 fresh processes:

- shards 500/500, each one batch;      - shards 500/500 in batches of 128 (the last 116);
- shards 301/699, each one batch;      - shards 301/699 in batches of 128 (3 batches on one process, 6 on the other).

For each: the relative error of H v against the reference, the collectives per product (torch.distributed.all_reduce calls,
counted), and the time per product (median of 5, after one that builds). Gloo's timeout is 20 s: a split that hangs says so.

    OMP_NUM_THREADS=1 .venv/bin/python bench/ddp_peer.py
"""
import datetime
import os
import socket
import statistics
import time

import torch
import torch.multiprocessing as mp
from sklearn.datasets import load_digits
from torch import nn

SPLITS = {"500/500, one batch each": (500, None), "500/500, batches of 128": (500, 128),
          "301/699, one batch each": (301, None), "301/699, batches of 128": (301, 128)}


def problem():
    torch.manual_seed(0)
    d = load_digits()
    X = torch.tensor(d.data[:1000], dtype=torch.float64) / 16
    y = torch.tensor(d.target[:1000])
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).double()
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return model, X, y, v


def reference():
    from hessian_nb.core import Objective
    model, X, y, v = problem()
    return Objective(model, X, y).H @ v


def _worker(rank, port, first, batch, method, q):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HESSIAN_NB_QUIET="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=20))
    calls = [0]
    orig = dist.all_reduce
    def counted(*a, **k): calls[0] += 1; return orig(*a, **k)
    dist.all_reduce = counted
    model, X, y, v = problem()
    s = slice(0, first) if rank == 0 else slice(first, len(X))
    Xs, ys = X[s], y[s]
    try:
        if method == "hessian_nb":
            from hessian_nb.core import Objective
            obj = Objective(model, Xs, ys, batch_size=batch, group=True)
            product = lambda: obj.H @ v
        else:
            import hessian_eigenthings as he
            n = len(Xs) if batch is None else batch
            batches = [(Xs[i:i + n], ys[i:i + n]) for i in range(0, len(Xs), n)]
            op = he.DDPHessianOperator(model, batches, he.supervised_loss(nn.CrossEntropyLoss()))
            product = lambda: op.matvec(v)
        hv = product()
        calls[0] = 0
        times = []
        for _ in range(5):
            t = time.perf_counter(); hv = product(); times.append(time.perf_counter() - t)
        out = ("ok", hv.detach().numpy().copy(), calls[0] / 5, statistics.median(times))
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        out = ("error", f"{type(e).__name__}: {str(e).splitlines()[0][:120]}", None, None)
    if rank == 0: q.put(out)
    try: dist.barrier(); dist.destroy_process_group()
    except Exception: pass


def run(first, batch, method):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    try:
        mp.start_processes(_worker, args=(port, first, batch, method, q), nprocs=2, join=True, start_method="spawn")
    except Exception as e:  # a process died (e.g. the peer's gloo timeout on the other rank)
        if q.empty(): return ("error", f"{type(e).__name__}: {str(e).splitlines()[0][:120]}", None, None)
    return q.get()


def main():
    ref = reference()
    print("| split | method | rel. error of H v | all_reduce calls / product | ms / product |\n|---|---|---|---|---|")
    for label, (first, batch) in SPLITS.items():
        for method in ("hessian_nb", "hessian-eigenthings DDPHessianOperator"):
            status, hv, calls, t = run(first, batch, method)
            if status == "ok":
                err = float((torch.from_numpy(hv) - ref).norm() / ref.norm())
                print(f"| {label} | {method} | {err:.1e} | {calls:g} | {t * 1e3:.1f} |", flush=True)
            else:
                print(f"| {label} | {method} | failed: {hv} | - | - |", flush=True)


if __name__ == "__main__":
    main()
