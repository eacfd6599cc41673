"""Sharded and streamed Objectives: 2 gloo processes (uneven shards, odd last batches) give what one process gives over all
the data; a failing process makes every process fail with its message; one all-reduce per product block; a DataLoader,
a Dataset or a list of batches gives what tensors give."""
import datetime
import os
import socket
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hessian_nb.class_structure import averaged_top_space, class_labels, class_means, class_split
from hessian_nb.core import Objective
from hessian_nb.gauss_newton import ggn, ggn_factor, ggn_op, jacobians, residual_op
from hessian_nb.spectrum import density, hutchpp, lanczos, slq

N, SPLIT, B, K = 1000, 301, 128, 3  # shards of 301 and 699 samples; batches of 128 leave odd last batches (45, 59, 104)


def problem(seed: int = 0):
    "A small float64 MLP (P = 212, C = 4) and 1000 samples, the same in every process."
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    X = torch.randn(N, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (N,), generator=g)
    return model, X, y


def block(P: int) -> torch.Tensor:
    return torch.randn(P, K, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def measure(obj: Objective) -> dict:
    "Everything compared between one process and two: products, loss, gradient, class means, Lanczos, SLQ, Hutch++."
    V = block(obj.num_params)
    H = obj.H
    out = {"loss": obj.loss(), "grad": obj.grad(), "HV": H @ V, "GV": ggn_op(obj) @ V, "RV": residual_op(obj) @ V,
           "G": ggn(obj), "dcc": class_means(obj)[0], "shares": class_means(obj)[1], "G1": averaged_top_space(obj, 4)[0]}
    calls, reduce = [], dist.all_reduce if dist.is_initialized() else None
    if reduce is not None:  # count the collectives of one Lanczos run
        dist.all_reduce = lambda *a, **k: (calls.append(1), reduce(*a, **k))[1]
    blocks, matmat = [], H._matmat
    H._matmat = lambda W: (blocks.append(W.shape[1]), matmat(W))[1]
    try: e = lanczos(H, k=10, seed=0)
    finally:
        if reduce is not None: dist.all_reduce = reduce
    q = slq(obj.H, probes=3, steps=25, seed=0)
    out.update(top=e.values, iterations=e.iterations, products=e.products, blocks=len(blocks), columns=sum(blocks),
               reduces=len(calls), nodes=q.nodes, weights=q.weights,
               density=density(q, torch.linspace(float(q.nodes.min()), float(q.nodes.max()), 50), sigma=0.05),
               trace=hutchpp(obj.H, products=30, seed=0)[0])
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, task: str, outdir: str):
    "One process: join the gloo group (with a timeout, so that nothing can hang), run `task`, save its result or its error."
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1", HESSIAN_NB_QUIET="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=30))
    try:
        res = TASKS[task](rank)
    except Exception as e:
        res = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
    torch.save(res, os.path.join(outdir, f"rank{rank}.pt"))  # saved before teardown: nothing below can lose it
    try: dist.barrier()  # every process done before teardown: gloo can abort one whose peer is already gone
    except Exception: pass  # a peer that failed may never arrive; the timeout ends the wait
    # gloo's teardown after a collective that one process abandoned sometimes aborts (SIGABRT, "terminate called
    # without an active exception") at interpreter exit: the result is saved, so leave without it
    os._exit(0)


def shard(rank: int):
    model, X, y = problem()
    s = slice(0, SPLIT) if rank == 0 else slice(SPLIT, N)
    return model, X[s], y[s]


def task_same(rank):
    model, X, y = shard(rank)
    obj = Objective(model, X, y, batch_size=B, group=True)
    out = measure(obj)
    out["N"], out["N_local"] = obj.N, obj.N_local
    loader = DataLoader(TensorDataset(X, y), batch_size=B)  # the shard streamed from a DataLoader: the same products
    s = Objective(model, loader, group=True)
    V = block(s.num_params)
    out.update(HV_stream=s.H @ V, GV_stream=ggn_op(s) @ V, RV_stream=residual_op(s) @ V)
    for what, fn in (("split", class_split), ("factor", ggn_factor), ("jac", jacobians), ("func", lambda o: torch.func.grad(o.loss)(o.theta))):
        try: fn(obj); out[what] = "no error"
        except RuntimeError as e: out[what] = str(e)
    return out


def task_bad_shard(rank):
    model, X, y = shard(rank)
    if rank == 1: X = X.clone(); X[7, 3] = float("nan")
    Objective(model, X, y, batch_size=B, group=True)
    return {"error": None}


