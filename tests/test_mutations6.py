"The sixth mutation round's survivors, each killed here (the mutant's edit in each test's docstring)."
import math
import os
import subprocess
import sys

import torch
from torch import nn

from hessian_nb.basics import shift_seed


def test_hutchpp_error_bar_is_the_sample_standard_deviation():
    "z.std() (n - 1), not std(correction=0)."
    from hessian_nb.operands import random_signs
    from hessian_nb.operators import as_op
    from hessian_nb.spectrum import hutchpp
    P, M = 40, torch.diag(torch.linspace(1, 4, 40, dtype=torch.float64))
    _, se = hutchpp(as_op(M), products=30, seed=0)
    m, g = 10, torch.Generator().manual_seed(shift_seed(0))
    Q, _ = torch.linalg.qr(M @ random_signs(P, m, g, torch.float64, "cpu"))
    G = random_signs(P, m, g, torch.float64, "cpu"); G -= Q @ (Q.T @ G)
    z = (G * (M @ G)).sum(0)
    assert abs(se - float(z.std()) / math.sqrt(m)) <= 1e-9 * se


def test_count_outliers_runner_up_position():
    "The runner-up gap's position counts the eigenvalues above it (order[1] + 1)."
    from hessian_nb.spectrum import count_outliers
    c = count_outliers(torch.tensor([1000.0, 100.0, 50.0, 10.0] + [9.9 - 0.01 * i for i in range(30)], dtype=torch.float64))
    assert c.count == 1 and c.runner_up[0] == 3


def test_spiked_wishart_is_the_sample_covariance_over_n():
    from hessian_nb.spectrum import spiked_wishart
    P, n = 20, 50
    e = spiked_wishart(P, n, (5.0,), seed=0)
    g = torch.Generator().manual_seed(shift_seed(0))
    scale = torch.ones(P, dtype=torch.float64); scale[0] = 5.0 ** 0.5
    X = torch.randn(n, P, generator=g, dtype=torch.float64) * scale
    assert torch.allclose(e, torch.linalg.eigvalsh(X.T @ X / n), rtol=1e-12, atol=0)


def test_block_shares_sum_to_one_and_the_tracker_measures_the_gradient_share():
    from hessian_nb.core import Objective, toy_problem
    from hessian_nb.network import Tracker, block_table
    from hessian_nb.spectrum import lanczos
    obj = Objective(*toy_problem())
    assert abs(sum(r["share"] for r in block_table(obj.H, products=20, method="shared", top=False)) - 1) < 1e-9
    model, X, y = toy_problem()
    t = Tracker(X, y, k=3, every=1, trace_products=0, warm=False); t(0, model)
    obj = Objective(model, X, y); e = lanczos(obj.H, k=3, tol=1e-4, progress=False); g = obj.grad()
    assert abs(t.history[-1]["grad_in_top"] - float((e.vectors.T @ g).pow(2).sum() / g.pow(2).sum())) < 1e-4


