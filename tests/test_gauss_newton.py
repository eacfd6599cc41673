"""The Gauss-Newton split against curvlinops (an independent implementation), and bad input to the gauss_newton module."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hessian_nb.core import Objective
from hessian_nb.gauss_newton import (ggn, ggn_factor, ggn_vp, gram_eigh, jacobians, logit_grads, loss_hessian,
                                     loss_hessian_factor, residual, residual_vp)
from helpers import raises

DT = torch.float64


def peer_problem(loss="ce", n=12, seed=5):
    "A model the chapter does not use: sigmoid CNN with average pooling, 4 classes, on 6x6 images."
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Sigmoid(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12, 6), nn.ELU(),
                          nn.Linear(6, 4)).to(DT)
    X = torch.randn(n, 1, 6, 6, generator=g, dtype=DT)
    y = torch.randint(0, 4, (n,), generator=g) if loss == "ce" else torch.randn(n, 4, generator=g, dtype=DT)
    return model, X, y


def curvlinops_ops(model, X, y, loss, batch):
    from curvlinops import GGNLinearOperator, HessianLinearOperator
    params = [p for p in model.parameters() if p.requires_grad]
    lossfn = nn.CrossEntropyLoss() if loss == "ce" else nn.MSELoss()
    data = [(X[i:i + batch], y[i:i + batch]) for i in range(0, len(X), batch)]
    kw = dict(check_deterministic=False)
    return GGNLinearOperator(model, lossfn, params, data, **kw), HessianLinearOperator(model, lossfn, params, data, **kw)


@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("batch", [12, 5])
def test_agrees_with_curvlinops(loss, batch):
    pytest.importorskip("curvlinops")
    model, X, y = peer_problem(loss)
    obj = Objective(model, X, y, loss=loss, batch_size=batch)
    G_op, H_op = curvlinops_ops(model, X, y, loss, batch)
    # nn.MSELoss averages over all N C entries; our "mse" is half the squared error summed over outputs: C / 2 times it
    scale = 1.0 if loss == "ce" else obj.num_classes / 2
    V = torch.randn(obj.num_params, 7, dtype=DT, generator=torch.Generator().manual_seed(0))
    GV, HV = scale * (G_op @ V), scale * (H_op @ V)
    torch.testing.assert_close(ggn_vp(obj, V), GV, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(obj.hvp(V), HV, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ggn_vp(obj, V) + residual_vp(obj, V), HV, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ggn(obj) @ V, GV, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(residual(obj) @ V, HV - GV, rtol=1e-9, atol=1e-12)


def test_float32_keeps_dtype():
    model, X, y = peer_problem()
    obj = Objective(model.float(), X.float(), y)
    v = torch.randn(obj.num_params, dtype=torch.float32)
    for out in (ggn_vp(obj, v), residual_vp(obj, v), ggn(obj), residual(obj), ggn_factor(obj), jacobians(obj)):
        assert out.dtype == torch.float32
    H = obj.hessian()
    torch.testing.assert_close(ggn(obj) + residual(obj), H, rtol=0, atol=1e-5 * float(H.abs().max()))


def test_custom_loss_goes_through_autodiff():
    model, X, y = peer_problem()
    closed, custom = Objective(model, X, y, loss="ce"), Objective(model, X, y, loss=lambda z, t: F.cross_entropy(z, t))
    v = torch.randn(closed.num_params, 3, dtype=DT)
    torch.testing.assert_close(ggn_vp(custom, v), ggn_vp(closed, v), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(residual_vp(custom, v), residual_vp(closed, v), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gram_eigh(custom, 5, vectors=False), gram_eigh(closed, 5, vectors=False), rtol=1e-10, atol=1e-14)


def test_residual_follows_theta():
    "The residual's surrogate objective is rebuilt when the parameters change (a new Objective), never reused stale."
    model, X, y = peer_problem()
    obj = Objective(model, X, y)
    R0 = residual(obj)
    with torch.no_grad():
        for p in model.parameters(): p.mul_(1.5)
    obj2 = Objective(model, X, y)
    torch.testing.assert_close(residual(obj2) + ggn(obj2), obj2.hessian(), rtol=0, atol=1e-12)
    assert not torch.allclose(residual(obj2), R0)


z = torch.randn(5, 3, dtype=DT)
labels = torch.tensor([0, 2, 1, 1, 0])


@pytest.mark.parametrize("fn", [logit_grads, loss_hessian, loss_hessian_factor])
def test_unknown_loss_name(fn):
    with raises(ValueError, "loss='hinge' has no closed form here", "['ce', 'mse']", "callable"):
        fn(z, labels, "hinge")


@pytest.mark.parametrize("fn", [logit_grads, loss_hessian, loss_hessian_factor])
def test_logits_not_a_matrix(fn):
    with raises(ValueError, "logits must be a tensor of shape (N, C), got (3,)"):
        fn(z[0], labels, "ce")
    with raises(ValueError, "logits must be a tensor of shape (N, C), got list"):
        fn([[1.0, 2.0]], labels, "ce")


def test_label_count_mismatch():
    with raises(ValueError, "logits have N = 5 rows but y has 4", "one label or target per row"):
        loss_hessian(z, labels[:4], "ce")


def test_float_labels_for_ce():
    with raises(ValueError, "'ce' needs integer labels of shape (N,)", "torch.float64"):
        logit_grads(z, labels.to(DT), "ce")


def test_mse_targets_shape():
    with raises(ValueError, "'mse' needs targets of the logits' shape (5, 3), got (5,)", "F.one_hot"):
        loss_hessian(z, labels, "mse")


def test_nonconvex_loss_has_no_factor():
    def concave(z, y): return -(z ** 2).sum(-1).mean()
    with raises(ValueError, "not convex in the logits", "use its products, ggn_op(obj) @ V"):
        loss_hessian_factor(z, labels, concave)
    model, X, y = peer_problem()
    obj = Objective(model, X, y, loss=concave)
    G = ggn(obj)  # still defined, just not PSD
    assert float(torch.linalg.eigvalsh(G)[0]) < 0
    with raises(ValueError, "not convex in the logits"): gram_eigh(obj)


@pytest.mark.parametrize("fn,what", [(ggn, "Gauss-Newton matrix"), (residual, "matrix of R"), (ggn_factor, "Gauss-Newton factor"),
                                     (jacobians, "stack of Jacobians"), (gram_eigh, "Gauss-Newton factor")])
def test_dense_refused_with_bytes(fn, what):
    model, X, y = peer_problem()
    obj = Objective(model, X, y, max_dense_bytes=2000)
    with raises(MemoryError, f"{what} in torch.float64 needs", "bytes", "raise max_dense_bytes"):
        fn(obj)


@pytest.mark.parametrize("fn", [ggn_vp, residual_vp])
def test_products_check_v(fn):
    model, X, y = peer_problem()
    obj = Objective(model, X, y)
    P = obj.num_params
    with raises(ValueError, f"v has shape ({P + 1},)", f"P = {P}"):
        fn(obj, torch.zeros(P + 1, dtype=DT))
    with raises(TypeError, "v has dtype torch.float32", "pass v.to(torch.float64)"):
        fn(obj, torch.zeros(P, dtype=torch.float32))
    v = torch.zeros(P, dtype=DT); v[3] = float("nan")
    with raises(ValueError, "v contains 1 non-finite value(s)"):
        fn(obj, v)
