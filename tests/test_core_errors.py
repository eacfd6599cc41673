"""Bad input to the core `Objective`: every case fails with a message that names the problem and the fix."""
import pytest
import torch
from torch import nn

from hessian_nb.core import Objective, toy_problem
from helpers import raises


pytestmark = pytest.mark.usefixtures("float64_default")


@pytest.fixture
def problem():
    return toy_problem("mlp", n=8, seed=3)


def test_length_mismatch(problem):
    model, X, y = problem
    with raises(ValueError, "X has shape (8, 4) and y has shape (7,)", "same length N"):
        Objective(model, X, y[:7])


def test_empty_data(problem):
    model, X, y = problem
    with raises(ValueError, "empty"): Objective(model, X[:0], y[:0])


def test_not_tensors(problem):
    model, X, y = problem
    with raises(TypeError, "X must be a torch.Tensor, got ndarray", "torch.as_tensor(X)"):
        Objective(model, X.numpy(), y)


@pytest.mark.parametrize("bad,shown", [(3, "from 0 to 3"), (-1, "from -1 to")])
def test_labels_out_of_range(problem, bad, shown):
    model, X, y = problem
    y = y.clone(); y[2] = bad
    with raises(ValueError, "labels must lie in 0..2 for a model with C = 3 outputs", shown):
        Objective(model, X, y, loss="ce")


def test_ce_needs_integer_labels(problem):
    model, X, y = problem
    with raises(ValueError, "loss='ce' needs integer class labels", "y.argmax(1)"):
        Objective(model, X, nn.functional.one_hot(y, 3).double(), loss="ce")


def test_mse_target_shape(problem):
    model, X, _ = problem
    with raises(ValueError, "loss='mse' needs targets of shape (N, C) = (8, 3)", "got (8, 2)"):
        Objective(model, X, torch.randn(8, 2), loss="mse")


def test_unknown_loss(problem):
    with raises(ValueError, "loss='nll' is not one of ['ce', 'mse']"): Objective(*problem, loss="nll")


def test_custom_loss_not_scalar(problem):
    model, X, y = problem
    with raises(ValueError, "the loss returned shape (8,), not a 0-d scalar", "reduction='mean'"):
        Objective(model, X, y, loss=lambda z, t: nn.functional.cross_entropy(z, t, reduction="none"))


def test_model_output_not_2d(problem):
    model, X, y = problem
    with raises(ValueError, "maps a batch of 8 inputs to shape (8, 3, 1)", "logits of shape (N, C)"):
        Objective(nn.Sequential(model, nn.Unflatten(1, (3, 1))), X, y)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_data(problem, value):
    model, X, y = problem
    X = X.clone(); X[1, 2] = value
    with raises(ValueError, "X contains 1 non-finite value(s) (NaN or inf)"): Objective(model, X, y)


def test_non_finite_targets(problem):
    model, X, _ = problem
    t = torch.randn(8, 3); t[0, 0] = float("nan")
    with raises(ValueError, "y contains 1 non-finite value(s)"): Objective(model, X, t, loss="mse")


def test_non_finite_parameters(problem):
    model, X, y = problem
    with torch.no_grad(): model[0].weight[0, 0] = float("inf")
    with raises(ValueError, "the model's parameters contains 1 non-finite",
                "Re-initialise the model"):
        Objective(model, X, y)


def test_non_finite_loss(problem):
    model, X, y = problem
    with raises(ValueError, "the loss at the model's parameters contains 1 non-finite value(s)"):
        Objective(model, X, y, loss=lambda z, t: torch.log(z.sum() * 0 - 1))


def test_non_finite_loss_at_other_theta(problem):
    model, X, y = problem
    obj = Objective(model, X, y)
    with raises(ValueError, "the loss contains 1 non-finite value(s)"):
        obj.loss(obj.theta * 1e308)


def test_non_finite_gradient(problem):
    model, X, y = problem
    obj = Objective(model, X, y, loss=lambda z, t: (z - z.detach()).pow(2).sum().sqrt())  # sqrt at 0: infinite slope
    with raises(ValueError, "the gradient contains"): obj.grad()


@pytest.mark.parametrize("layer,name", [(nn.BatchNorm1d(6), "BatchNorm1d"), (nn.Dropout(0.2), "Dropout")])
def test_training_mode_layers(problem, layer, name):
    _, X, y = problem
    model = nn.Sequential(nn.Linear(4, 6), layer, nn.Tanh(), nn.Linear(6, 3)).double()
    with raises(ValueError, f"'1' ({name}) in training mode", "would depend on the batch", "model.eval()"):
        Objective(model, X, y)
    Objective(model.eval(), X, y).hessian()  # in eval mode it is a fixed function: accepted


def test_dense_hessian_too_large(problem):
    obj = Objective(*problem, max_dense_bytes=1000)
    with raises(MemoryError, "a dense 51 x 51 Hessian in torch.float64 needs 20.8 kB (20,808 bytes)",
                "matrix-free products obj.hvp(V)"):
        obj.hessian()


@pytest.mark.parametrize("make_v,exc,fragment", [
    (lambda P: torch.randn(P - 1), ValueError, "v has shape (50,); it must have shape (P,) or (P, k) with P = 51"),
    (lambda P: torch.randn(P, 2, 2), ValueError, "v has shape (51, 2, 2)"),
    (lambda P: torch.randn(P, dtype=torch.float32), TypeError, "v has dtype torch.float32 but the operator works in torch.float64"),
    (lambda P: [0.0] * P, TypeError, "v must be a torch.Tensor"),
    (lambda P: torch.full((P,), float("nan")), ValueError, "v contains 51 non-finite value(s)"),
    (lambda P: torch.randn(P, device="meta"), ValueError, "v is on meta, the operator on cpu"),
])
def test_bad_vectors(problem, make_v, exc, fragment):
    obj = Objective(*problem)
    with raises(exc, fragment): obj.hvp(make_v(obj.num_params))


def test_bad_theta(problem):
    obj = Objective(*problem)
    with raises(ValueError, "theta has shape (51, 1); it must have shape (P,) with P = 51"):
        obj.loss(obj.theta[:, None])


def test_bad_batch_size(problem):
    with raises(ValueError, "batch_size must be a positive integer or None, got 0"): Objective(*problem, batch_size=0)


def test_mixed_dtypes(problem):
    model, X, y = problem
    model[2].float()
    with raises(ValueError, "mix dtypes", "model.to(torch.float64)"): Objective(model, X, y)


def test_no_trainable_parameters(problem):
    model, X, y = problem
    model.requires_grad_(False)
    with raises(ValueError, "no trainable parameters"): Objective(model, X, y)


def test_float32_inputs_are_cast_to_the_parameters_dtype(problem):
    "X in float32 against a float64 model: cast once, so products are float64 throughout (not silently rounded)."
    model, X, y = problem
    obj32, obj64 = Objective(model, X.float(), y), Objective(model, X.float().double(), y)
    assert obj32.X.dtype == torch.float64
    v = torch.randn(obj32.num_params, dtype=torch.float64)
    torch.testing.assert_close(obj32.hvp(v), obj64.hvp(v), rtol=0, atol=0)
