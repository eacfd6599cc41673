"""Models a user brings that the per-sample or forward-mode routes cannot take: each gives the right numbers by another
route, or a clear error naming what works (a compiled module, an LSTM, weight normalisation)."""
import warnings

import pytest
import torch
from torch import nn

from hessian_nb.core import Objective
from hessian_nb.gauss_newton import PerSampleError, ggn, ggn_diagonal, ggn_factor, ggn_op, jacobians

torch.manual_seed(0)
X, Y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))


def reference_ggn(obj: Objective) -> torch.Tensor:
    "G = (1/N) sum_i J_i^T H_i J_i with each J_i from a plain autograd Jacobian (no vmap, no forward mode)."
    P, G = obj.num_params, torch.zeros(obj.num_params, obj.num_params, dtype=torch.float64)
    for i in range(obj.N):
        J = torch.autograd.functional.jacobian(lambda th: obj.forward(th, obj.X[i:i + 1])[0], obj.theta)  # (C, P)
        z = obj.forward(obj.theta, obj.X[i:i + 1]).detach()
        Hz = obj.loss_fn.hessian(z, obj.y[i:i + 1])[0]
        G += J.T @ Hz @ J / obj.N
    return G


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm, self.out = nn.LSTM(4, 5, batch_first=True), nn.Linear(5, 3)

    def forward(self, x): return self.out(self.lstm(x[:, None, :])[0][:, -1])


def test_a_compiled_module_gives_the_modules_curvature():
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    plain = Objective(model, X, Y).hessian()
    torch.testing.assert_close(Objective(torch.compile(model), X, Y).hessian(), plain, rtol=0, atol=0)


def test_lstm_dense_ggn_falls_back_to_products_and_is_right():
    obj = Objective(LSTMNet().double(), X, Y)
    torch.testing.assert_close(ggn(obj), reference_ggn(obj), rtol=1e-10, atol=1e-12)
    V = torch.randn(obj.num_params, 2, dtype=torch.float64)
    torch.testing.assert_close(ggn_op(obj) @ V, reference_ggn(obj) @ V, rtol=1e-10, atol=1e-12)


def test_lstm_per_sample_results_refused_clearly():
    obj = Objective(LSTMNet().double(), X, Y)
    for fn in (jacobians, ggn_factor):
        with pytest.raises(PerSampleError, match="per-sample Jacobians .* ggn_op\\(obj\\) @ V"):
            fn(obj)


def test_lstm_diagonal_of_g_names_the_products_route_and_it_is_right():
    from hessian_nb.network import diagonal
    obj = Objective(LSTMNet().double(), X, Y)
    with pytest.raises(PerSampleError, match="diagonal of G comes from products: hessian_nb.network.diagonal\\(ggn_op\\(obj\\)\\)"):
        ggn_diagonal(obj)
    torch.testing.assert_close(diagonal(ggn_op(obj))[0], reference_ggn(obj).diagonal(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("norm", [nn.utils.parametrizations.weight_norm, nn.utils.weight_norm])
def test_weight_norm_ggn_products_without_forward_mode(norm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the old weight_norm says it is deprecated
        model = nn.Sequential(norm(nn.Linear(4, 5)), nn.Tanh(), nn.Linear(5, 3)).double()
    obj = Objective(model, X, Y)
    V = torch.randn(obj.num_params, 3, dtype=torch.float64)
    torch.testing.assert_close(ggn_op(obj) @ V, reference_ggn(obj) @ V, rtol=1e-10, atol=1e-12)
