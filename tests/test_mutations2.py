"""Edits a careless refactor makes that an independent mutation round found no pytest test for (tests/README.md, "A
seventh round"): each test here fails on its mutant and passes on the library."""
import math
import warnings

import pytest
import torch
from torch import nn

from hessian_nb.basics import shift_seed
from hessian_nb.operators import as_op
from hessian_nb.core import Objective, toy_problem
from hessian_nb.gauss_newton import ggn, residual_op
from hessian_nb.network import Tracker, _groups, block_indices, diagonal
from hessian_nb.operands import random_signs
from hessian_nb.spectrum import lanczos
from hessian_nb.store import atomic_save, safe_load
from hessian_nb.train import batch_indices

D = torch.float64


def test_a_weak_coupling_of_the_samples_is_still_refused():
    "A model adding 1e-8 of the batch mean to every logit couples the samples; the check's tolerance is rounding, not 1e-7."
    class Mix(nn.Module):
        def __init__(self):
            super().__init__(); self.l = nn.Linear(4, 3)
        def forward(self, x): return self.l(x) + 1e-8 * x.mean(0).sum()
    _, X, y = toy_problem("mlp")
    with pytest.raises(ValueError, match="couples the samples"):
        Objective(Mix().double(), X, y)


def test_a_sum_with_one_operator_not_known_symmetric_is_checked():
    g = torch.Generator().manual_seed(0)
    S = torch.randn(6, 6, generator=g, dtype=D); S = S + S.T
    N = torch.randn(6, 6, generator=g, dtype=D)  # not symmetric
    A = as_op(S) + as_op(lambda V: N @ V, P=6, dtype=D)
    with pytest.raises(ValueError, match="is not symmetric"):
        lanczos(A, k=1)


def test_at_copies_theta_and_starts_its_derived_operators_afresh():
    model, X, y = toy_problem("mlp")
    obj = Objective(model, X, y)
    residual_op(obj).dense()  # built and kept for obj
    th = obj.theta + 0.3 * torch.randn(obj.num_params, dtype=D, generator=torch.Generator().manual_seed(1))
    o2 = obj.at(th)
    torch.testing.assert_close(residual_op(o2).dense(), o2.hessian() - ggn(o2), rtol=1e-9, atol=1e-12)
    before = o2.theta.clone()
    th.add_(1.0)  # the caller's vector, edited afterwards
    torch.testing.assert_close(o2.theta, before, rtol=0, atol=0)


def test_lanczos_that_runs_out_of_iterations_does_not_say_converged():
    A = as_op(torch.diag(torch.linspace(1, 2, 200, dtype=D)))  # a crowded spectrum: 3 steps cannot resolve it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = lanczos(A, k=5, max_iter=6)
    assert not e.converged


def test_a_tolerance_below_the_dtypes_rounding_is_raised_and_converges():
    M = torch.diag(torch.arange(1.0, 41.0))  # float32
    with pytest.warns(UserWarning, match="below what float32 can resolve; using 100 eps"):
        e = lanczos(as_op(M), k=2, tol=1e-12)
    assert e.converged
    torch.testing.assert_close(e.values, torch.tensor([40.0, 39.0]), rtol=1e-5, atol=0)


def test_a_name_prefix_stops_at_a_dot():
    "In a Sequential of eleven layers, '1' names layer 1, not layer 10."
    torch.manual_seed(0)
    m = nn.Sequential(*[nn.Linear(3, 3) if i % 2 == 0 else nn.Tanh() for i in range(10)], nn.Linear(3, 3)).double()
    X, y = torch.randn(8, 3, dtype=D), torch.arange(8) % 3
    obj = Objective(m, X, y)
    names = [n for n, _ in m.named_parameters()]
    assert "10.weight" in names
    idx = block_indices(obj, "10")
    with pytest.raises(ValueError, match="names no parameter"):  # layer 1 is a Tanh: no parameters
        block_indices(obj, "1")
    assert len(idx) == 12