def task_bad_params(rank):
    model, X, y = shard(rank)
    if rank == 1:
        with torch.no_grad(): model[0].bias[0] += 1e-3
    Objective(model, X, y, group=True)
    return {"error": None}


def task_fails_mid_lanczos(rank):
    "Rank 1 runs out of memory at its 5th product block: both ranks must raise its error at once, neither wait."
    import time
    model, X, y = shard(rank)
    obj = Objective(model, X, y, group=True)
    H, calls, products = obj.H, [0], obj._products
    def failing(*a):
        calls[0] += 1
        if rank == 1 and calls[0] == 5: raise MemoryError("out of memory (simulated)")
        return products(*a)
    obj._products = failing
    t = time.time()
    try: lanczos(H, k=3)
    except Exception as e: return {"error": f"{type(e).__name__}: {e}", "seconds": time.time() - t}
    return {"error": None}


def task_other_seed(rank):
    model, X, y = shard(rank)
    lanczos(Objective(model, X, y, group=True).H, k=3, seed=rank)  # each rank its own start: not one Krylov space
    return {"error": None}


def task_mixed_dtype(rank):
    model, X, y = shard(rank)
    if rank == 1: model, X = model.float(), X.float()
    Objective(model, X, y, group=True)
    return {"error": None}


def task_other_activation(rank):
    model, X, y = shard(rank)
    if rank == 1: model[1] = nn.Softsign()  # same parameters, another function
    Objective(model, X, y, group=True)
    return {"error": None}


def task_other_loss(rank):
    import torch.nn.functional as F
    model, X, y = shard(rank)
    loss = (lambda z, t: F.cross_entropy(z, t)) if rank == 0 else (lambda z, t: 3 * F.cross_entropy(z, t))
    Objective(model, X, y, loss=loss, group=True)  # both are "<lambda>": compared by value on a probe
    return {"error": None}


def task_different_calls(rank):
    "Each pair is two different things done at once on the two processes; each must raise on both, not mix or hang."
    model, X, y = shard(rank)
    obj = Objective(model, X, y, group=True)
    V, out = block(obj.num_params), {}
    for name, mine in (("H vs G", lambda: obj.H @ V if rank == 0 else ggn_op(obj) @ V),
                       ("grad vs loss", lambda: obj.grad() if rank == 0 else obj.loss()),
                       ("bad V on one", lambda: obj.H @ (V if rank == 0 else V.float())),
                       ("k = 0 on one", lambda: lanczos(obj.H, k=3 if rank == 0 else 0)),
                       ("H vs R", lambda: obj.H @ V if rank == 0 else residual_op(obj) @ V),
                       # a bad argument on one process: checked before the collective, raised on both (it hung)
                       ("bad v in hvp on one", lambda: obj.hvp(V if rank == 0 else V.float())),
                       ("bad theta in loss on one", lambda: obj.loss(obj.theta if rank == 0 else obj.theta[:-1])),
                       ("bad theta in grad on one", lambda: obj.grad(obj.theta if rank == 0 else obj.theta.float())),
                       ("dense limit on one", lambda: dense_with_limit(obj, 2**40 if rank == 0 else 1000)),
                       ("operator dense limit on one", lambda: dense_with_limit(obj, 2**40 if rank == 0 else 1000, op=True)),
                       # G's dense paths and products checked their limits and the model outside the collective (hung)
                       ("G dense limit on one", lambda: ggn_with_limit(obj, 2**40 if rank == 0 else 1000)),
                       ("G operator dense limit on one", lambda: ggn_with_limit(obj, 2**40 if rank == 0 else 1000, op=True))):
        try: mine(); out[name] = "no error"
        except Exception as e: out[name] = f"{type(e).__name__}: {e}"
    return out


def dense_with_limit(obj, limit: int, op: bool = False):
    "obj.hessian() (or obj.H.dense()) under a memory limit of `limit` bytes on this process."
    keep, obj.max_dense_bytes = obj.max_dense_bytes, limit
    try: return obj.H.dense() if op else obj.hessian()
    finally: obj.max_dense_bytes = keep


def ggn_with_limit(obj, limit: int, op: bool = False):
    "ggn(obj) (or ggn_op(obj).dense()) under a memory limit of `limit` bytes on this process."
    keep, obj.max_dense_bytes = obj.max_dense_bytes, limit
    try: return ggn_op(obj).dense() if op else ggn(obj)
    finally: obj.max_dense_bytes = keep


