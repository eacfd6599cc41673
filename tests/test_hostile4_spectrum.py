"""The spectral tools' cases from the fourth hostile round: SLQ at any scale, product counts that include the symmetry
check, `density` refusing a sign it does not know, Lanczos on an operator of low rank, and sharded calls that differ
between processes (raised on every process at once by a header at the start of `lanczos`, `slq`, `hutchpp`, never a hang)."""
import datetime
import os
import socket
import time
import traceback
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from hessian_nb.operators import FactorOp, as_op
from hessian_nb.core import Objective
from hessian_nb.gauss_newton import ggn, ggn_op
from hessian_nb.spectrum import density, hutchpp, lanczos, slq
from helpers import raises

D = torch.float64


def spectrum_123(s: float) -> torch.Tensor:
    "A symmetric 30 x 30 matrix with the eigenvalues 1, 2, 3 (ten times each), times s."
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=D))[0]
    return (Q * (torch.tensor([1.0, 2.0, 3.0], dtype=D).repeat(10) * s)) @ Q.T


def counting(M: torch.Tensor):
    "A function operator of M (its symmetry not yet checked) and the list of block widths it was asked for."
    cols = []
    return as_op(lambda V: (cols.append(V.shape[1]), M @ V)[1], P=M.shape[0], dtype=M.dtype), cols


# 1. slq works on A / s, s a power of 2 near |A| (as lanczos does) --------------------------------------------------------

@pytest.mark.parametrize("e", [600, -700])
def test_slq_at_a_power_of_two_scale_is_the_same_quadrature_scaled(e):
    "A times 2^600 (4e180) or 2^-700 (2e-211): the same nodes times 2^e, bit for bit (were NaN, or one node at the mean)."
    ref, q = slq(as_op(spectrum_123(1.0)), probes=2, steps=5), slq(as_op(spectrum_123(2.0 ** e)), probes=2, steps=5)
    assert torch.equal(q.nodes, ref.nodes * 2.0 ** e) and torch.equal(q.weights, ref.weights), (q.nodes, ref.nodes)


@pytest.mark.parametrize("s", [1e-300, 1e-200, 1e-160, 1e160, 1e300])
def test_slq_at_extreme_scales(s):
    "Eigenvalues {1, 2, 3} x s: three nodes at 1, 2, 3 times s, weights summing to 1, the density finite; no product spent sizing A."
    A = as_op(spectrum_123(s))
    q = slq(A, probes=2, steps=5)
    assert q.products == A.products == 2 * 3  # the Krylov space closes after 3 steps; the scale read off the first product
    nodes = q.nodes[q.weights > 1e-12].reshape(2, 3).sort(1).values / s
    torch.testing.assert_close(nodes, torch.tensor([[1.0, 2.0, 3.0]] * 2, dtype=D), rtol=1e-12, atol=0)
    torch.testing.assert_close(q.weights.sum(1), torch.ones(2, dtype=D), rtol=0, atol=1e-12)
    assert torch.isfinite(density(q, torch.tensor([2 * s], dtype=D))).all()


# 2. product counts ----------------------------------------------------------------------------------------------------------

def test_quadrature_products_include_the_symmetry_check():
    "slq on a function operator: 3 probes x 10 steps and the 2 products of its symmetry check, as Eigs.products counts them."
    g = torch.Generator().manual_seed(1)
    B = torch.randn(60, 60, generator=g, dtype=D)
    op, cols = counting(B + B.T)
    q = slq(op, probes=3, steps=10)
    assert q.products == sum(cols) == 3 * 10 + 2, (q.products, sum(cols))
    cols.clear()
    assert slq(op, probes=3, steps=10).products == sum(cols) == 30  # checked once: no second check
    op, cols = counting(B + B.T)
    assert lanczos(op, k=2).products == sum(cols)


def test_hutchpp_spends_its_budget_plus_the_symmetry_check_and_says_so():
    "hutchpp(products=b) spends b - b mod 3, plus 2 on an operator whose symmetry is not yet known: its docstring says so."
    g = torch.Generator().manual_seed(2)
    B = torch.randn(60, 60, generator=g, dtype=D)
    op, cols = counting(B + B.T)
    hutchpp(op, products=31)
    assert sum(cols) == 30 + 2
    cols.clear(); hutchpp(op, products=31)
    assert sum(cols) == 30
    doc = " ".join(hutchpp.__doc__.split())
    assert "products - products % 3" in doc and "plus the 2 of the symmetry check" in doc, doc


# 3. density refuses a sign (or log) it does not know ----------------------------------------------------------------------

@pytest.mark.parametrize("sign", [0, 2, -0.5, True, "+"])
def test_density_refuses_a_sign_other_than_plus_or_minus_one(sign):
    q = slq(as_op(spectrum_123(1.0)), probes=1, steps=5)
    grid = torch.linspace(-1, 1, 5, dtype=D)
    with raises(ValueError, f"sign={sign!r}", "sign=1", "sign=-1"): density(q, grid, log=True, sign=sign)
    with raises(ValueError, "log='yes'"): density(q, grid, log="yes")
    assert density(q, grid, log=True, sign=1).sum() > 0 and (density(q, grid, log=True, sign=-1) == 0).all()