def test_the_diagonal_error_is_the_standard_error_of_its_samples():
    g = torch.Generator().manual_seed(2)
    B = torch.randn(20, 20, generator=g, dtype=D); M = B + B.T
    est, err = diagonal(as_op(M), probes=40, seed=3, chunk=40)
    Z = random_signs(20, 40, torch.Generator().manual_seed(shift_seed(3)), D, "cpu")
    s = Z * (M @ Z)
    torch.testing.assert_close(est, s.mean(1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(err, s.std(1) / math.sqrt(40), rtol=1e-12, atol=1e-12)  # n - 1 in the variance


def test_a_tracker_moved_to_a_model_of_another_size_starts_cold():
    _, X, y = toy_problem("mlp")
    tr = Tracker(X, y, k=2, every=1, trace_products=0)
    torch.manual_seed(0)
    tr(0, nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double())
    small = nn.Sequential(nn.Linear(4, 2), nn.Tanh(), nn.Linear(2, 3)).double()
    tr(1, small)
    ref = torch.linalg.eigvalsh(Objective(small, X, y).hessian()).flip(0)[:2]
    torch.testing.assert_close(tr.history[-1]["top"], ref, rtol=1e-6, atol=1e-10)


def test_report_multiplicities_keep_values_a_percent_apart_separate():
    assert _groups(torch.tensor([2.01, 2.0], dtype=D)) == [(2.01, 1), (2.0, 1)]


def test_an_epoch_of_minibatches_covers_every_sample_once():
    steps = [batch_indices(s, 10, 4, seed=0) for s in range(3)]  # 10 samples, batches of 4: 4, 4, 2
    assert sorted(torch.cat(steps).tolist()) == list(range(10))


def test_a_flipped_bit_in_a_saved_file_is_caught_by_its_digest(tmp_path):
    p = tmp_path / "r.pt"
    atomic_save({"x": torch.arange(1000.0)}, p)
    outer = torch.load(p, weights_only=True)
    outer["payload"][len(outer["payload"]) // 2] ^= 1  # one bit of the contents, the recorded digest kept
    torch.save(outer, p)
    with pytest.raises(ValueError, match="digest does not match"):
        safe_load(p)


def test_the_regime_verdict_needs_a_strict_majority_of_seeds():
    from hessian_nb.regime import REGIME_RULE, regime_verdict
    good = {"G/G1": REGIME_RULE["G/G1"] / 2, "overlap": 0.99}
    bad = {"G/G1": 10 * REGIME_RULE["G/G1"], "overlap": 0.5}
    half = [{"seed": 0, "step": 9, **good}, {"seed": 1, "step": 9, **bad}]
    assert regime_verdict(half).held == [0] and not regime_verdict(half).stands  # one of two is no majority
    assert regime_verdict(half + [{"seed": 2, "step": 9, **good}]).stands


def test_cli_report_refuses_k_below_one(tmp_path, monkeypatch, capsys):
    from hessian_nb.cli import main
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["report", "anything:make", "--k", "0"])
    assert "--k 0: at least 1 eigenvalue" in capsys.readouterr().err


def _label_regression(z, y):
    "A custom loss on integer labels (read as numbers): the first logit regressed on the label, plus a small penalty."
    return 0.5 * (z[:, 0] - y.to(z.dtype)).pow(2).mean() + 0.1 * z.pow(2).sum(1).mean()


def test_lanczos_is_not_converged_while_its_verification_block_runs():
    # diag(0..1 (299 values), 2): the top pair converges by step 15 and the verification block starts; stopped by max_iter
    # at 20 steps, before that block could rule out a missing copy, the answer is not "converged" (at 40 steps it is).
    import warnings
    from hessian_nb.operators import as_op
    from hessian_nb.spectrum import lanczos
    d = torch.linspace(0, 1, 300, dtype=torch.float64); d[-1] = 2.0
    A = as_op(torch.diag(d))
    with pytest.warns(UserWarning, match="verification restart had not finished"):
        e = lanczos(A, k=1, max_iter=20, progress=False)
    assert e.blocks == 2 and float(e.residuals.max()) < 1e-8 and not e.converged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lanczos(A, k=1, max_iter=40, progress=False).converged

def test_count_outliers_sees_the_last_ratio_of_the_window():
    # the top window = 10 eigenvalues and the one after them give 10 ratios; the largest, lambda_10 / lambda_11 = 20, is
    # the edge searched for; without the 11th eigenvalue the count picks the smaller gap at 3 instead.
    from hessian_nb.spectrum import count_outliers
    lam = [1000.0, 990.0, 980.0, 100.0]
    while len(lam) < 10: lam.append(lam[-1] / 1.01)
    lam.append(lam[-1] / 20)
    while len(lam) < 30: lam.append(lam[-1] / 1.01)
    c = count_outliers(torch.tensor(lam, dtype=torch.float64), window=10)
    assert c.ratio == pytest.approx(20.0)
    assert c.count is None  # the edge is the window's last ratio: no gaps inside the window to compare it with

def test_check_split_states_the_cross_entropy_rank_bound():
    from hessian_nb.gauss_newton import check_split
    model, X, y = toy_problem(n=8)
    f = check_split(Objective(model, X, y))
    assert f.bound == 8 * (3 - 1)  # softmax: each sample's output Hessian has rank C - 1
    model, X, y = toy_problem(n=8, loss="mse")
    assert check_split(Objective(model, X, y, loss="mse")).bound == 8 * 3


def test_check_split_reports_every_spectrum_descending():
    "One eigenvalue order in every result type: descending, as lanczos and Spectra report them."
    from hessian_nb.gauss_newton import check_split, ggn
    obj = Objective(*toy_problem(n=8))
    f = check_split(obj)
    torch.testing.assert_close(f.H, torch.linalg.eigvalsh(obj.hessian()).flip(0), rtol=0, atol=0)
    torch.testing.assert_close(f.G, torch.linalg.eigvalsh(ggn(obj)).flip(0), rtol=0, atol=0)
    assert all(bool((e[:-1] >= e[1:]).all()) for e in (f.H, f.G, f.R))

def test_streamed_residual_of_a_custom_loss_gets_the_labels_as_given():
    from hessian_nb.gauss_newton import residual_op
    model, X, y = toy_problem(n=8)
    V = torch.randn(len(Objective(model, X, y).theta), 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tensors = Objective(model, X, y, loss=_label_regression)
    stream = Objective(model, [(X[:4], y[:4]), (X[4:], y[4:])], None, loss=_label_regression)
    torch.testing.assert_close(residual_op(stream) @ V, residual_op(tensors) @ V, rtol=1e-10, atol=1e-12)

def test_small_init_checkpoints_reach_the_last_decade_step():
    from hessian_nb.bulk import small_init_configs
    for per_decade in (2, 4):
        for cfg in small_init_configs("book", per_decade).values():
            assert cfg.max_steps / max(cfg.checkpoints) < 10 ** (1 / per_decade)

def test_draw_spectrum_refuses_an_unknown_axis():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from hessian_nb.bulk import Spectra
    from hessian_nb.widgets import draw_spectrum
    f = Spectra(torch.tensor([3.0, 1.0, 0.1, 0.0], dtype=torch.float64), None, None, 4, 8, 2, 0.1, 1e-4)
    fig, ax = plt.subplots()
    try:
        with pytest.raises(ValueError, match="axis="): draw_spectrum(ax, f, axis="log")
    finally: plt.close(fig)
