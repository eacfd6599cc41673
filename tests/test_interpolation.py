"""The interpolation tools: ends, barriers, and the pairs of models they refuse."""
import copy

import torch
from torch import nn

from hessian_nb.core import Objective, toy_problem
from hessian_nb.data import from_tensors
from hessian_nb.interpolation import barrier, interpolate, sharpness_along
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
        assert abs(float(c["train_loss"][i]) - float(Objective(m, data.X, data.y).loss())) < 1e-12
        assert abs(float(c["test_loss"][i]) - float(Objective(m, data.X_test, data.y_test).loss())) < 1e-12
    mid = copy.deepcopy(a)
    nn.utils.vector_to_parameters(0.5 * (nn.utils.parameters_to_vector(a.parameters()) + nn.utils.parameters_to_vector(b.parameters())),
                                  mid.parameters())
    assert abs(float(c["train_loss"][1]) - float(Objective(mid, data.X, data.y).loss())) < 1e-12
    assert c["train_acc"].min() >= 0 and c["train_acc"].max() <= 1


def test_barrier_only_counts_the_segment():
    a = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0])
    assert abs(barrier({"alpha": a, "train_loss": torch.tensor([9.0, 1.0, 1.5, 1.2, 9.0], dtype=torch.float64)}) - 0.3) < 1e-12  # outside [0, 1] ignored
    assert barrier({"alpha": a, "train_loss": torch.tensor([9.0, 1.0, 0.5, 1.2, 9.0])}) == 0.0


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
    with raises(ValueError, "alpha = 0 and alpha = 1", "include 0 and 1"): barrier({"alpha": a, "train_loss": a ** 2})
    a = torch.linspace(0, 1, 5, dtype=torch.float64)
    assert barrier({"alpha": a, "train_loss": torch.tensor([1.0, 2.0, 1.5, 1.0, 1.0], dtype=torch.float64)}) == 1.0