# 5. lanczos on an operator of low rank: each verification block closes after one step ----------------------------------

def _low_rank_cases():
    g = torch.Generator().manual_seed(0)
    V = torch.randn(200, 5, generator=g, dtype=D)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 20), nn.Tanh(), nn.Linear(20, 3)).double()
    obj = Objective(model, torch.randn(6, 5, generator=g, dtype=D), torch.randint(0, 3, (6,), generator=g))
    VV = V @ V.T
    return {"factor rank 5, k = 5": (FactorOp(V), 5, "top", VV), "factor rank 5, k = 4": (FactorOp(V), 4, "top", VV),
            "matrix rank 5, k = 5": (as_op((VV + VV.T) / 2), 5, "top", VV),
            "-matrix rank 5, bottom 5": (as_op(-(VV + VV.T) / 2), 5, "bottom", -VV),
            "G rank 12, k = 2": (ggn_op(obj), 2, "top", ggn(obj)), "G rank 12, k = 10": (ggn_op(obj), 10, "top", ggn(obj))}


@pytest.mark.parametrize("case", list(_low_rank_cases()))
def test_lanczos_on_an_operator_of_low_rank_converges(case):
    """k at most the rank r: converged, right values, a few products (it said NOT converged after 144-168 restarts and
    159-191 products: every verification block closed after one step and had to run as long as the first block)."""
    A, k, which, M = _low_rank_cases()[case]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        e = lanczos(A, k=k, which=which)
    assert not [w for w in caught if "converge" in str(w.message)], [str(w.message) for w in caught]
    w = torch.linalg.eigvalsh(M)
    ref = w.flip(0)[:k] if which == "top" else w[:k]
    assert e.converged and e.products < 40, e
    torch.testing.assert_close(e.values, ref, rtol=0, atol=1e-10 * float(w.abs().max()))


# 4. sharded: processes that make different calls raise together, at once -------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scenarios(rank: int) -> dict:
    "Each scenario runs on both processes in turn (rank 0 and rank 1 doing what it names); its result or error, and seconds."
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(21, 4, generator=g, dtype=D), torch.randint(0, 3, (21,), generator=g)
    s = slice(0, 10) if rank == 0 else slice(10, 21)
    obj = Objective(model, X[s], y[s], group=True)
    out = {}
    for name, fn in (("lanczos on H vs 2 H", lambda: lanczos(obj.H if rank == 0 else 2 * obj.H, k=2)),
                     ("hutchpp bad budget on one", lambda: hutchpp(obj.H, products=30 if rank == 0 else 5)),
                     ("same calls", lambda: (lanczos(obj.H, k=2).values, slq(obj.H, probes=2, steps=5).nodes,
                                             hutchpp(obj.H, products=30)[0])),
                     ("slq probes 2 vs 3", lambda: slq(obj.H, probes=2 + rank, steps=5))):  # last: it used to hang
        t = time.time()
        try: out[name] = ("ok", fn(), time.time() - t)
        except Exception as e: out[name] = ("error", f"{type(e).__name__}: {e}", time.time() - t)
    return out


def _worker(rank: int, world: int, port: int, outdir: str):
    "One process: join the gloo group (with a timeout, so that nothing can hang for long), run the scenarios, save them."
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1", HESSIAN_NB_QUIET="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=30))
    try:
        res = _scenarios(rank)
    except Exception as e:
        res = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
    finally:
        try: dist.barrier()
        except Exception: pass
        dist.destroy_process_group()
    torch.save(res, os.path.join(outdir, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile4_spectrum")
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def _error(res, name):
    for r in (0, 1):
        assert "error" not in res[r], res[r].get("trace")
    return [res[r][name] for r in (0, 1)]


def test_slq_with_other_probes_on_each_process_raises_on_both_at_once(sharded):
    "Was: one process returned, the other waited in its third probe until gloo's timeout (30 min by default)."
    got = _error(sharded, "slq probes 2 vs 3")
    for kind, msg, seconds in got:
        assert kind == "error" and "the processes disagree in their call of slq: they differ in probes." in msg, msg
        assert "Process 0 called slq(probes=2, steps=5, seed=0)" in msg and "Process 1 called slq(probes=3" in msg, msg
        assert seconds < 10, seconds
    assert got[0][1] == got[1][1]  # the same message on both


def test_lanczos_on_operators_that_differ_by_a_scale_raises_on_both(sharded):
    "Was: each process returned its own eigenvalues (those of H, and twice those), no error."
    got = _error(sharded, "lanczos on H vs 2 H")
    for kind, msg, seconds in got:
        assert kind == "error" and "the processes disagree in their call of lanczos: they differ in the operator." in msg, msg
        assert "on HessianOp H" in msg and "2.0 * HessianOp H" in msg and seconds < 10, msg
    assert got[0][1] == got[1][1]


def test_an_argument_error_on_one_process_raises_on_both(sharded):
    for kind, msg, seconds in _error(sharded, "hutchpp bad budget on one"):
        assert kind == "error" and "process 1 of 2 failed" in msg and "budget of at least 6 products, got 5" in msg, msg
        assert seconds < 10


def test_the_same_calls_agree(sharded):
    (k0, a, _), (k1, b, _) = _error(sharded, "same calls")
    assert k0 == k1 == "ok", (a, b)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
