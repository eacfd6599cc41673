"""One conformance suite for every operator route.

Every Operator subclass and every `as_op` route (a tensor, a NumPy array, a function, a SciPy LinearOperator, a curvlinops
operator, sums, scalings, quotients, `sum()`, factor operators, H, G, R and Papyan's class pieces) goes through the same
checks against a dense float64 reference: `@` on a vector and on a block, `.dense()`, `+`, `-`, `*`, `/`, `sum()`,
`.to_scipy()` (matvec, matmat and rmatvec), `.eigh()` where the operator has one, and the same refusals (a vector of the
wrong length, dtype or device, non-finite entries, a dense matrix past the limit).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hessian_nb.operators import FactorOp, Operator, as_op
from hessian_nb.core import Objective
from hessian_nb.gauss_newton import ggn, ggn_op, residual, residual_op
from hessian_nb.class_structure import class_split

D = torch.float64  # every tensor here states its dtype: the session-wide default is left alone
RTOL, ATOL = 1e-10, 1e-12


def problem():
    "A small classifier, float64: N = 12 samples, C = 3 classes, P = 4*5+5 + 5*3+3 = 43 parameters."
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    with torch.no_grad():
        for p in model.parameters(): p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    X = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.arange(12) % 3
    return Objective(model, X, y)


OBJ = problem()
P = OBJ.num_params
H_REF, G_REF, R_REF = OBJ.hessian(), ggn(OBJ), residual(OBJ)
SPLIT = class_split(OBJ)
M = torch.randn(P, P, generator=torch.Generator().manual_seed(1), dtype=D); M = (M + M.T) / 2
F = torch.randn(P, 4, generator=torch.Generator().manual_seed(2), dtype=D)


def scipy_op(A: torch.Tensor):
    from scipy.sparse.linalg import aslinearoperator
    return aslinearoperator(A.numpy())


def curvlinops_op():
    pytest.importorskip("curvlinops")
    from curvlinops import HessianLinearOperator
    params = [p for p in OBJ.model.parameters()]
    return as_op(HessianLinearOperator(OBJ.model, nn.CrossEntropyLoss(), params, [(OBJ.X, OBJ.y)]))


# name -> (a function building the operator, its dense reference)
ROUTES = {
    "tensor": (lambda: as_op(M), M),
    "numpy array": (lambda: as_op(M.numpy()), M),
    "function": (lambda: as_op(lambda V: M @ V, P=P, dtype=torch.float64), M),
    "scipy LinearOperator": (lambda: as_op(scipy_op(M)), M),
    "curvlinops Hessian": (curvlinops_op, H_REF),
    "H": (lambda: OBJ.H, H_REF),
    "G": (lambda: ggn_op(OBJ), G_REF),
    "R": (lambda: residual_op(OBJ), R_REF),
    "factor": (lambda: FactorOp(F), F @ F.T),
    "G's factor": (lambda: ggn_op(OBJ).factor(), G_REF),
    "class piece G1": (lambda: SPLIT.op(1), SPLIT.A1 @ SPLIT.A1.T),
    "class pieces G0+G1+G2": (lambda: SPLIT.op(0, 1, 2), SPLIT.op(0, 1, 2).V @ SPLIT.op(0, 1, 2).V.T),
    "G + R": (lambda: ggn_op(OBJ) + residual_op(OBJ), H_REF),
    "H - G": (lambda: OBJ.H - ggn_op(OBJ), R_REF),
    "2 * H": (lambda: 2 * OBJ.H, 2 * H_REF),
    "H * 0.5": (lambda: OBJ.H * 0.5, 0.5 * H_REF),
    "-G": (lambda: -ggn_op(OBJ), -G_REF),
    "H / 4": (lambda: OBJ.H / 4, H_REF / 4),
    "sum([H, G, M])": (lambda: sum([OBJ.H, ggn_op(OBJ), as_op(M)]), H_REF + G_REF + M),
    "factor + factor": (lambda: FactorOp(F) + FactorOp(F[:, :2]), F @ F.T + F[:, :2] @ F[:, :2].T),
    "H + tensor tensor": (lambda: OBJ.H + as_op(M) - as_op(M), H_REF),
}


@pytest.fixture(params=list(ROUTES), ids=list(ROUTES))
def route(request):
    build, ref = ROUTES[request.param]
    return build(), ref


def test_is_an_operator(route):
    A, ref = route
    assert isinstance(A, Operator) and A.P == P and A.dtype == torch.float64


def test_products_on_a_vector_and_a_block(route):
    A, ref = route
    g = torch.Generator().manual_seed(3)
    v, V = torch.randn(P, generator=g, dtype=D), torch.randn(P, 3, generator=g, dtype=D)
    before = A.products
    torch.testing.assert_close(A @ v, ref @ v, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(A @ V, ref @ V, rtol=RTOL, atol=ATOL)
    assert A.products == before + 4  # counted per column


def test_dense(route):
    A, ref = route
    torch.testing.assert_close(A.dense(), ref, rtol=RTOL, atol=ATOL)


def test_algebra(route):
    A, ref = route
    B = as_op(M)
    for got, want in ((A + B, ref + M), (A - B, ref - M), (3 * A, 3 * ref), (A * -2, -2 * ref), (A / 8, ref / 8),
                      (-A, -ref), (sum([A, B]), ref + M), (A + A, 2 * ref)):
        torch.testing.assert_close(got.dense(), want, rtol=RTOL, atol=ATOL)


def test_to_scipy(route):
    A, ref = route
    S = A.to_scipy()
    x = np.random.default_rng(4).standard_normal((P, 2))
    want = (ref @ torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(S.matvec(x[:, 0]), want[:, 0], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(S.matmat(x), want, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(S.rmatvec(x[:, 1]), want[:, 1], rtol=1e-9, atol=1e-11)  # symmetric: A^T x = A x


def test_eigh_where_defined(route):
    A, ref = route
    if not hasattr(A, "eigh"): pytest.skip("no eigh: use lanczos on it")
    w, U = A.eigh(vectors=True)
    exact = torch.linalg.eigvalsh(ref).flip(0)
    torch.testing.assert_close(w, exact[:len(w)], rtol=1e-9, atol=1e-11)
    assert bool((exact[len(w):].abs() <= 1e-9 * exact[0]).all())  # what it leaves out is zero
    torch.testing.assert_close(ref @ U, U * w, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(U.T @ U, torch.eye(len(w), dtype=D), rtol=0, atol=1e-8)


def test_refusals(route):
    A, ref = route
    with pytest.raises(ValueError, match="shape"):
        A @ torch.randn(P + 1, dtype=D)
    with pytest.raises(ValueError, match="shape"):
        A @ torch.randn(P, 2, 2, dtype=D)
    with pytest.raises(TypeError, match="dtype"):
        A @ torch.randn(P, dtype=torch.float32)
    with pytest.raises(ValueError, match="non-finite"):
        A @ torch.full((P,), float("nan"), dtype=D)
    with pytest.raises(TypeError):
        A + 1
    with pytest.raises(ZeroDivisionError):
        A / 0


def test_dense_past_the_limit_is_refused(route):
    A, ref = route
    A.max_dense_bytes = P * P * 8 - 1  # one byte short of the matrix
    with pytest.raises(MemoryError, match="max_dense_bytes"):
        A.dense()


def test_sums_refuse_mismatched_operators():
    with pytest.raises(ValueError, match="differ in dimension, dtype or device"):
        OBJ.H + as_op(torch.eye(P + 1, dtype=D))
    with pytest.raises(ValueError, match="differ in dimension, dtype or device"):
        OBJ.H + as_op(torch.eye(P, dtype=torch.float32))


def test_class_split_respects_the_objectives_dense_limit():
    small = Objective(OBJ.model, OBJ.X, OBJ.y, max_dense_bytes=P * P * 8 - 1)
    split = class_split(small)
    with pytest.raises(MemoryError, match="max_dense_bytes"):
        split.matrix(1)
    with pytest.raises(MemoryError, match="max_dense_bytes"):
        ggn_op(small).factor().dense()


def test_rank_deficient_factor_eigh():
    "G under cross-entropy has rank at most N(C-1) < N C: the default eigh returns the nonzero pairs only, never huge vectors."
    w, U = ggn_op(OBJ).eigh()
    assert len(w) <= OBJ.N * (OBJ.num_classes - 1)
    assert float(U.norm(dim=0).max()) < 1 + 1e-8
    with pytest.raises(ValueError, match="rank"):
        ggn_op(OBJ).eigh(OBJ.N * OBJ.num_classes)
    for k in (0, -1, OBJ.N * OBJ.num_classes + 1):
        with pytest.raises(ValueError, match="ask for 1 to"):
            ggn_op(OBJ).eigh(k)
