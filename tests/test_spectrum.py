"""The spectrum tools on cases the chapter does not use, and their bad input."""
import math
import warnings

import pytest
import torch

from hessian_nb.core import Objective, toy_problem
from hessian_nb.spectrum import SymOp, count_outliers, curvature, density, hutchpp, lanczos, slq, wasserstein1
from helpers import raises

DT = torch.float64


def sym(P=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(P, P, dtype=DT, generator=g)
    return (B + B.T) / 2


def test_repeated_eigenvalues_are_all_found():
    "An eigenvalue of multiplicity 3: a Krylov space holds one copy; the restart after breakdown finds the others."
    Q, _ = torch.linalg.qr(torch.randn(40, 40, dtype=DT, generator=torch.Generator().manual_seed(1)))
    w = torch.cat([torch.full((3,), 5.0, dtype=DT), torch.linspace(-1, 1, 37, dtype=DT)])
    e = lanczos((Q * w) @ Q.T, k=4)
    assert e.converged
    torch.testing.assert_close(e.values, torch.tensor([5.0, 5.0, 5.0, 1.0], dtype=DT), rtol=1e-8, atol=1e-8)


def test_identity_and_full_space():
    e = lanczos(torch.eye(7, dtype=DT) * 2, k=7)
    torch.testing.assert_close(e.values, torch.full((7,), 2.0, dtype=DT))
    A = sym(12)
    e = lanczos(A, k=12, which="bottom")  # k = P: the whole spectrum
    torch.testing.assert_close(e.values, torch.linalg.eigvalsh(A), rtol=1e-10, atol=1e-10)


def test_float32_operator():
    model, X, y = toy_problem("mlp", dtype=torch.float32)
    obj = Objective(model, X, y)
    e = lanczos(obj, k=3, tol=1e-5)
    ref = torch.linalg.eigvalsh(obj.hessian().double()).flip(0)[:3]
    assert e.values.dtype == torch.float32 and e.vectors.dtype == torch.float32
    torch.testing.assert_close(e.values.double(), ref, rtol=1e-4, atol=1e-6)


def test_function_operand_and_curvatures():
    model, X, y = toy_problem("cnn")
    obj = Objective(model, X, y)
    H = obj.hessian()
    e = lanczos(lambda v: H @ v, k=3, P=obj.num_params, dtype=DT)
    torch.testing.assert_close(e.values, torch.linalg.eigvalsh(H).flip(0)[:3], rtol=1e-8, atol=1e-12)
    from hessian_nb.gauss_newton import ggn, residual
    for which, M, end in (("G", ggn(obj), "top"), ("R", residual(obj), "bottom")):  # (G's bottom is its null space: see the chapter)
        e = lanczos(curvature(obj, which), k=3, which=end)
        ref = torch.linalg.eigvalsh(M)
        torch.testing.assert_close(e.values, ref.flip(0)[:3] if end == "top" else ref[:3], rtol=1e-7, atol=1e-10)


def test_products_are_counted():
    op = SymOp(sym())
    e = lanczos(op, k=2, check=False)
    assert op.products == e.products == e.iterations


def test_k_out_of_range():
    with raises(ValueError, "k=61 eigenpairs asked of a 60 x 60 operator", "1..60"): lanczos(sym(), k=61)
    with raises(ValueError, "k=0"): lanczos(sym(), k=0)
    with raises(ValueError, "k=2.5"): lanczos(sym(), k=2.5)


def test_not_symmetric():
    A = sym() + torch.triu(torch.ones(60, 60, dtype=DT), 1)
    with raises(ValueError, "is not symmetric", "(A + A^T) / 2"): lanczos(A)


def test_nan_from_a_product():
    calls, A = [], sym(30)
    def f(v):
        calls.append(1)
        return (A @ v) * (float("nan") if len(calls) > 5 else 1.0)
    with raises(ValueError, "the product (product 7) contains", "non-finite", "diverged run"):
        lanczos(f, k=10, P=30, dtype=DT)  # the symmetry check uses 2 products, then one per step


def test_wrong_operands():
    with raises(TypeError, "A must be an Objective, a square tensor or a function"): lanczos("H")
    with raises(ValueError, "must be square"): lanczos(torch.ones(3, 4))
    with raises(ValueError, "needs its dimension: pass P="): lanczos(lambda v: v)
    with raises(ValueError, "returned (3, 2) for an input of shape (4, 2)"): lanczos(lambda v: v[:3], k=1, P=4)
    with raises(ValueError, "use 'H' (Hessian), 'G'"): curvature(Objective(*toy_problem()), "Hessian")


def test_non_convergence_warns_with_best_estimates():
    A = torch.diag(torch.linspace(0, 1, 500, dtype=DT))  # evenly spaced: slow
    with pytest.warns(UserWarning, match=r"did not converge in 20 steps \(22 products\).*raise max_iter or loosen tol"):
        e = lanczos(A, k=5, max_iter=20)
    assert not e.converged and e.values.shape == (5,) and e.values[0] <= 1 + 1e-12


def test_slq_and_hutchpp_arguments():
    with raises(ValueError, "probes >= 1 and steps in 1..P = 60"): slq(sym(), probes=0)
    with raises(ValueError, "steps in 1..P = 60"): slq(sym(), steps=61)
    with raises(ValueError, "at least 6 products, got 5"): hutchpp(sym(), 5)


def test_slq_exact_when_the_krylov_space_closes():
    "A matrix with 3 distinct eigenvalues: 3 steps integrate exactly, and more steps change nothing."
    A = torch.diag(torch.tensor([1.0] * 20 + [2.0] * 20 + [4.0] * 20, dtype=DT))
    q = slq(A, probes=4, steps=10)
    assert (q.weights > 1e-14).sum(1).max() <= 3
    assert wasserstein1(q.nodes, torch.diag(A), q.weights) < 0.25  # only the weights are random (1/3 each on average)
    t = torch.linspace(-2, 8, 100001, dtype=DT)
    assert abs(float(density(q, t, sigma=0.1).sum() * (t[1] - t[0])) - 1) < 1e-6


def test_hutchpp_exact_for_low_rank():
    "rank(A) <= a third of the budget: the sketch holds all of A and the estimate is exact."
    g = torch.Generator().manual_seed(2)
    U = torch.randn(80, 5, dtype=DT, generator=g)
    est, se = hutchpp(U @ U.T, products=30)
    assert abs(est - float((U * U).sum())) < 1e-9 and se < 1e-9


def test_wasserstein1():
    x = torch.tensor([0.0, 1.0])
    assert abs(wasserstein1(x, x + 0.5) - 0.5) < 1e-12
    assert abs(wasserstein1(torch.tensor([0.0]), torch.tensor([0.0, 2.0])) - 1.0) < 1e-12


@pytest.mark.parametrize("eigs,count", [(torch.tensor([]), 0), (-torch.ones(5), 0), (torch.tensor([1.0, 0.0, 0.0]), 0),
                                        (torch.tensor([100.0, 99.0] + [1.0 - 0.01 * i for i in range(20)]), 2)])
def test_count_outliers_edge_cases(eigs, count):
    assert count_outliers(eigs) == count
