"""The spectrum tools on cases the chapter does not use, and their bad input."""
import math
import warnings

import pytest
import torch

from hessian_nb.operators import FunctionOp, as_op
from hessian_nb.core import Objective, toy_problem
from hessian_nb.gauss_newton import ggn_op, residual_op
from hessian_nb.spectrum import count_outliers, density, hutchpp, lanczos, slq, wasserstein1
from helpers import raises

DT = torch.float64


def sym(P=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(P, P, dtype=DT, generator=g)
    return as_op((B + B.T) / 2)


def spectrum_matrix(w, seed=1):
    Q, _ = torch.linalg.qr(torch.randn(len(w), len(w), dtype=DT, generator=torch.Generator().manual_seed(seed)))
    return (Q * w) @ Q.T


def test_repeated_eigenvalues_are_all_found():
    "An eigenvalue of multiplicity 3: a Krylov space holds one copy; the restart after breakdown finds the others."
    w = torch.cat([torch.full((3,), 5.0, dtype=DT), torch.linspace(-1, 1, 37, dtype=DT)])
    e = lanczos(as_op(spectrum_matrix(w)), k=4)
    assert e.converged
    torch.testing.assert_close(e.values, torch.tensor([5.0, 5.0, 5.0, 1.0], dtype=DT), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("mult", [2, 3, 4, 5])
def test_multiplicities_at_P_600(mult):
    "P = 600 does not fill up: without the verification restart the copies are missed and 'converged' is said anyway."
    w = torch.cat([torch.full((mult,), 10.0, dtype=DT), torch.tensor([9.0, 8.5], dtype=DT), torch.linspace(-1, 5, 598 - mult, dtype=DT)])
    k = mult + 1
    e = lanczos(as_op(spectrum_matrix(w, seed=mult)), k=k, max_iter=400)
    assert e.converged, e
    torch.testing.assert_close(e.values, torch.tensor([10.0] * mult + [9.0], dtype=DT), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("top,k", [([1.0, 1.0, 0.9, 0.8], 3), ([1.0, 0.9, 0.8, 0.8], 4), ([1.0, 0.95, 0.95, 0.95], 4)])
def test_repeated_eigenvalue_above_a_tight_bulk_at_P_100000(top, k):
    """A large operator whose other eigenvalues crowd near zero (a Hessian's bulk). A fresh block's first Ritz value then
    sits in the bulk with a tiny residual, so a verification that stops once that value has converged ends after one step
    and misses the copy (it returned [1, 0.9, 0.8] and 'converged' here); each block must run as long as the first took to
    place its extreme pair."""
    P = 100_000
    d = torch.rand(P, dtype=DT, generator=torch.Generator().manual_seed(0)) * 1e-3
    d[:4] = torch.tensor(top, dtype=DT)
    e = lanczos(FunctionOp(lambda V: d[:, None] * V, P, DT), k=k, tol=1e-6, vectors=False)
    assert e.converged, e
    torch.testing.assert_close(e.values, torch.tensor(top[:k], dtype=DT), rtol=1e-6, atol=1e-6)


def test_a_verification_that_finds_nothing_returns_the_answer_it_checked():
    """The checking block only looks: mixed into the Ritz pairs, its vectors made the converged pairs' residual bounds creep
    back over tol, and on the ResNet of bench/scale.py (P = 1,022,716, 20 images, tol 1e-3) the check ran to max_iter and
    said 'NOT converged'. With nothing found, the answer is bit for bit the one verify=False returns."""
    P = 20_000
    d = torch.rand(P, dtype=DT, generator=torch.Generator().manual_seed(0)) * 0.65
    d[:12] = torch.linspace(1.0, 0.70, 12, dtype=DT)
    op = FunctionOp(lambda V: d[:, None] * V, P, DT)
    checked, plain = lanczos(op, k=10, tol=1e-2, vectors=False), lanczos(op, k=10, tol=1e-2, vectors=False, verify=False)
    assert checked.converged and checked.blocks == 2 and checked.products > plain.products
    assert torch.equal(checked.values, plain.values)  # the residuals are divided by the estimate of |A|, which the
    torch.testing.assert_close(checked.residuals, plain.residuals, rtol=1e-12, atol=0)  # check may raise in the last bits


@pytest.mark.parametrize("tol", [0.1, 0.03])
def test_an_eigenvalue_the_first_phase_missed_is_taken_in_and_converged(tol):
    """At a loose tol the first phase can stop with a crowded top not yet sorted out: the check finds an eigenvalue beyond
    the k-th. The enlarged set can only converge if the first phase's Krylov sequence is continued where it paused (its
    open column); without that the run went to max_iter (203 products) and said 'NOT converged'. And an eigenvalue counts
    as missed only if it lies beyond the k-th by more than its residual and tol: with 'within its residual of it', at
    tol 0.1 every check block in this crowd 'found' one and the run never ended."""
    P = 20_000
    d = torch.rand(P, dtype=DT, generator=torch.Generator().manual_seed(0)) * 0.3
    d[:30] = torch.linspace(1.0, 0.5, 30, dtype=DT)
    e = lanczos(FunctionOp(lambda V: d[:, None] * V, P, DT), k=10, tol=tol, vectors=False, max_iter=200)
    assert e.converged and e.blocks > 2 and e.products < 100, e
    assert float((e.values - d[:10]).abs().max()) <= tol


def test_mse_linear_model_repeats_every_eigenvalue():
    "The issue's reproducer: a linear model with squared error has every Hessian eigenvalue C times."
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(50, 6, dtype=DT, generator=g), torch.randn(50, 4, dtype=DT, generator=g)
    torch.manual_seed(0)
    obj = Objective(torch.nn.Linear(6, 4).double(), X, Y, loss="mse")
    e = lanczos(obj.H, k=2)
    ref = torch.linalg.eigvalsh(obj.hessian()).flip(0)[:2]
    assert e.converged
    torch.testing.assert_close(e.values, ref, rtol=1e-10, atol=1e-12)
    assert abs(float(ref[0] - ref[1])) < 1e-12  # it is a repeated eigenvalue


def test_bottom_of_rank_one_and_tiny_and_zero_operators():
    u = torch.randn(100, 1, dtype=DT, generator=torch.Generator().manual_seed(0))
    e = lanczos(as_op(u @ u.T), k=3, which="bottom")
    assert e.converged and float(e.values.abs().max()) < 1e-10 * float(u.norm() ** 2)
    e = lanczos(as_op(torch.diag(torch.arange(1.0, 11.0, dtype=DT)) * 1e-170), k=3)
    torch.testing.assert_close(e.values, torch.tensor([10.0, 9.0, 8.0], dtype=DT) * 1e-170, rtol=1e-10, atol=0)
    e = lanczos(as_op(torch.zeros(20, 20, dtype=DT)), k=3)
    assert e.converged and bool((e.values == 0).all())


def test_scipy_eigsh_agrees_with_lanczos_and_foreign_operators_are_taken():
    from scipy.sparse.linalg import aslinearoperator, eigsh
    A = sym(80)
    ref = torch.tensor(sorted(eigsh(A.to_scipy(), k=5, which="LA", tol=1e-12)[0], reverse=True), dtype=DT)
    torch.testing.assert_close(lanczos(A, k=5).values, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(lanczos(aslinearoperator(A.M.numpy()), k=5).values, ref, rtol=1e-9, atol=1e-12)


def test_identity_and_full_space():
    e = lanczos(as_op(torch.eye(7, dtype=DT) * 2), k=7)
    torch.testing.assert_close(e.values, torch.full((7,), 2.0, dtype=DT))
    A = sym(12)
    e = lanczos(A, k=12, which="bottom")  # k = P: the whole spectrum
    torch.testing.assert_close(e.values, torch.linalg.eigvalsh(A.M), rtol=1e-10, atol=1e-10)


def test_float32_operator():
    model, X, y = toy_problem("mlp", dtype=torch.float32)
    obj = Objective(model, X, y)
    e = lanczos(obj.H, k=3, tol=1e-10)  # below what float32 resolves: raised to 100 eps, and the residuals are measured
    ref = torch.linalg.eigvalsh(obj.hessian().double()).flip(0)[:3]
    assert e.values.dtype == torch.float32 and e.vectors.dtype == torch.float32
    torch.testing.assert_close(e.values.double(), ref, rtol=1e-4, atol=1e-6)
    Hd = obj.hessian().double()
    true = (Hd @ e.vectors.double() - e.vectors.double() * e.values.double()).norm(dim=0) / float(ref.abs().max())
    assert bool((e.residuals >= 0.1 * true).all()), (e.residuals, true)  # reported residuals are not optimistic


def test_function_operand_and_curvatures():
    model, X, y = toy_problem("cnn")
    obj = Objective(model, X, y)
    H = obj.hessian()
    e = lanczos(as_op(lambda V: H @ V, P=obj.num_params, dtype=DT), k=3)
    torch.testing.assert_close(e.values, torch.linalg.eigvalsh(H).flip(0)[:3], rtol=1e-8, atol=1e-12)
    from hessian_nb.gauss_newton import ggn, residual
    for which, M, end in (("G", ggn(obj), "top"), ("R", residual(obj), "bottom")):  # (G's bottom is its null space: see the chapter)
        e = lanczos({"G": ggn_op, "R": residual_op}[which](obj), k=3, which=end)
        ref = torch.linalg.eigvalsh(M)
        torch.testing.assert_close(e.values, ref.flip(0)[:3] if end == "top" else ref[:3], rtol=1e-7, atol=1e-10)


def test_products_are_counted():
    op = sym()
    e = lanczos(op, k=2, verify=False, vectors=False)
    assert op.products == e.products == e.iterations + 1  # one product sizes the operator (the run works on A / 2^j)


def test_k_out_of_range():
    with raises(ValueError, "k=61 eigenpairs asked of a 60 x 60 operator", "1..60"): lanczos(sym(), k=61)
    with raises(ValueError, "k=0"): lanczos(sym(), k=0)
    with raises(ValueError, "k=2.5"): lanczos(sym(), k=2.5)


def test_not_symmetric():
    A = sym().M + torch.triu(torch.ones(60, 60, dtype=DT), 1)
    with raises(ValueError, "is not symmetric"): as_op(A)
    with raises(ValueError, "is not symmetric", "(A + A^T) / 2"): lanczos(as_op(lambda V: A @ V, P=60, dtype=DT))
    with raises(ValueError, "is not symmetric"): slq(as_op(lambda V: A @ V, P=60, dtype=DT))
    with raises(ValueError, "is not symmetric"): hutchpp(as_op(lambda V: A @ V, P=60, dtype=DT))


def test_nan_from_a_product():
    calls, A = [], sym(30).M
    def f(v):
        calls.append(1)
        return (A @ v) * (float("nan") if len(calls) > 5 else 1.0)
    with raises(ValueError, "the function (product 7) contains", "non-finite", "diverged run"):
        lanczos(as_op(f, P=30, dtype=DT), k=10)


def test_wrong_operands():
    with raises(TypeError, "got str"): lanczos("H")
    with raises(TypeError, "as_op(M)"): lanczos(torch.ones(3, 3))
    with raises(TypeError, "pass obj.H"): lanczos(Objective(*toy_problem()))
    with raises(TypeError, "as_op(fn, P="): lanczos(lambda v: v)
    with raises(ValueError, "must be square"): as_op(torch.ones(3, 4))
    with raises(ValueError, "needs its dimension: pass P="): as_op(lambda v: v)
    with raises(ValueError, "returned (3, 2)"): lanczos(as_op(lambda V: V[:3], P=4, dtype=DT), k=1)
    with raises(ValueError, "max_iter=-5"): lanczos(sym(), max_iter=-5)


def test_non_convergence_warns_with_best_estimates():
    A = as_op(torch.diag(torch.linspace(0, 1, 500, dtype=DT)))  # evenly spaced: slow
    with pytest.warns(UserWarning, match=r"did not converge in 20 steps \(26 products, 1 block\(s\)\).*raise max_iter or loosen tol"):
        e = lanczos(A, k=5, max_iter=20)
    assert not e.converged and e.values.shape == (5,) and e.values[0] <= 1 + 1e-12


def test_slq_and_hutchpp_arguments():
    with raises(ValueError, "probes >= 1 and steps in 1..P = 60"): slq(sym(), probes=0)
    with raises(ValueError, "steps in 1..P = 60"): slq(sym(), steps=61)
    with raises(ValueError, "steps=2.5"): slq(sym(), steps=2.5)
    with raises(ValueError, "at least 6 products, got 5"): hutchpp(sym(), 5)
    with raises(ValueError, "got 7.5"): hutchpp(sym(), 7.5)
    q = slq(sym(), probes=1, steps=5)
    with raises(ValueError, "sigma=-1"): density(q, torch.zeros(3, dtype=DT), sigma=-1)


def test_slq_exact_when_the_krylov_space_closes():
    "A matrix with 3 distinct eigenvalues: 3 steps integrate exactly, and more steps change nothing."
    A = torch.diag(torch.tensor([1.0] * 20 + [2.0] * 20 + [4.0] * 20, dtype=DT))
    q = slq(as_op(A), probes=4, steps=10)
    assert (q.weights > 1e-14).sum(1).max() <= 3
    assert wasserstein1(q.nodes, torch.diag(A), q.weights) < 0.25  # only the weights are random (1/3 each on average)
    t = torch.linspace(-2, 8, 100001, dtype=DT)
    assert abs(float(density(q, t, sigma=0.1).sum() * (t[1] - t[0])) - 1) < 1e-6


def test_hutchpp_exact_for_low_rank():
    "rank(A) <= a third of the budget: the sketch holds all of A and the estimate is exact."
    g = torch.Generator().manual_seed(2)
    U = torch.randn(80, 5, dtype=DT, generator=g)
    est, se = hutchpp(as_op(U @ U.T), products=30)
    assert abs(est - float((U * U).sum())) < 1e-9 and se < 1e-9


def test_wasserstein1():
    x = torch.tensor([0.0, 1.0])
    assert abs(wasserstein1(x, x + 0.5) - 0.5) < 1e-12
    assert abs(wasserstein1(torch.tensor([0.0]), torch.tensor([0.0, 2.0])) - 1.0) < 1e-12


@pytest.mark.parametrize("eigs,count", [(torch.tensor([]), None), (-torch.ones(5), None), (torch.tensor([1.0, 0.0, 0.0]), None),
                                        (torch.tensor([100.0, 99.0] + [1.0 - 0.01 * i for i in range(20)]), 2),
                                        (torch.ones(50), None),                      # all equal: no clear gap, not 1
                                        (torch.linspace(1.0, 0.5, 200), None),       # a bulk without outliers
                                        (torch.cat([torch.tensor([5.2, 5.0, 4.8, 1.0, .95, .9]), torch.linspace(0.4, 0.001, 500)]), 3)])
def test_count_outliers_edge_cases(eigs, count):
    assert count_outliers(eigs).count == count


def test_hutchpp_standard_error_is_calibrated():
    "The reported standard error matches the spread of the estimates over seeds (a missing 1/sqrt(m) would be off by ~3x)."
    g = torch.Generator().manual_seed(3)
    Q, _ = torch.linalg.qr(torch.randn(200, 200, dtype=DT, generator=g))
    A = as_op((Q * torch.linspace(0.0, 1.0, 200, dtype=DT)) @ Q.T)  # flat spectrum: the sketch helps little
    runs = [hutchpp(A, products=30, seed=s) for s in range(300)]
    est = torch.tensor([e for e, _ in runs], dtype=DT)
    se = torch.tensor([s for _, s in runs], dtype=DT)
    ratio = float(est.std() / se.mean())
    assert 0.7 < ratio < 1.4, ratio
    assert abs(float(est.mean()) - 100.0) < 3 * float(est.std()) / math.sqrt(300)  # unbiased: tr(A) = 100