def test_near_zero_share_is_relative_to_the_top_eigenvalue():
    from hessian_nb.bulk import TrainedTop, near_zero_share
    r = TrainedTop(top=torch.tensor([10.0, 1.0]), step=0, loss=0.0, acc=1.0, grad_norm=0.0,
                   nodes=torch.tensor([[0.005, 5.0]], dtype=torch.float64), weights=torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    assert near_zero_share(r, rel=1e-3) == 0.5


def test_versions_see_dict_keys_and_keys_see_the_realization(monkeypatch):
    from hessian_nb.train import TrainConfig
    from hessian_nb.versions import code_version
    def make(conf):
        ns = {"CONF": conf}; exec("def f(): return CONF.get('a', 0)", ns); return ns["f"]
    assert code_version(make({"a": 1})) != code_version(make({"b": 1}))
    cfg = TrainConfig(data={"name": "blobs"}, model={"arch": "mlp", "hidden": [4]})
    monkeypatch.setenv("HESSIAN_NB_SEED_OFFSET", "0"); k0 = cfg.key()
    monkeypatch.setenv("HESSIAN_NB_SEED_OFFSET", "1")
    assert cfg.key() != k0


def test_a_set_of_strings_has_one_version_in_every_process():
    prog = ("from hessian_nb.versions import code_version\n"
            "NAMES = {'alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta'}\n"
            "def f(): return sorted(NAMES)\nprint(code_version(f))\n")
    vs = {subprocess.run([sys.executable, "-c", prog], env=dict(os.environ, PYTHONHASHSEED=str(s)), capture_output=True,
                         text=True, check=True).stdout for s in range(4)}
    assert len(vs) == 1, vs


def test_the_smallest_chunk_is_one_sample():
    from hessian_nb.core import Objective, toy_problem
    from hessian_nb.gauss_newton import ggn
    m, X, y = toy_problem()
    assert torch.allclose(ggn(Objective(m, X, y, chunk_bytes=1)), ggn(Objective(m, X, y)))


def test_blobs_standardises_the_test_set_with_the_training_statistics():
    from hessian_nb.data import blobs, gaussian_clusters
    d = blobs(k=2, d=3, n_per_class=10, n_test_per_class=5, seed=0)
    g = torch.Generator().manual_seed(shift_seed(0))
    centres = (torch.rand(2, 3, generator=g, dtype=torch.float64) * 2 - 1) * 10.0
    X, y, Xt, yt = gaussian_clusters(centres, 1.0, 10, 5, g)
    assert torch.allclose(d.X_test, ((Xt - X.mean(0)) / X.std(0)).float(), atol=1e-5)


def test_within_class_trace_uses_each_sample_own_class():
    from hessian_nb.class_scale import within_class
    from hessian_nb.class_structure import class_means, class_split
    from hessian_nb.core import Objective
    from hessian_nb.data import blobs
    from hessian_nb.models import mlp
    data = blobs(k=3, d=4, n_per_class=5, n_test_per_class=1).to(torch.float64)
    model = mlp([4, 6, 3], seed=0).double()
    obj = Objective(model, data.X, data.y)
    got = within_class(model, data, class_means(obj)[0])
    A3 = class_split(obj).A3.reshape(obj.num_params, obj.N, 3)
    same = float(A3[:, torch.arange(obj.N), data.y].pow(2).sum())
    assert abs(got["tr_G3_same"] - same) <= 1e-9 * abs(same)


def test_a_zero_factor_has_no_eigenpairs():
    from hessian_nb.operators import FactorOp
    w, U = FactorOp(torch.zeros(3, 2, dtype=torch.float64)).eigh()
    assert len(w) == 0 and bool(torch.isfinite(U).all())


def test_an_unwritable_json_folder_is_refused_before_the_run(tmp_path):
    "The --json folder's write check (os.access) dropped: as a user who cannot write there, the run would start."
    prog = r'''
import os, sys, io, contextlib
from hessian_nb.cli import main
d = sys.argv[1]; os.chmod(d, 0o777); ro = os.path.join(d, "ro"); os.mkdir(ro); os.chmod(ro, 0o555)
cache = os.path.join(d, "cache"); os.mkdir(cache); os.chmod(cache, 0o777)
os.environ["HESSIAN_NB_FASHION_MNIST"] = os.path.join(d, "no_such_folder")
if os.getuid() == 0: os.setresgid(65534, 65534, 0); os.setresuid(65534, 65534, 0)
err = io.StringIO()
with contextlib.redirect_stderr(err):
    try: code = main(["run", "papyan_regime", "--json", os.path.join(ro, "out.json"), "--cache", cache])
    except SystemExit as e: code = e.code
print(code, "--json" in err.getvalue())
'''
    os.chmod(tmp_path, 0o777)
    for p in tmp_path.parents:
        if p == p.parent: break
        if os.getuid() == 0 and str(p).startswith(("/tmp", "/var")): os.chmod(p, os.stat(p).st_mode | 0o005)
    out = subprocess.run([sys.executable, "-c", prog, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "True"], out.stdout + out.stderr[-2000:]


def test_subspace_overlap_is_normalised_by_the_first_subspace():
    from hessian_nb.class_structure import subspace_overlap
    I = torch.eye(5, dtype=torch.float64)
    assert abs(subspace_overlap(I[:, :2], I[:, :3]) - 1) < 1e-12


def test_logistic_ggn_averages_over_the_samples():
    from hessian_nb.class_structure import _class_probabilities, logistic_ggn
    C, D, t, a, n = 3, 4, 2.0, 0.2, 7
    G = logistic_ggn(C, D, t, a, n_per_class=n, seed=0)
    p = _class_probabilities(C, a); H = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    g = torch.Generator().manual_seed(shift_seed(0)); want = torch.zeros(C * D, C * D, dtype=torch.float64)
    for c in range(C):
        X = torch.randn(n, D, generator=g, dtype=torch.float64); X[:, c] += t
        want += torch.kron(H[c], X.T @ X / n) / C
    assert torch.allclose(G, want, rtol=1e-12, atol=1e-14)


def test_the_player_starts_in_the_middle_of_its_grid():
    import matplotlib; matplotlib.use("Agg")
    from hessian_nb.widgets import grid_player
    assert 'value="1"' in grid_player({"a": [1, 2, 3]}, lambda ax, pos, view: ax.plot([0, pos["a"]]))


def test_the_verdict_reads_each_seed_at_its_largest_step():
    from hessian_nb.regime import regime_verdict
    rows = [{"seed": 0, "width": 8, "step": 300, "G/G1": 1.1, "overlap": 0.95},
            {"seed": 0, "width": 8, "step": 100, "G/G1": 9.0, "overlap": 0.1}]
    v = regime_verdict(rows)
    assert v.held == [0] and v.stands


def test_frozen_parameters_are_not_counted():
    from hessian_nb.models import num_params
    m = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)); m[0].requires_grad_(False)
    assert num_params(m) == 6
