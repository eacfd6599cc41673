"""Property-based tests (Hypothesis): random shapes, dtypes, spectra with multiplicities and batchings. Every number the
library returns equals a dense float64 reference, or the library raises a clear error; nothing in between."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn

from hessian_nb.operators import FactorOp, as_op
from hessian_nb.core import Objective
from hessian_nb.spectrum import count_outliers, lanczos

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def symmetric_with(values: torch.Tensor, seed: int) -> torch.Tensor:
    "A dense symmetric matrix with exactly these eigenvalues, in a random orthonormal basis."
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(values), len(values), generator=g, dtype=torch.float64))
    return (Q * values) @ Q.T


@st.composite
def spectra(draw):
    "A spectrum of P = 20..120 values: a bulk in [0, 1] and 1-4 distinct tops, each repeated 1-4 times."
    P = draw(st.integers(20, 120))
    tops = draw(st.lists(st.floats(2.0, 50.0), min_size=1, max_size=4, unique=True))
    reps = [draw(st.integers(1, 4)) for _ in tops]
    top = [t for t, r in zip(tops, reps) for _ in range(r)]
    bulk = draw(st.lists(st.floats(0.0, 1.0), min_size=P - len(top), max_size=P - len(top)))
    return torch.tensor(top + bulk, dtype=torch.float64), draw(st.integers(0, 10**6))


@SETTINGS
@given(spectra(), st.integers(1, 8), st.sampled_from(["top", "bottom"]))
def test_lanczos_converges_to_the_right_values(spec, k, which):
    values, seed = spec
    A = symmetric_with(values, seed)
    exact = torch.sort(values, descending=(which == "top")).values[:k]
    e = lanczos(as_op(A), k=k, which=which, seed=seed % 1000)
    # P <= 120 lies within the default step budget (at least 150): the Krylov space can always close, so every run must
    # converge, and to the right values
    assert e.converged, e
    torch.testing.assert_close(e.values, exact, rtol=1e-6, atol=1e-6 * float(values.abs().max()))
    torch.testing.assert_close(e.vectors.T @ e.vectors, torch.eye(k, dtype=torch.float64), rtol=0, atol=1e-6)


@SETTINGS
@given(st.integers(5, 40), st.integers(1, 6), st.integers(0, 5), st.integers(0, 10**6))
def test_factor_eigh_is_the_dense_spectrum_or_refuses(P, m, rank_drop, seed):
    g = torch.Generator().manual_seed(seed)
    r = max(1, m - rank_drop)
    V = torch.randn(P, r, generator=g, dtype=torch.float64) @ torch.randn(r, m, generator=g, dtype=torch.float64)
    exact = torch.linalg.eigvalsh(V @ V.T).flip(0)
    w, U = FactorOp(V).eigh()
    assert len(w) == min(r, P)
    torch.testing.assert_close(w, exact[:len(w)], rtol=1e-8, atol=1e-10 * float(exact[0]))
    torch.testing.assert_close(U.T @ U, torch.eye(len(w), dtype=torch.float64), rtol=0, atol=1e-6)
    if len(w) < m:
        with pytest.raises(ValueError, match="rank"):
            FactorOp(V).eigh(m)


@SETTINGS
@given(st.lists(st.floats(-3, 3).filter(lambda c: abs(c) > 1e-3), min_size=1, max_size=4), st.integers(0, 10**6),
       st.sampled_from([torch.float32, torch.float64]))
def test_linear_combinations_are_the_dense_combination(coefs, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    mats = [symmetric_with(torch.randn(12, generator=g, dtype=torch.float64), seed + i).to(dtype) for i in range(len(coefs))]
    op = sum(c * as_op(M) for c, M in zip(coefs, mats))
    want = sum(c * M for c, M in zip(coefs, mats))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(op.dense(), want, rtol=tol, atol=tol)
    torch.testing.assert_close((op / 2).dense(), want / 2, rtol=tol, atol=tol)


DATA = torch.Generator().manual_seed(0)
X = torch.randn(23, 4, generator=DATA, dtype=torch.float64)
Y = torch.randint(0, 3, (23,), generator=DATA)
MODEL = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
FULL = Objective(MODEL, X, Y)
V = torch.randn(FULL.num_params, 2, generator=DATA, dtype=torch.float64)
HV, GRAD, LOSS = FULL.H @ V, FULL.grad(), FULL.loss()


@SETTINGS
@given(st.lists(st.integers(1, 22), min_size=0, max_size=6, unique=True), st.booleans())
def test_any_batching_gives_the_full_batch_numbers(cuts, as_list):
    "Streamed in batches split at random points (a list of batches, or tensors with batch_size): the same products."
    edges = [0, *sorted(cuts), 23]
    if as_list:
        obj = Objective(MODEL, [(X[a:b], Y[a:b]) for a, b in zip(edges, edges[1:])])
    else:
        obj = Objective(MODEL, X, Y, batch_size=max(1, edges[1] - edges[0]))
    torch.testing.assert_close(obj.H @ V, HV, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(obj.grad(), GRAD, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(obj.loss(), LOSS, rtol=1e-12, atol=1e-14)


@SETTINGS
@given(st.permutations(list(range(23))), st.integers(1, 22))
def test_a_stream_that_changes_between_passes_is_refused(order, drop):
    "A pass that reads other samples than the first (one sample swapped for another) raises; never a mixed product."
    batches = [(X[i:i + 5], Y[i:i + 5]) for i in range(0, 23, 5)]
    obj = Objective(MODEL, batches)
    torch.testing.assert_close(obj.H @ V, HV, rtol=1e-10, atol=1e-12)
    j = order[0]
    Xc = X.clone(); Xc[j] = X[(j + drop) % 23]
    batches[:] = [(Xc[i:i + 5], Y[i:i + 5]) for i in range(0, 23, 5)]
    with pytest.raises(RuntimeError, match="the data changed between passes"):
        obj.H @ V


@SETTINGS
@given(st.integers(1, 6), st.floats(2.0, 20.0), st.integers(0, 10**6))
def test_count_outliers_on_clear_spikes(k, gap, seed):
    "k outliers at least `gap` times the top of a smooth bulk: counted as k."
    g = torch.Generator().manual_seed(seed)
    bulk = torch.linspace(1.0, 0.5, 200, dtype=torch.float64) * (1 + 0.01 * torch.rand(200, generator=g, dtype=torch.float64))
    tops = gap * 1.2 ** torch.arange(k, dtype=torch.float64)
    assert count_outliers(torch.cat([tops, bulk])).count == k
