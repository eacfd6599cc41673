"""Behaviour that no other test pinned down: each test states what the library must do, and fails on a small change to
the code that used to survive every test (a looser convexity tolerance, one reorthogonalisation pass instead of two,
Hutch++ spending a quarter of its budget on the sketch, the edge gap counted among its own reference gaps, and the
survivors of a later round).

To check that a test kills a mutation, mutate a copy of the package, never the package: the checkout shadows PYTHONPATH
under `python -m pytest` (the current directory comes first), so run `PYTHONPATH=/tmp/copy python -P -m pytest ...`."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hessian_nb.operators import as_op
from hessian_nb.core import Objective
from hessian_nb.gauss_newton import ggn, ggn_factor, gram_eigh, loss_hessian, loss_hessian_factor
from hessian_nb.spectrum import count_outliers, hutchpp, lanczos
from helpers import raises

DT = torch.float64


def orthogonal(P: int, seed: int) -> torch.Tensor:
    "A random orthogonal P x P matrix (float64)."
    return torch.linalg.qr(torch.randn(P, P, dtype=DT, generator=torch.Generator().manual_seed(seed)))[0]


def with_spectrum(w: torch.Tensor, seed: int = 0) -> torch.Tensor:
    "The symmetric matrix Q diag(w) Q^T for a random orthogonal Q (float64, exactly symmetric)."
    Q = orthogonal(len(w), seed)
    M = (Q * w) @ Q.T
    return (M + M.T) / 2


def small_problem(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT)
    return model, torch.randn(n, 4, generator=g, dtype=DT), torch.randint(0, 3, (n,), generator=g)


# 1. The Gauss-Newton factor G = V V^T exists only for a loss convex in the logits -----------------------------------------

def mildly_concave(z, y):
    "Cross-entropy minus 0.01 |z|^2: its Hessian in the logits, diag(p) - p p^T - 0.02 I, has eigenvalue -0.02 along (1, ..., 1)."
    return F.cross_entropy(z, y) - 0.01 * (z ** 2).sum(-1).mean()


def barely_concave(z, y):
    "Cross-entropy minus 1e-6 |z|^2: a negative eigenvalue of -2e-6, about 1e-5 of the Hessian's largest, far above rounding."
    return F.cross_entropy(z, y) - 1e-6 * (z ** 2).sum(-1).mean()


@pytest.mark.parametrize("loss", [mildly_concave, barely_concave])
def test_a_mildly_non_convex_loss_has_no_factor(loss):
    """A loss whose logit Hessian has a small negative eigenvalue has no real factor S S^T = Hessian: refused, not clamped
    (clamping the negative eigenvalue made G = V V^T 3.6% off for `mildly_concave`)."""
    z = torch.randn(6, 3, dtype=DT, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 2, 1, 1, 0, 2])
    w = torch.linalg.eigvalsh(loss_hessian(z, y, loss))
    assert float(w.min()) < 0  # the premise: it is not convex
    with raises(ValueError, "not convex in the logits"):
        loss_hessian_factor(z, y, loss)
    obj = Objective(*small_problem(), loss=loss)
    for fn in (ggn_factor, gram_eigh):
        with raises(ValueError, "not convex in the logits", "ggn_op(obj) @ V"):
            fn(obj)
    assert float(torch.linalg.eigvalsh(ggn(obj))[0]) < 0  # the dense G is still given, and is not PSD


def smoothed_ce(z, y):
    "Cross-entropy with label smoothing: convex in the logits, with an exactly singular Hessian (rounding makes it +-1e-17)."
    return F.cross_entropy(z, y, label_smoothing=0.1)


def test_a_convex_custom_loss_is_factored_exactly():
    "A convex custom loss (autodiff, eigendecomposition): S S^T is its Hessian, and V V^T is the dense G."
    z = torch.randn(6, 3, dtype=DT, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 2, 1, 1, 0, 2])
    S = loss_hessian_factor(z, y, smoothed_ce)
    assert bool(torch.isfinite(S).all())
    torch.testing.assert_close(S @ S.transpose(1, 2), loss_hessian(z, y, smoothed_ce), rtol=0, atol=1e-14)
    obj = Objective(*small_problem(), loss=smoothed_ce)
    V, G = ggn_factor(obj), ggn(obj)
    torch.testing.assert_close(V @ V.T, G, rtol=0, atol=1e-13 * float(G.abs().max()))


# 2. Lanczos keeps its basis orthonormal in float32 -------------------------------------------------------------------------

def test_float32_lanczos_finds_repeated_outliers_with_an_orthonormal_basis():
    """P = 400 in float32: 100 three times and 50 twice over a bulk below 1e-3. With one orthogonalisation pass instead of two
    the basis lost orthogonality and the values came back as 5868.5, 100.006, 94.97, ... with non-orthonormal vectors."""
    P, top = 400, torch.tensor([100.0, 100.0, 100.0, 50.0, 50.0], dtype=DT)
    bulk = 1e-3 * torch.rand(P - 5, dtype=DT, generator=torch.Generator().manual_seed(2))
    M = with_spectrum(torch.cat([top, bulk]), seed=0).float()
    e = lanczos(as_op(M), k=5)
    assert e.converged, e
    assert e.values.dtype == torch.float32
    torch.testing.assert_close(e.values.double(), top, rtol=1e-5, atol=0)
    V = e.vectors.double()
    torch.testing.assert_close(V.T @ V, torch.eye(5, dtype=DT), rtol=0, atol=1e-5)
    res = (M.double() @ V - V * e.values.double()).norm(dim=0) / 100.0  # measured against the matrix itself
    assert float(res.max()) < 1e-5, res


@pytest.mark.parametrize("seed", [0, 3])
def test_float32_lanczos_keeps_fresh_blocks_orthogonal(seed):
    """An eigenvalue of multiplicity 20 in float32 (P = 60): each copy comes from a fresh Krylov block, a random vector
    orthogonalised against the basis. The 21 Ritz vectors are orthonormal to a few float32 eps (one orthogonalisation pass
    for the fresh vectors left them 3e-6 .. 2e-4 off)."""
    w = torch.cat([torch.full((20,), 3.0, dtype=DT), torch.linspace(0.0, 1.0, 40, dtype=DT)])
    M = with_spectrum(w, seed=seed).float()
    e = lanczos(as_op(M), k=21, seed=seed)
    assert e.converged, e
    torch.testing.assert_close(e.values.double(), torch.tensor([3.0] * 20 + [1.0], dtype=DT), rtol=1e-6, atol=0)
    V = e.vectors.double()
    torch.testing.assert_close(V.T @ V, torch.eye(21, dtype=DT), rtol=0, atol=1e-6)


# 3. Hutch++ spends its budget: a third each to sketch, project and probe ---------------------------------------------------

def counting_op(M: torch.Tensor):
    "A function operator of M that records how many products (columns) it is asked for; the symmetry check already done."
    calls = []
    op = as_op(lambda V: (calls.append(V.shape[1]), M @ V)[1], P=M.shape[0], dtype=M.dtype)
    op.check_symmetric()
    calls.clear()
    return op, calls


@pytest.mark.parametrize("budget", [30, 60, 61, 62, 90])
def test_hutchpp_spends_its_budget(budget):
    "Every product of the budget is used (the largest multiple of 3 within it), and never more."
    op, calls = counting_op(with_spectrum(torch.linspace(0.0, 1.0, 120, dtype=DT), seed=3))
    before = op.products
    hutchpp(op, products=budget)
    assert sum(calls) == budget - budget % 3
    assert op.products - before == sum(calls)  # the operator's own counter agrees


def test_hutchpp_is_exact_when_the_rank_is_a_third_of_the_budget():
    "rank(A) = budget / 3 = the sketch's width: the sketch holds all of A, so the estimate is exact and its error bar 0."
    g = torch.Generator().manual_seed(4)
    U = torch.randn(150, 20, dtype=DT, generator=g)
    A = U @ U.T
    est, se = hutchpp(as_op((A + A.T) / 2), products=60)
    assert abs(est - float(torch.trace(A))) < 1e-9 * float(torch.trace(A)) and se < 1e-9 * float(torch.trace(A))


def test_hutchpp_error_bar_on_a_known_trace():
    """A decaying spectrum (lambda_i = 1 / i, P = 300, trace = H_300): the estimate lies within 4 error bars of the trace, and a
    larger budget gives a smaller error bar."""
    P = 300
    w = 1.0 / torch.arange(1, P + 1, dtype=DT)
    A, tr = as_op(with_spectrum(w, seed=5)), float(w.sum())
    se = {}
    for budget in (30, 90):
        est, se[budget] = hutchpp(A, products=budget, seed=1)
        assert 0 < se[budget] and abs(est - tr) < 4 * se[budget], (budget, est, tr, se[budget])
    assert se[90] < se[30]


# 4. count_outliers finds the built outliers ---------------------------------------------------------------------------------

def built(k: int, bulk: int = 200, gap: float = 10.0) -> torch.Tensor:
    "k outliers, the lowest `gap` times the bulk's top, spaced by 1.2, above a smooth bulk from 1 down to 0.5 (shuffled)."
    out = gap * 1.2 ** torch.arange(k - 1, -1, -1, dtype=DT)
    lam = torch.cat([out, torch.linspace(1.0, 0.5, bulk, dtype=DT)])
    return lam[torch.randperm(len(lam), generator=torch.Generator().manual_seed(k))]


@pytest.mark.parametrize("k", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("after", [1, 3, 10])
def test_count_outliers_counts_built_outliers(k, after):
    "k eigenvalues 10 times above a smooth bulk are k outliers, whatever number of gaps below the edge is compared with."
    c = count_outliers(built(k), after=after)
    assert c.count == k, c
    assert abs(c.ratio - 10.0) < 1e-9, c


def test_count_outliers_one_outlier_over_a_short_bulk_and_zeros():
    """A rank-deficient spectrum (a Gauss-Newton matrix: a few nonzero eigenvalues, then numerical zeros): one eigenvalue 10
    above three bulk eigenvalues is one outlier (its reference gaps are the two below it, not the edge itself)."""
    lam = torch.cat([torch.tensor([10.0, 1.0, 0.99, 0.98], dtype=DT), torch.zeros(50, dtype=DT)])
    c = count_outliers(lam)
    assert c.count == 1, c


def test_float32_lanczos_on_the_identity():
    "A closed Krylov space is seen at the dtype's rounding (it was b <= 1e-10 |A|: in float32 the run went on from noise)."
    e = lanczos(as_op(torch.eye(40, dtype=torch.float32)), k=5)
    assert e.converged
    torch.testing.assert_close(e.values, torch.ones(5, dtype=torch.float32), rtol=1e-5, atol=0)



def test_a_verification_block_runs_until_it_has_placed_its_extreme():
    """A double top eigenvalue 1 over a bulk reaching 0.97: the verification block must place its extreme to 1% of |A|
    before it may say 'nothing new'. Placed to 10% (verify_tol 0.1), one of these twelve runs stopped at 87 products and
    said converged on [1, 0.9658], missing the second copy."""
    converged = 0
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        w = torch.cat([torch.ones(2, dtype=DT), 0.97 * torch.rand(298, generator=g, dtype=DT)])
        Q = torch.linalg.qr(torch.randn(300, 300, generator=g, dtype=DT))[0]
        M = (Q * w) @ Q.T
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "did not converge" is one allowed outcome
            e = lanczos(as_op((M + M.T) / 2), k=2, seed=seed, vectors=False)
        if e.converged:  # a "converged" answer is right; "not converged" is allowed (the default max_iter is short)
            converged += 1
            torch.testing.assert_close(e.values, torch.ones(2, dtype=DT), rtol=0, atol=1e-6)
    assert converged >= 8, converged  # so the test cannot pass by never converging (10 of 12 converge today)


def test_lanczos_asked_for_more_pairs_than_the_rank():
    "k past the rank (the eigenvalue 0, of multiplicity P - r, among the wanted): converged at once, every fresh block closed."
    U = torch.randn(200, 3, dtype=DT, generator=torch.Generator().manual_seed(0))
    A = U @ U.T
    e = lanczos(as_op((A + A.T) / 2), k=5)
    assert e.converged, e
    ref = torch.linalg.eigvalsh(A).flip(0)[:5]
    torch.testing.assert_close(e.values, ref, rtol=1e-10, atol=1e-10 * float(ref[0]))
    assert e.products < 50, e


# Found by the fresh mutation round: documented behaviour no test held ---------------------------------------------------

def test_count_outliers_compares_with_the_80th_percentile_of_the_gaps_below():
    """The edge is clear only if its log-gap is kappa = 3 times the 80th percentile of the next `after` log-gaps: below an
    edge of log-gap 1.0, three gaps of 0.5 and seven of 0.05 put that percentile at 0.5, so there is no clear gap (their
    median, 0.05, would have called it clear)."""
    gaps = torch.tensor([1.0] + [0.5, 0.05, 0.05, 0.5, 0.05, 0.05, 0.5, 0.05, 0.05, 0.05] + [0.01] * 20, dtype=DT)
    lam = 100.0 * torch.exp(-torch.cat([torch.zeros(1, dtype=DT), gaps.cumsum(0)]))
    c = count_outliers(lam, after=10)
    assert c.count is None, c
    assert abs(c.ratio - math.e) < 1e-9 and abs(c.below - math.exp(0.5)) < 1e-9, c
    assert count_outliers(lam, kappa=1.9, after=10).count == 1  # 1.0 >= 1.9 x 0.5


def test_density_default_width_is_one_percent_of_the_nodes_range():
    from hessian_nb.spectrum import density, slq
    q = slq(as_op(with_spectrum(torch.linspace(-1.0, 3.0, 50, dtype=DT), seed=6)), probes=2, steps=12)
    grid = torch.linspace(-2.0, 4.0, 61, dtype=DT)
    sigma = 0.01 * float(q.nodes.max() - q.nodes.min())
    torch.testing.assert_close(density(q, grid), density(q, grid, sigma=sigma), rtol=1e-14, atol=0)


def class_problem():
    g = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4)).to(DT)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 1, 2])
    return model, torch.randn(len(y), 5, generator=g, dtype=DT), y


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_averaged_top_space_from_the_objective_equals_the_one_from_the_split(loss):
    "The streaming path (class means, one all-reduce) and the split give the same eigenpairs of G1 (unbalanced classes)."
    from hessian_nb.class_structure import averaged_top_space, class_split
    obj = Objective(*class_problem(), loss=loss, batch_size=5)
    w1, Q1 = averaged_top_space(obj, 3)
    w2, Q2 = averaged_top_space(class_split(Objective(*class_problem(), loss=loss)), 3)
    torch.testing.assert_close(w1, w2, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close((Q1.T @ Q2).abs(), torch.eye(3, dtype=DT), rtol=0, atol=1e-8)  # the same vectors, up to sign


def test_multi_hot_targets_are_not_classes():
    "Targets with two 1s in a row are not one-hot: no class per sample, so no class structure."
    from hessian_nb.class_structure import class_labels
    model, X, y = class_problem()
    T = F.one_hot(y, 4).to(DT)
    T[0, (int(y[0]) + 1) % 4] = 1.0
    with raises(ValueError, "no classes"):
        class_labels(Objective(model, X, T, loss="mse"))


def test_class_means_refuses_an_empty_class():
    "A class with no sample has no mean (0/0): class_means says which, rather than returning NaN."
    from hessian_nb.class_structure import class_means
    model, X, _ = class_problem()
    y = torch.tensor([0, 1, 3, 0, 1, 3, 0, 1, 3, 0, 1, 3])  # 4 outputs, class 2 absent
    with raises(ValueError, "class(es) [2] of 0..3 have no sample"):
        class_means(Objective(model, X, y))


class Kink(nn.Module):
    "Logits x * sum|t|, t a few parameters all just off the kink of |.|: the derivative is exact, a large step crosses it."
    def __init__(self, offset: float):
        super().__init__()
        self.t = nn.Parameter(torch.full((4,), offset, dtype=DT))

    def forward(self, x):
        return x * self.t.abs().sum()


def test_the_derivative_check_takes_a_second_smaller_step_across_a_kink():
    """Every t sits 1.01 h/8 from the kink of |.| (h the check's first step, 1e-8 here): a unit direction of 4 entries has one
    of at least 1/2, which the step h carries across (its central difference wrong by about a third), while h/8 crosses
    nothing. The forward is right (its autograd gradient is its derivative): accepted, on the second step."""
    X, y = torch.randn(6, 3, dtype=DT, generator=torch.Generator().manual_seed(0)), torch.arange(6) % 3
    Objective(Kink(1.01e-8 / 8), X, y)


def test_slq_stops_at_breakdown_on_a_spectrum_symmetric_about_zero():
    """diag(1, -1, 0, ...): every Lanczos alpha is 0, so the breakdown test must measure b against the betas too; otherwise it
    runs on past the exhausted Krylov space and places nodes far outside the spectrum (+-16 for a norm-1 operator)."""
    from hessian_nb.spectrum import slq
    q = slq(as_op(torch.diag(torch.tensor([1.0, -1.0] + [0.0] * 18, dtype=DT))), probes=3, steps=12)
    assert q.nodes.abs().max() <= 1 + 1e-12, q.nodes