def task_edited_on_one(rank):
    "A model edited after construction on one process: every product that checks it must raise on both, not hang."
    out = {}
    for name, call in (("G @ V", lambda o: ggn_op(o) @ block(o.num_params)), ("ggn", ggn),
                       ("class means", class_means), ("residual", lambda o: residual_op(o) @ block(o.num_params))):
        model, X, y = shard(rank)
        obj = Objective(model, X, y, group=True)
        if rank == 1:
            model[1] = nn.Softsign()  # another layer: another model
        try: call(obj); out[name] = "no error"
        except Exception as e: out[name] = f"{type(e).__name__}: {e}"
    return out


def task_frozen_rows_differ(rank):
    "Equal trainable parameters, frozen embedding rows that differ (the probe batch's tokens do not reach them)."
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 3), nn.Flatten(), nn.Tanh(), nn.Linear(6, 4)).double()
    model[0].weight.requires_grad_(False)
    if rank == 1:
        with torch.no_grad(): model[0].weight[2:] += 0.5
    ids = torch.randint(0, 10, (N, 2), generator=torch.Generator().manual_seed(0))
    s = slice(0, SPLIT) if rank == 0 else slice(SPLIT, N)
    Objective(model, ids[s], (torch.arange(N) % 4)[s], group=True)
    return {"error": None}


def task_embedding_models_differ(rank):
    ids = torch.randint(0, 7, (N, 2), generator=torch.Generator().manual_seed(0))
    y = torch.arange(N) % 4
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(7, 3), nn.Flatten(), nn.Tanh() if rank == 0 else nn.Softsign(), nn.Linear(6, 4)).double()
    s = slice(0, SPLIT) if rank == 0 else slice(SPLIT, N)
    Objective(model, ids[s], y[s], group=True)
    return {"error": None}


def task_overlapping_shards(rank):
    model, X, y = problem()
    s = slice(0, 600) if rank == 0 else slice(400, N)  # 200 samples on both
    Objective(model, X[s], y[s], group=True)
    return {"error": None}


def task_off_by_one_shards(rank, shared=1):
    model, X, y = problem()
    s = slice(0, SPLIT + shared) if rank == 0 else slice(SPLIT, N)  # the boundary sample(s) on both: an off-by-one slice
    Objective(model, X[s], y[s], group=True)
    return {"error": None}


TASKS = {"off_by_one": task_off_by_one_shards, "off_by_two": lambda rank: task_off_by_one_shards(rank, 2),
         "other_loss": task_other_loss, "different_calls": task_different_calls,
         "embedding_models_differ": task_embedding_models_differ, "overlapping_shards": task_overlapping_shards,
         "same": task_same, "bad_shard": task_bad_shard, "bad_params": task_bad_params,
         "fails_mid_lanczos": task_fails_mid_lanczos, "other_seed": task_other_seed, "mixed_dtype": task_mixed_dtype,
         "other_activation": task_other_activation, "edited_on_one": task_edited_on_one,
         "frozen_rows_differ": task_frozen_rows_differ}


