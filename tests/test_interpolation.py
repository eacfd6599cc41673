"""The interpolation tools: ends, barriers, and the pairs of models they refuse."""
import copy

import torch
from torch import nn

from hessian_nb.core import Objective, toy_problem
from hessian_nb.data import from_tensors
from hessian_nb.interpolation import Line, barrier, interpolate, sharpness_along
from helpers import raises


def pair():
    model, X, _ = toy_problem("cnn", n=30)
    data = from_tensors(X, torch.arange(30) % 3, num_classes=3)
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters(): p.mul_(-0.5)
    return model, other, data


def test_ends_and_midpoint():
    a, b, data = pair()
    c = interpolate(a, b, data, torch.tensor([0.0, 0.5, 1.0]))
    for i, m in ((0, a), (2, b)):
        assert abs(float(c.loss[i]) - float(Objective(m, data.X, data.y).loss())) < 1e-12
        assert abs(float(c.test_loss[i]) - float(Objective(m, data.X_test, data.y_test).loss())) < 1e-12
    mid = copy.deepcopy(a)
    nn.utils.vector_to_parameters(0.5 * (nn.utils.parameters_to_vector(a.parameters()) + nn.utils.parameters_to_vector(b.parameters())),
                                  mid.parameters())
    assert abs(float(c.loss[1]) - float(Objective(mid, data.X, data.y).loss())) < 1e-12
    assert c.acc.min() >= 0 and c.acc.max() <= 1


def test_barrier_only_counts_the_segment():
    a = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0])
    assert abs(barrier(Line(a, torch.tensor([9.0, 1.0, 1.5, 1.2, 9.0], dtype=torch.float64), torch.zeros(len(a)))) - 0.3) < 1e-12  # outside [0, 1] ignored
    assert barrier(Line(a, torch.tensor([9.0, 1.0, 0.5, 1.2, 9.0]), torch.zeros(len(a)))) == 0.0


def test_sharpness_at_the_ends():
    a, b, data = pair()
    s = sharpness_along(a, b, data, [0.0, 1.0])
    for i, m in enumerate((a, b)):
        top = float(torch.linalg.eigvalsh(Objective(m, data.X, data.y).hessian())[-1])
        assert abs(float(s[i]) - top) < 1e-8 * abs(top)


def test_refuses_other_architectures():
    a, _, data = pair()
    with raises(ValueError, "do not have the same parameters", "one architecture"):
        interpolate(a, nn.Sequential(nn.Flatten(), nn.Linear(36, 3)).double(), data)


def test_refuses_batchnorm():
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 5), nn.BatchNorm1d(5), nn.Linear(5, 3)).double().eval()
    _, _, data = pair()
    with raises(ValueError, "BatchNorm", "running statistics"):
        interpolate(model, copy.deepcopy(model), data)


def test_interpolate_needs_a_test_set():
    import torch
    from hessian_nb.data import from_tensors
    from hessian_nb.interpolation import interpolate
    m = torch.nn.Sequential(torch.nn.Linear(4, 3)).double()
    data = from_tensors(torch.randn(20, 4, dtype=torch.float64), torch.randint(0, 3, (20,)), num_classes=3, test_fraction=0)
    with raises(ValueError, "interpolate needs a test set"): interpolate(m, m, data)


def test_barrier_needs_both_ends():
    "Alphas that miss 0 or 1 would silently take the nearest point as an end: refused."
    a = torch.tensor([-1.0, -0.5, 1.5, 2.0], dtype=torch.float64)
    with raises(ValueError, "alpha = 0 and alpha = 1", "include 0 and 1"): barrier(Line(a, a ** 2, torch.zeros(len(a))))
    a = torch.linspace(0, 1, 5, dtype=torch.float64)
    assert barrier(Line(a, torch.tensor([1.0, 2.0, 1.5, 1.0, 1.0], dtype=torch.float64), torch.zeros(len(a)))) == 1.0


# two_phase and paired_lines on a user's own model and tensors: no registered data set, no cache.

def own_problem(n=40):
    g = torch.Generator().manual_seed(3)
    X = torch.randn(n, 5, dtype=torch.float64, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()  # three classes
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    return model, from_tensors(X, y, num_classes=3)


def params(m):
    return nn.utils.parameters_to_vector(m.parameters()).detach().clone()


def test_two_phase_on_own_data(monkeypatch, tmp_path):
    from hessian_nb.interpolation import two_phase
    from hessian_nb.train import evaluate, fit
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path / "cache"))
    model, data = own_problem()
    before = params(model)
    res = two_phase(model, data, small_batch=4, large_batch=16, lr=0.2, steps=12, log_every=3)
    assert torch.equal(params(model), before)                      # the user's model is not trained in place
    assert res.switch == 12
    steps = [h["step"] for h in res.history]
    assert steps == [0, 3, 6, 9, 12, 15, 18, 21, 24]                # one history, no step twice
    at_switch = res.history[4]
    assert abs(at_switch["loss"] - evaluate(res.large, data)["loss"]) < 1e-12
    assert abs(res.history[-1]["loss"] - evaluate(res.small, data)["loss"]) < 1e-12
    # phase 1 is SGD with the large batch from the user's model; phase 2 SGD with the small batch from phase 1's end
    ref = copy.deepcopy(model)
    fit(ref, data, lr=0.2, steps=12, batch_size=16, grad_tol=0, progress=False)
    assert torch.equal(params(ref), params(res.large))
    fit(ref, data, lr=0.2, steps=12, batch_size=4, grad_tol=0, progress=False)
    assert torch.equal(params(ref), params(res.small))
    assert not (tmp_path / "cache").exists()                         # nothing cached


