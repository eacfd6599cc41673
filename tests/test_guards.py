"""Guards a chapter cell held alone, and one-process checks of what only the two-process test used to catch: operators of
different shapes are not added, a summed loss and a random forward are refused, batch weights, detached results, and class
means summed over every batch."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hessian_nb.class_structure import class_means, class_split
from hessian_nb.operators import FunctionOp, SumOp, as_op
from hessian_nb.core import Objective
from hessian_nb.gauss_newton import ggn, residual, residual_op, residual_vp
from helpers import raises

DT = torch.float64
N, B = 10, 4  # batches of 4, 4 and 2 samples: unequal sizes, so a missing weight N_b / N shows


def problem(n=N, seed=0, C=3):
    "A small tanh MLP (P = 43) in float64 with every one of its C classes present."
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, C)).to(DT)
    y = torch.arange(n) % C
    return model, torch.randn(n, 4, generator=g, dtype=DT), y[torch.randperm(n, generator=g)]


def sym(P, dtype=DT, seed=0):
    A = torch.randn(P, P, dtype=DT, generator=torch.Generator().manual_seed(seed))
    return as_op(((A + A.T) / 2).to(dtype))


# Operator algebra: one dimension, dtype and device ------------------------------------------------------------------------

@pytest.mark.parametrize("other", [lambda: sym(50), lambda: sym(60, torch.float32),
                                   lambda: FunctionOp(lambda V: V, 60, DT, device="meta")],
                         ids=["dimension", "dtype", "device"])
def test_operators_of_different_dimension_dtype_or_device_are_not_combined(other):
    "A + B, A - B and SumOp refuse operators that differ in P, dtype or device when combined, not at the first product."
    A, Bop = sym(60), other()
    for combine in (lambda: A + Bop, lambda: A - Bop, lambda: Bop + A, lambda: SumOp([(1.0, A), (2.0, Bop)])):
        with raises(ValueError, "cannot combine", "differ in dimension, dtype or device"):
            combine()


def test_operators_of_one_kind_combine():
    A, Bop = sym(20, seed=1), sym(20, seed=2)
    V = torch.randn(20, 3, dtype=DT)
    torch.testing.assert_close((A - 2 * Bop) @ V, A.M @ V - 2 * (Bop.M @ V), rtol=1e-14, atol=1e-14)


# Custom losses: the mean over samples ---------------------------------------------------------------------------------------

def test_a_summed_custom_loss_is_refused():
    model, X, y = problem()
    with raises(ValueError, "is the sum of its samples' losses", "reduction='mean'"):
        Objective(model, X, y, loss=lambda z, t: F.cross_entropy(z, t, reduction="sum"))
    with raises(ValueError, "is the sum of its samples' losses"):
        Objective(model, X, y, loss=lambda z, t: F.cross_entropy(z, t, reduction="sum"), batch_size=B)


def test_a_loss_that_is_no_mean_is_refused():
    "The largest sample loss is neither the mean nor the sum; a sum divided by a fixed number is a sum (up to scale)."
    model, X, y = problem()
    with raises(ValueError, "is not the mean of its samples' losses", "the Objective needs the mean over samples"):
        Objective(model, X, y, loss=lambda z, t: F.cross_entropy(z, t, reduction="none").max())
    with raises(ValueError, "is the sum of its samples' losses"):
        Objective(model, X, y, loss=lambda z, t: F.cross_entropy(z, t, reduction="sum") / 4)


@pytest.mark.parametrize("n", [7, 9])
def test_a_mean_loss_on_an_odd_batch_is_taken(n):
    "A mean over an odd number of samples: its halves have 3 and 4 samples, and their weighted mean is the batch's."
    model, X, y = problem(n)
    obj = Objective(model, X, y, loss=lambda z, t: F.cross_entropy(z, t))
    torch.testing.assert_close(obj.loss(), F.cross_entropy(model(X), y).detach(), rtol=1e-14, atol=0)


# A deterministic forward -----------------------------------------------------------------------------------------------------

class FunctionalDropout(nn.Module):
    "Dropout by F.dropout(training=True): random in eval mode, invisible to the check for dropout layers in training mode."
    def forward(self, x): return F.dropout(x, 0.5, training=True)


class Noise(nn.Module):
    def forward(self, x): return x + 1e-3 * torch.randn_like(x)


@pytest.mark.parametrize("layer", [FunctionalDropout, Noise])
def test_a_random_forward_in_eval_mode_is_refused(layer):
    model, X, y = problem()
    random_model = nn.Sequential(model[0], model[1], layer(), model[2]).eval()
    with raises(ValueError, "two forward passes at the same parameters gave different logits", "deterministic"):
        Objective(random_model, X, y)


def test_a_dropout_layer_in_training_mode_is_refused():
    model, X, y = problem()
    with raises(ValueError, "in training mode", "model.eval()"):
        Objective(nn.Sequential(model[0], model[1], nn.Dropout(0.5), model[2]).train(), X, y)


# Batches: each weighted by its share of the samples -------------------------------------------------------------------------

def full_batch_reference(model, X, y):
    "Loss, gradient and Hessian of the plain full-batch mean cross-entropy, by torch.func (independent of the Objective)."
    from torch.func import functional_call, grad, hessian
    names, shapes = zip(*[(n, p.shape) for n, p in model.named_parameters()])
    numels = [s.numel() for s in shapes]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(th):
        params = {n: c.view(s) for n, c, s in zip(names, th.split(numels), shapes)}
        return F.cross_entropy(functional_call(model, params, (X,)), y)
    return loss(theta).detach(), grad(loss)(theta), hessian(loss)(theta)


def test_unequal_batches_give_the_full_batch_loss_gradient_hessian_and_gauss_newton():
    model, X, y = problem()
    L, g, H = full_batch_reference(model, X, y)
    V = torch.randn(H.shape[0], 3, dtype=DT, generator=torch.Generator().manual_seed(1))
    G = ggn(Objective(model, X, y))
    batches = [(X[i:i + B], y[i:i + B]) for i in range(0, N, B)]
    for obj in (Objective(model, X, y, batch_size=B), Objective(model, batches)):
        assert [len(Xb) for Xb, _, _ in obj.batches] == [4, 4, 2]
        torch.testing.assert_close(obj.loss(), L, rtol=1e-14, atol=0)
        torch.testing.assert_close(obj.grad(), g, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(obj.hvp(V), H @ V, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(ggn(obj), G, rtol=0, atol=1e-14 * float(G.abs().max()))


# Results are plain tensors: nothing left attached to a graph ----------------------------------------------------------------

def test_grad_leaves_nothing_requiring_grad():
    model, X, y = problem()
    obj = Objective(model, X, y, batch_size=B)
    theta = obj.theta + 0.01
    g0, g1 = obj.grad(), obj.grad(theta)
    assert not g0.requires_grad and not g1.requires_grad
    assert not obj.theta.requires_grad and not theta.requires_grad  # neither the Objective's point nor the caller's
    torch.testing.assert_close(obj.grad(), g0, rtol=0, atol=0)  # a second call gives the same, from an untouched point
    assert not obj.hvp(torch.ones(obj.num_params, dtype=DT)).requires_grad
    assert not obj.loss().requires_grad


def test_streamed_residual_products_are_detached_and_equal_the_unbatched():
    "R V from batches (tensors with batch_size, a list of batches) equals R V in one batch, and is a plain tensor."
    model, X, y = problem()
    V = torch.randn(43, 3, dtype=DT, generator=torch.Generator().manual_seed(2))
    whole = Objective(model, X, y)
    ref = residual_vp(whole, V)
    torch.testing.assert_close(residual(whole) @ V, ref, rtol=1e-12, atol=1e-14)
    batches = [(X[i:i + B], y[i:i + B]) for i in range(0, N, B)]
    for obj in (Objective(model, X, y, batch_size=B), Objective(model, batches)):
        RV = residual_vp(obj, V)
        assert not RV.requires_grad
        torch.testing.assert_close(RV, ref, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(residual_op(obj) @ V[:, 0], ref[:, 0], rtol=1e-12, atol=1e-14)


# Class means: summed over every batch ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_class_means_over_batches_equal_the_unbatched(loss):
    model, X, y = problem(n=12, C=4)
    whole = Objective(model, X, y, loss=loss)
    dcc, shares = class_means(whole)
    torch.testing.assert_close(dcc, class_split(whole).delta_cc, rtol=1e-12, atol=1e-14)  # the per-sample definition
    torch.testing.assert_close(shares, torch.full((4,), 0.25, dtype=DT))
    batches = [(X[i:i + 5], y[i:i + 5]) for i in range(0, 12, 5)]
    for obj in (Objective(model, X, y, loss=loss, batch_size=5), Objective(model, batches, loss=loss)):
        d, s = class_means(obj)
        torch.testing.assert_close(d, dcc, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(s, shares, rtol=0, atol=0)


# FactorOp + FactorOp of another kind goes through SumOp's check (it used to concatenate: float64 + float32 promoted)

@pytest.mark.parametrize("V2", [lambda: torch.randn(10, 3, dtype=torch.float32), lambda: torch.randn(12, 3, dtype=DT),
                                lambda: torch.empty(10, 3, dtype=DT, device="meta")], ids=["dtype", "dimension", "device"])
def test_factor_operators_of_different_kinds_are_not_combined(V2):
    from hessian_nb.operators import FactorOp
    with raises(ValueError, "cannot combine"):
        FactorOp(torch.randn(10, 2, dtype=DT)) + FactorOp(V2())