def spawn(task: str, tmp_path, world: int = 2) -> list:
    mp.spawn(_worker, args=(world, free_port(), task, str(tmp_path)), nprocs=world, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    return spawn("same", tmp_path_factory.mktemp("same"))


@pytest.fixture(scope="module")
def one():
    model, X, y = problem()
    return measure(Objective(model, X, y, batch_size=B))


def rel(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


KEYS = ["loss", "grad", "HV", "GV", "RV", "G", "dcc", "shares", "G1", "top", "nodes", "weights", "density", "trace"]


@pytest.mark.parametrize("key", KEYS)
def test_two_processes_equal_one(two, one, key):
    assert "error" not in two[0] and "error" not in two[1], (two[0].get("trace"), two[1].get("trace"))
    for r in (0, 1):
        assert rel(two[r][key], one[key]) < 1e-12, (key, r, rel(two[r][key], one[key]))
    assert torch.equal(torch.as_tensor(two[0][key]), torch.as_tensor(two[1][key]))  # replicated state: identical bits


def test_shards_uneven_and_counted(two):
    assert (two[0]["N"], two[0]["N_local"], two[1]["N_local"]) == (N, SPLIT, N - SPLIT)


def test_streamed_shards_equal_tensor_shards(two):
    for r in (0, 1):
        for k in ("HV", "GV", "RV"):
            assert rel(two[r][f"{k}_stream"], two[r][k]) < 1e-13


def test_one_all_reduce_per_product_block(two, one):
    for r in (0, 1):
        t = two[r]
        assert t["reduces"] == t["blocks"]  # one collective per block, whatever its width
        assert t["columns"] == t["products"]  # every product counted once
        assert t["products"] == one["products"] and t["iterations"] == one["iterations"]
        # one product per Lanczos step, plus the scale (1), H's symmetry check (one block of 2: a PyTorch operation with
        # a wrong double backward gives an asymmetric "Hessian") and the measured residuals (one block of 10)
        assert t["blocks"] == t["iterations"] + 3 and t["columns"] == t["iterations"] + 1 + 2 + 10


def test_per_sample_results_refused_on_shards(two):
    assert "class_split(obj)" in two[0]["split"] and "class_means(obj)" in two[0]["split"]
    for k in ("factor", "jac", "func"):
        assert "not available on a sharded Objective" in two[0][k], two[0][k]


def test_a_failing_process_fails_all(tmp_path):
    res = spawn("bad_shard", tmp_path)
    for r in (0, 1):
        assert res[r]["error"] is not None and "process 1 of 2 failed" in res[r]["error"], res[r]
        assert "X contains 1 non-finite value(s)" in res[r]["error"]


def test_different_parameters_refused(tmp_path):
    res = spawn("bad_params", tmp_path)
    for r in (0, 1):
        assert res[r]["error"] is not None and "parameters differ between processes" in res[r]["error"], res[r]


def test_a_process_failing_mid_lanczos_fails_all_at_once(tmp_path):
    res = spawn("fails_mid_lanczos", tmp_path)
    for r in (0, 1):
        assert res[r]["error"] and "process 1 of 2 failed: MemoryError: out of memory (simulated)" in res[r]["error"], res[r]
        assert res[r]["seconds"] < 15  # within seconds, not the 30 s gloo timeout


def test_processes_with_other_random_blocks_refused(tmp_path):
    res = spawn("other_seed", tmp_path)
    for r in (0, 1):
        assert res[r]["error"] and "they differ in seed" in res[r]["error"], res[r]  # named: the seed, in the header


@pytest.mark.parametrize("task, says", [("mixed_dtype", "dtype (bytes per parameter) is [8, 4]"),
                                        ("other_activation", "seeded probe batch")])
def test_models_that_differ_refused_at_construction(tmp_path, task, says):
    res = spawn(task, tmp_path)
    for r in (0, 1):
        assert res[r]["error"] and says in res[r]["error"], res[r]


@pytest.mark.parametrize("task, says", [("other_loss", "the loss differs between processes"),
                                        ("embedding_models_differ", "seeded probe batch"),
                                        ("overlapping_shards", "200 samples appear on more than one process"),
                                        ("off_by_one", "the shards overlap where they meet"),
                                        ("off_by_two", "the shards overlap where they meet")])
def test_shards_that_are_not_one_objective_refused(tmp_path, task, says):
    res = spawn(task, tmp_path)
    for r in (0, 1):
        assert res[r]["error"] and says in res[r]["error"], res[r]


def test_different_calls_at_once_raise_on_both(tmp_path):
    res = spawn("different_calls", tmp_path)
    assert "error" not in res[0] and "error" not in res[1], res
    for name in res[0]:
        for r in (0, 1):
            assert res[r][name] != "no error", (name, r, res[r][name])
    for r in (0, 1):
        assert "not running the same computation" in res[r]["H vs G"] and "not running the same" in res[r]["grad vs loss"]
        assert "process 1 of 2 failed" in res[r]["bad V on one"] and "process 1 of 2 failed" in res[r]["k = 0 on one"]
        for name in ("bad v in hvp on one", "bad theta in loss on one", "bad theta in grad on one", "dense limit on one",
                     "operator dense limit on one", "G dense limit on one", "G operator dense limit on one"):
            assert "process 1 of 2 failed" in res[r][name], (name, r, res[r][name])


def test_a_model_edited_on_one_process_raises_on_both(tmp_path):
    "G products, dense G, class means and the residual check the model inside the collective: both raise, none hangs."
    res = spawn("edited_on_one", tmp_path)
    for name in ("G @ V", "ggn", "class means", "residual"):
        for r in (0, 1):
            assert "process 1 of 2 failed" in res[r][name] and "the model changed" in res[r][name], (name, r, res[r][name])


def test_frozen_tensors_that_differ_between_processes_are_refused(tmp_path):
    res = spawn("frozen_rows_differ", tmp_path)
    for r in (0, 1):
        assert "buffers or frozen parameters differ between processes" in res[r]["error"], res[r]


def test_group_needs_init():
    model, X, y = problem()
    with pytest.raises(RuntimeError, match="needs torch.distributed initialised"):
        Objective(model, X, y, group=True)


# ---- streaming, one process ----

@pytest.fixture(scope="module")
def tensor_obj():
    model, X, y = problem()
    return Objective(model, X[:203], y[:203])


@pytest.mark.parametrize("kind", ["loader", "dataset", "list"])
def test_stream_equals_tensors(tensor_obj, kind):
    model, X, y = problem()
    X, y = X[:203], y[:203]
    src = {"loader": lambda: DataLoader(TensorDataset(X, y), batch_size=50), "dataset": lambda: TensorDataset(X, y),
           "list": lambda: [(X[i:i + 64], y[i:i + 64]) for i in range(0, 203, 64)]}[kind]()
    s = Objective(model, src, batch_size=50 if kind == "dataset" else None)
    assert s.N == 203 and len(s.batches) == {"loader": 5, "dataset": 5, "list": 4}[kind] and "streamed" in repr(s)
    V, o = block(s.num_params), tensor_obj
    for a, b in ((s.loss(), o.loss()), (s.grad(), o.grad()), (s.H @ V, o.H @ V), (ggn_op(s) @ V, ggn_op(o) @ V),
                 (residual_op(s) @ V, residual_op(o) @ V), (ggn(s), ggn(o)), (ggn_factor(s), ggn_factor(o)),
                 (class_means(s)[0], class_means(o)[0]), (class_labels(s), class_labels(o)), (s.hessian(), o.hessian())):
        assert rel(a, b) < 1e-12
    torch.testing.assert_close(class_split(s).A3, class_split(o).A3, rtol=1e-12, atol=1e-14)


def test_stream_mse_one_hot_and_float32():
    model, X, y = problem()
    m32 = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    s = Objective(m32, DataLoader(TensorDataset(X[:90], y[:90]), batch_size=40), loss="mse")  # float64 data cast to float32
    o = Objective(m32, X[:90].float(), y[:90], loss="mse")
    V = block(s.num_params).float()
    torch.testing.assert_close(s.H @ V, o.H @ V, rtol=1e-4, atol=1e-6)


def test_stream_errors():
    model, X, y = problem()
    ds = TensorDataset(X[:20], y[:20])
    with pytest.raises(TypeError, match="one-shot iterator"):
        Objective(model, ((X[i:i + 5], y[i:i + 5]) for i in range(0, 20, 5)))
    with pytest.raises(ValueError, match="a DataLoader makes its own batches"):
        Objective(model, DataLoader(ds, batch_size=5), batch_size=5)
    with pytest.raises(TypeError, match="must be a pair"):
        Objective(model, [(X[:5], y[:5], y[:5])])
    with pytest.raises(ValueError, match="y is missing"):
        Objective(model, X[:5])
    with pytest.raises(ValueError, match="labels must lie in 0..3"):
        Objective(model, [(X[:5], y[:5]), (X[5:9], y[5:9] + 4)])
    with pytest.raises(ValueError, match="yielded no batch"):
        Objective(model, [])
    with pytest.raises(ValueError, match="non-finite"):
        Xn = X[:10].clone(); Xn[8, 0] = float("inf")
        Objective(model, DataLoader(TensorDataset(Xn, y[:10]), batch_size=4))
    data = [(X[:5], y[:5]), (X[5:9], y[5:9])]
    s = Objective(model, data)
    data.append((X[9:12], y[9:12]))  # the source changed after construction: a pass yields a different count
    with pytest.raises(RuntimeError, match="yielded 12 samples in this pass but 9"):
        s.H @ block(s.num_params)
    sh = Objective(model, DataLoader(ds, batch_size=5, shuffle=True))
    with pytest.raises(ValueError, match="shuffle=False"):
        ggn_factor(sh)
    from torch.utils.data import DistributedSampler  # padding 19 samples to 20 for two processes: refused
    odd = TensorDataset(X[:19], y[:19])
    with pytest.raises(ValueError, match="pads the data: 19 samples over 2 processes become 20"):
        Objective(model, DataLoader(odd, batch_size=5, sampler=DistributedSampler(odd, num_replicas=2, rank=0)))
    with pytest.raises(ValueError, match="streamed Objective reads its targets"):
        sh.with_loss("mse", y[:20])