def test_two_phase_refuses_a_batch_that_is_not_smaller():
    from hessian_nb.interpolation import two_phase
    model, data = own_problem()
    with raises(ValueError, "small_batch=16", "not smaller than phase 1's batch"):
        two_phase(model, data, small_batch=16, large_batch=16, steps=1)
    with raises(ValueError, "small_batch=32", "not smaller"):  # full batch: 32 training points
        two_phase(model, data, small_batch=32, steps=1)
    with raises(ValueError, "positive integer"):
        two_phase(model, data, small_batch=0, steps=1)


def snapshots(model, data, batch_size, steps=(4, 8)):
    from hessian_nb.train import fit
    m, out, done = copy.deepcopy(model), {0: copy.deepcopy(model)}, 0
    for s in steps:
        fit(m, data, lr=0.2, steps=s - done, batch_size=batch_size, grad_tol=0, progress=False)
        out[s], done = copy.deepcopy(m), s
    return out


def test_paired_lines_on_own_snapshots():
    from hessian_nb.interpolation import paired_lines
    model, data = own_problem()
    gd, sgd = snapshots(model, data, None), snapshots(model, data, 4, steps=(4, 6))
    rows = paired_lines(gd, sorted(sgd.items()), data)  # a dict and a list of (step, model)
    assert [r["step"] for r in rows] == [0, 4]            # the common steps only
    assert rows[0]["distance"] == 0.0 and rows[0]["barrier"] < 1e-12  # one point: a flat line
    a, b = gd[4], sgd[4]
    assert abs(rows[1]["distance"] - float((params(a) - params(b)).norm())) < 1e-12
    c = interpolate(a, b, data, torch.linspace(0, 1, 11, dtype=torch.float64))
    assert abs(rows[1]["barrier"] - barrier(c)) < 1e-12
    assert abs(rows[1]["loss_a"] - float(Objective(a, data.X, data.y).loss())) < 1e-12
    assert abs(rows[1]["loss_b"] - float(Objective(b, data.X, data.y).loss())) < 1e-12
    assert set(rows[1]) == {"step", "distance", "barrier", "loss_a", "loss_b"}


def test_paired_lines_needs_no_test_set():
    from hessian_nb.interpolation import paired_lines
    model, data = own_problem()
    train_only = from_tensors(data.X, data.y, num_classes=3, test_fraction=0)
    assert paired_lines({1: model}, {1: model}, train_only)[0]["barrier"] < 1e-12


def test_paired_lines_refuses_no_common_step():
    from hessian_nb.interpolation import paired_lines
    model, data = own_problem()
    with raises(ValueError, "no step in common", "[0, 4]", "[1, 2]"):
        paired_lines({0: model, 4: model}, [(1, model), (2, model)], data)


def test_paired_lines_refuses_other_architectures():
    from hessian_nb.interpolation import paired_lines
    model, data = own_problem()
    other = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    with raises(ValueError, "at step 3", "do not have the same parameters"):
        paired_lines({3: model}, {3: other}, data)


def test_paired_lines_refuses_malformed_snapshots():
    from hessian_nb.interpolation import paired_lines
    model, data = own_problem()
    with raises(TypeError, "snapshots_b", "dict step -> model"):
        paired_lines({0: model}, model, data)
    with raises(TypeError, "snapshots_a", "integer step and an nn.Module"):
        paired_lines({"0": model}, {0: model}, data)
    with raises(ValueError, "snapshots_b", "a step twice", "[2]"):
        paired_lines({2: model}, [(2, model), (2, model)], data)


def test_paired_runs_refuses_different_data():
    from hessian_nb.interpolation import paired_runs
    from hessian_nb.train import TrainConfig
    a = TrainConfig(data={"name": "digits", "n_per_class": 5}, model={"arch": "mlp", "hidden": [4]}, checkpoints=(1,))
    b = TrainConfig(data={"name": "digits", "n_per_class": 6}, model={"arch": "mlp", "hidden": [4]}, checkpoints=(1,))
    with raises(ValueError, "not train on the same data"):
        paired_runs(a, b)
