"""A seventh hostile round (tests/README.md, "A seventh round"): silent wrong numbers found in the block tools, SLQ's
density, Hutch++'s small budgets, interpolation, models that reuse a layer, data edited behind torch's back and losses
whose closed forms are not those of their __call__; each test fails with its guard or fix removed."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hessian_nb.losses import CrossEntropy, Loss
from hessian_nb.operators import as_op
from hessian_nb.core import Objective
from hessian_nb.gauss_newton import ggn
from hessian_nb.interpolation import line_losses
from hessian_nb.network import block_indices, block_table, block_traces, diagonal, random_directions, report, _groups
from hessian_nb.spectrum import density, hutchpp, lanczos, slq

D = torch.float64


def data(n=20, d=5, C=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, dtype=D, generator=g), torch.randint(0, C, (n,), generator=g)


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def rotated(values, seed=0):
    "A symmetric matrix with the given eigenvalues."
    P = len(values)
    Q = torch.linalg.qr(torch.randn(P, P, dtype=D, generator=torch.Generator().manual_seed(seed)))[0]
    M = (Q * torch.as_tensor(values, dtype=D)) @ Q.T
    return (M + M.T) / 2


def test_report_groups_neighbours_relative_to_themselves_not_to_the_largest():
    top = [1.834e4, 3.031, 1.059, 0.413, 0.304, 0.175]
    assert _groups(torch.tensor(top, dtype=D)) == [(x, 1) for x in top]
    assert _groups(torch.tensor([5.0, 2.0, 2.0015], dtype=D)) == [(5.0, 1), (2.0015, 2)]


def test_density_width_ignores_the_empty_padding_nodes():
    q = slq(as_op(rotated(torch.tensor([100.0, 100.5, 101.0]).repeat_interleave(100))), probes=4, steps=60)
    assert bool((q.weights == 0).any())
    d = density(q, torch.tensor([100.0, 100.25, 100.5], dtype=D))
    assert d[1] < 1e-6 * min(d[0], d[2]), d


def test_hutchpp_refuses_a_budget_whose_error_bar_would_rest_on_few_samples():
    A = as_op(rotated(torch.linspace(1, 10, 300)))
    with pytest.raises(ValueError, match="would rest its error bar on 2 Hutchinson samples"):
        hutchpp(A, 6)
    est, se = hutchpp(as_op(torch.diag(torch.arange(1.0, 5.0, dtype=D))), 12)  # 4 sketch columns span P = 4: exact
    assert abs(est - 10) < 1e-12 and se < 1e-12
    est, se = hutchpp(A, np.int64(30))  # a NumPy integer is an integer
    assert abs(est - float(torch.linspace(1, 10, 300, dtype=D).sum())) <= 5 * se


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc, self.dec, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 3)
        self.dec.weight = self.enc.weight

    def forward(self, x): return self.head(torch.tanh(self.dec(torch.tanh(self.enc(x)))))


def test_a_tied_weight_is_in_the_block_of_each_name_that_reaches_it():
    torch.manual_seed(0)
    m = Tied().double()
    X, y = data(d=4)
    obj = Objective(m, X, y)
    by_module = block_indices(obj, m.dec).tolist()
    assert by_module == list(range(16)) + list(range(20, 24))
    assert block_indices(obj, "dec").tolist() == by_module
    assert block_indices(obj, ["dec.weight"]).tolist() == list(range(16))
    assert block_indices(obj, lambda n: n.startswith("dec.")).tolist() == by_module


def test_block_table_gives_a_bound_that_holds_on_a_small_top_beside_large_negatives():
    M = rotated(torch.cat([torch.tensor([1e-3]), -torch.linspace(1, 100, 39)]), seed=3)
    (row,) = block_table(as_op(M), {"all": range(40)}, products=30)
    assert abs(row["top"] - 1e-3) <= row["top_err"], row


def test_a_line_between_models_whose_frozen_parts_differ_is_refused():
    X, y = data()
    a, b = mlp(0), mlp(1)
    for m in (a, b): m[0].weight.requires_grad_(False)
    with pytest.raises(ValueError, match="frozen parameters, buffers or settings differ"):
        line_losses(a, b, X, y, alphas=[0.0, 1.0])
    b[0].weight.data.copy_(a[0].weight)  # the same frozen layer: the line is well defined
    c = line_losses(a, b, X, y, alphas=[1.0])
    with torch.no_grad(): assert abs(float(c.loss[0]) - float(F.cross_entropy(b(X), y))) < 1e-12

    class Scaled(nn.Module):
        def __init__(self, t):
            super().__init__(); self.l = nn.Linear(5, 3); self.register_buffer("t", torch.tensor(t))
        def forward(self, x): return self.l(x) / self.t
    with pytest.raises(ValueError, match="frozen parameters, buffers or settings differ"):
        line_losses(Scaled(1.0).double(), Scaled(10.0).double(), X, y, alphas=[1.0])
    a2, b2 = mlp(0), mlp(1)
    a2[0].weight.requires_grad_(False)
    with pytest.raises(ValueError, match="which are trainable must match"):
        line_losses(a2, b2, X, y, alphas=[1.0])


def test_a_layer_applied_twice_keeps_its_parameters_and_its_hessian_is_right():
    torch.manual_seed(0)
    lin = nn.Linear(4, 4)
    m = nn.Sequential(lin, nn.Tanh(), lin, nn.Tanh(), nn.Linear(4, 3)).double()
    X, y = data(12, 4)
    W1, b1, W2, b2 = (p.detach().clone() for p in m.parameters())
    before = list(m.parameters())
    obj = Objective(m, X, y)
    assert all(a is b for a, b in zip(m.parameters(), before))
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in m.parameters())

    def L(th):  # the loss by a forward written out: the layer applied twice
        A, a, B, b = th[:16].view(4, 4), th[16:20], th[20:32].view(3, 4), th[32:]
        return F.cross_entropy(torch.tanh(torch.tanh(X @ A.T + a) @ A.T + a) @ B.T + b, y)
    Hd = torch.autograd.functional.hessian(L, torch.cat([W1.reshape(-1), b1, W2.reshape(-1), b2]))
    again = Objective(m, X, y)
    assert again.num_params == 35
    torch.testing.assert_close(again.hessian(), Hd, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(obj.hessian(), Hd, rtol=1e-10, atol=1e-12)


def test_the_objective_holds_copies_of_x_and_y_so_edits_behind_torch_cannot_reach_it():
    X, y = data()
    obj = Objective(mlp(), X, y)
    top, loss = lanczos(obj.H, k=1).values, obj.loss()
    X.data.mul_(3); X.numpy().__imul__(2); y.data[[0, 1]] = y.data[[1, 0]]
    torch.testing.assert_close(lanczos(obj.H, k=1).values, top, rtol=1e-12, atol=0)
    torch.testing.assert_close(obj.loss(), loss, rtol=0, atol=0)


@pytest.mark.parametrize("edit", ["frozen.data", "buffer.data", "buffer permuted"])
def test_an_edit_of_the_model_behind_torchs_version_counter_is_refused(edit):
    X, y = data()
    m = mlp()
    m[0].bias.requires_grad_(False)
    m.register_buffer("scale", torch.arange(1.0, 4.0, dtype=D))
    obj = Objective(m, X, y)
    lanczos(obj.H, k=1)
    {"frozen.data": lambda: m[0].bias.data.add_(1), "buffer.data": lambda: m.scale.data.mul_(2),
     "buffer permuted": lambda: m.scale.data.copy_(m.scale.data.flip(0))}[edit]()
    with pytest.raises(RuntimeError, match=r"changed \(through .data or a NumPy view\)"):
        lanczos(obj.H, k=1)


def test_a_loss_subclass_whose_closed_forms_are_not_its_call_is_refused():
    class TempCE(CrossEntropy):  # changes __call__, inherits cross-entropy's closed forms
        name = "ce_T2"
        def __call__(self, z, y): return F.cross_entropy(z / 2, y)
    X, y = data()
    with pytest.raises(ValueError, match="its grad is not that of its __call__"):
        Objective(mlp(), X, y, loss=TempCE())

    class Right(CrossEntropy):  # changes __call__ and drops the closed forms: autodiff gives them
        name = "ce_T2"
        def __call__(self, z, y): return F.cross_entropy(z / 2, y)
    from hessian_nb.losses import Loss
    Right.grad, Right.hessian, Right.factor = Loss.grad, Loss.hessian, Loss.factor
    obj = Objective(mlp(), X, y, loss=Right())
    ref = Objective(mlp(), X, y, loss=lambda z, t: F.cross_entropy(z / 2, t))
    torch.testing.assert_close(ggn(obj), ggn(ref), rtol=1e-10, atol=1e-12)


def test_a_user_loss_declaring_itself_a_mean_is_checked_all_the_same():
    class WCE(CrossEntropy):  # inherits mean = True and the closed forms; weights the classes
        def __call__(self, z, y): return F.cross_entropy(z, y, weight=torch.tensor([1.0, 5.0, 10.0], dtype=z.dtype))
    class Summed(Loss):
        mean = True
        def __call__(self, z, y): return F.cross_entropy(z, y, reduction="sum")
    X, y = data(40)
    y[:4] = 0  # the first samples of one class: their weights agree
    with pytest.raises(ValueError, match="not the mean|is not that of its __call__"):
        Objective(mlp(), X, y, loss=WCE())
    with pytest.raises(ValueError, match="is the sum of its samples' losses"):
        Objective(mlp(), X, y, loss=Summed())


def test_the_block_tools_check_what_they_are_given():
    X, y = data()
    m = mlp()
    obj = Objective(m, X, y)
    with pytest.raises(TypeError, match="takes an operator, not an Objective"): diagonal(obj)
    with pytest.raises(TypeError, match="wrap a stored symmetric matrix with as_op"): block_traces(obj.hessian(), {"a": [0]})
    with pytest.raises(TypeError, match="takes an operator, not an Objective"): block_table(obj)
    with pytest.raises(TypeError, match="needs a square operator, got a cross block"): diagonal(obj.H.block([0, 1], [2, 3]))
    with pytest.raises(TypeError, match="random_directions takes an Objective"): random_directions(obj.H)
    with pytest.raises(TypeError, match="the first argument is the network"): report((X, y), m)
    with pytest.raises(TypeError, match="not a class"): obj.H.block(nn.Linear)
    with pytest.raises(ValueError, match="an integer of at least 30"): diagonal(obj.H, probes=10)
    for seed in (None, 1.7, True):
        with pytest.raises(TypeError, match="must be an integer"): block_traces(obj.H, {"a": [0, 1]}, seed=seed)
        with pytest.raises(TypeError, match="must be an integer"): diagonal(obj.H, probes=30, seed=seed)
        with pytest.raises(TypeError, match="must be an integer"): random_directions(obj, 1, seed=seed)


def test_train_settings_that_would_fail_later_are_refused_first(tmp_path):
    from hessian_nb.train import TrainConfig, train
    B = {"name": "blobs", "k": 3, "d": 5, "n_per_class": 10, "n_test_per_class": 5}
    cfg = lambda **kw: TrainConfig(**{"data": B, "model": {"arch": "mlp", "hidden": [6]}, "max_steps": 5, **kw})
    with pytest.raises(ValueError, match="seed must be an integer of magnitude below 2\\*\\*62"): cfg(seed=2**70)
    for bad in (5, ("3",), (-1,)):
        with pytest.raises(ValueError, match="checkpoints must be a tuple of steps >= 0"): cfg(checkpoints=bad)
    with pytest.raises(ValueError, match="holds no data to train on"): cfg(device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="torch sees no cuda device on this machine"):
            train(cfg(device="cuda"))


def test_data_to_an_integer_dtype_is_refused():
    from hessian_nb.data import blobs
    d = blobs(k=2, d=3, n_per_class=4, n_test_per_class=2)
    with pytest.raises(TypeError, match="the inputs take a floating dtype"): d.to(torch.int64)
    with pytest.raises(TypeError, match="the inputs take a floating dtype"): d.to("float64")
    assert d.to(torch.float32).X.dtype == torch.float32


@pytest.mark.parametrize("body, says", [
    ("def make():\n    return model(), X, Y\n", "returned (model, X, y): return (model, (X, y))"),
    ("def make():\n    return (X, Y), model()\n", "the first argument is the network"),
    ("make = model()\n", "is a Sequential, not a function"),
])
def test_cli_report_says_what_is_wrong_in_one_line(tmp_path, monkeypatch, capsys, body, says):
    from hessian_nb.cli import main
    (tmp_path / "usernet7.py").write_text(
        "import torch\nfrom torch import nn\nX = torch.randn(12, 4, dtype=torch.float64)\nY = torch.arange(12) % 3\n"
        "def model():\n    torch.manual_seed(0)\n    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()\n"
        + body)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(__import__("sys").modules, "usernet7", raising=False)
    with pytest.raises(SystemExit) as e: main(["report", "usernet7:make"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err, err


def test_training_goes_on_in_training_mode_after_a_callback_that_measures_in_eval_mode():
    from hessian_nb.train import TrainConfig, train
    B = {"name": "blobs", "k": 3, "d": 5, "n_per_class": 10, "n_test_per_class": 5}
    cfg = TrainConfig(data=B, model={"arch": "mlp", "hidden": [6]}, max_steps=6, grad_tol=0)
    def run(callback):  # dropout: a step taken in eval mode moves the weights elsewhere
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 3)).double()
        train(cfg, model=m, callback=callback)
        return torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    torch.testing.assert_close(run(lambda step, model: model.eval()), run(lambda step, model: None), rtol=0, atol=0)


def test_numpy_integers_and_lists_are_taken_where_integers_and_points_are_asked():
    from hessian_nb.network import Tracker
    A = as_op(torch.diag(torch.arange(1.0, 11.0, dtype=D)))
    e = lanczos(A, k=np.int64(3))
    torch.testing.assert_close(e.values, torch.tensor([10.0, 9.0, 8.0], dtype=D))
    Tracker(*data(), k=2, every=np.int64(5))
    q = slq(A, probes=np.int64(2), steps=np.int32(4))
    torch.testing.assert_close(density(q, [1.0, 2.0]), density(q, torch.tensor([1.0, 2.0], dtype=D)))
    assert lanczos(A, k=2, max_iter=np.int32(50)).converged
    from hessian_nb.operators import FactorOp
    torch.testing.assert_close(FactorOp(torch.eye(3, dtype=D)).eigh(np.int64(2))[0], torch.ones(2, dtype=D))
    X, y = data()
    assert Objective(mlp(), X, y, batch_size=np.int64(4)).batch_size == 4
    from hessian_nb.train import TrainConfig
    cfg = TrainConfig(checkpoints=(np.int64(3),))
    assert cfg.checkpoints == (3,) and isinstance(cfg.checkpoints[0], int) and cfg.key()


def test_a_loader_given_with_y_is_told_to_pass_y_none():
    X, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=5)
    with pytest.raises(TypeError, match="for a DataLoader or Dataset, pass it with y=None"):
        Objective(mlp(), loader, y)


def test_a_line_between_models_whose_settings_differ_is_refused_and_mse_accuracy_reads_the_targets():
    class Temp(nn.Module):
        def __init__(self, t):
            super().__init__(); self.l = nn.Linear(5, 3); self.temperature = t; self.shift = torch.tensor(t)
        def forward(self, x): return self.l(x) / self.temperature + self.shift
    X, y = data()
    torch.manual_seed(0); a = Temp(1.0).double()
    torch.manual_seed(1); b = Temp(3.0).double()
    with pytest.raises(ValueError, match=r"settings differ \(\['l.temperature'|settings differ \(\['temperature'"):
        line_losses(a, b, X, y, alphas=[1.0])
    b.temperature = 1.0
    with pytest.raises(ValueError, match="shift"):
        line_losses(a, b, X, y, alphas=[1.0])
    onehot = F.one_hot(y, 3).double()
    c = line_losses(mlp(0), mlp(1), X, onehot, alphas=[0.0], loss="mse")
    with torch.no_grad(): want = float((mlp(0)(X).argmax(1) == y).double().mean())
    assert float(c.acc[0]) == want


def test_a_control_loss_that_replaces_its_curvature_on_purpose_is_taken():
    "Chapter 6b's ProfileCE: cross-entropy's value with another curvature, declared (replaces_curvature): not refused."
    from hessian_nb.class_scale import ProfileCE
    X, y = data()
    obj = Objective(mlp(), X, y, loss=ProfileCE("even"))
    G = ggn(obj)
    assert torch.linalg.eigvalsh(G)[0] > -1e-10 and not torch.allclose(G, ggn(Objective(mlp(), X, y)))
