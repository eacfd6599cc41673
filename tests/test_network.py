"""Chapter 10's tools against dense float64 references on small networks: blocks, cross blocks, per-block traces with honest
error bars, the diagonal (exact and estimated), ggn_diagonal, and the Tracker's warm start."""
import math

import pytest
import torch
from torch import nn

from hessian_nb.operators import as_op
from hessian_nb.core import Objective
from hessian_nb.gauss_newton import ggn, ggn_diagonal, ggn_op, residual_op
from hessian_nb.network import (Tracker, block_indices, block_table, block_traces, diagonal, loss_along, param_blocks,
                                random_directions, report)
from hessian_nb.spectrum import lanczos

DT = torch.float64


def problem(seed=0, n=24):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
    return model, torch.randn(n, 5, generator=g, dtype=DT), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_blocks_and_cross_blocks_are_the_dense_submatrices(seed):
    obj = Objective(*problem(seed))
    H, G, R = obj.hessian(), ggn(obj), obj.hessian() - ggn(obj)
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.randperm(obj.num_params, generator=g)[:9], torch.randperm(obj.num_params, generator=g)[:5]
    for op, M in ((obj.H, H), (ggn_op(obj), G), (residual_op(obj), R)):
        torch.testing.assert_close(op.block(rows).dense(), M[rows][:, rows], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(op.block(rows, cols).dense(), M[rows][:, cols], rtol=1e-10, atol=1e-12)


def test_a_modules_block_is_its_parameters_and_its_top_eigenvalue_the_dense_ones():
    model, X, y = problem()
    obj = Objective(model, X, y)
    H = obj.hessian()
    b = block_indices(obj, model[2])
    test = torch.arange(36, 78)  # 5*6+6 = 36 parameters before, then 6*6+6 = 42
    assert torch.equal(b, test)
    top = lanczos(obj.H.block(model[2]), k=3).values
    torch.testing.assert_close(top, torch.linalg.eigvalsh(H[b][:, b]).flip(0)[:3], rtol=1e-8, atol=1e-12)


def test_shared_block_traces_have_honest_error_bars():
    "Over 40 seeds, each block's estimate lies within 2 standard errors of the exact trace about 95% of the time."
    obj = Objective(*problem())
    H, blocks = obj.hessian(), param_blocks(obj)
    exact = {lab: float(H[b][:, b].trace()) for lab, b in blocks.items()}
    z = [(t[0] - exact[lab]) / t[1] for s in range(40) for lab, t in block_traces(obj.H, blocks, probes=30, seed=s).items()
         if lab != "(all)"]
    inside = sum(abs(v) <= 2 for v in z) / len(z)
    assert 0.85 <= inside <= 1.0, inside


def test_block_table_traces_partition_the_estimate_and_hutchpp_rows_are_close():
    obj = Objective(*problem())
    H, blocks = obj.hessian(), param_blocks(obj)
    rows = block_table(obj.H, products=300, top=False)  # 100 a block: Hutch++
    for r in rows:
        exact = float(H[blocks[r["block"]]][:, blocks[r["block"]]].trace())
        assert abs(r["trace"] - exact) <= 5 * r["err"] + 1e-10 * abs(exact), (r, exact)
    assert math.isclose(sum(r["share"] for r in rows), 1.0, rel_tol=1e-12)


def test_the_diagonal_exact_and_estimated():
    obj = Objective(*problem())
    H = obj.hessian()
    d, none = diagonal(obj.H, chunk=7)
    torch.testing.assert_close(d, H.diagonal(), rtol=1e-12, atol=1e-14)
    assert none is None
    est, err = diagonal(obj.H, probes=500)
    z = (est - H.diagonal()) / err
    assert float(z.abs().max()) < 6 and 0.7 < float(z.std()) < 1.3
    torch.testing.assert_close(ggn_diagonal(obj), ggn(obj).diagonal(), rtol=1e-12, atol=1e-15)


def test_a_warm_tracker_measures_what_a_cold_one_does():
    model, X, y = problem()
    warm, cold = Tracker(X, y, k=2, every=1, trace_products=0), Tracker(X, y, k=2, every=1, trace_products=0, warm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(4):
        warm(step, model); cold(step, model)
        opt.zero_grad(); nn.functional.cross_entropy(model(X), y).backward(); opt.step()
    for a, b in zip(warm.history, cold.history):
        torch.testing.assert_close(a["top"], b["top"], rtol=1e-6, atol=1e-10)


def test_the_loss_along_a_direction_and_the_report():
    model, X, y = problem()
    obj = Objective(model, X, y)
    v = random_directions(obj, 1)[:, 0]
    L = loss_along(obj, v, [0.0, 0.3])
    assert float(L[0, 0]) == pytest.approx(float(obj.loss()), rel=1e-14)
    assert float(L[1, 0]) == pytest.approx(float(obj.loss(obj.theta + 0.3 * v)), rel=1e-14)
    r = report(model, (X, y), k=4, trace_products=240, block_products=90)
    torch.testing.assert_close(r.top, torch.linalg.eigvalsh(obj.hessian()).flip(0)[:4], rtol=1e-6, atol=1e-10)
