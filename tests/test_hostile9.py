"""A ninth hostile round (an independent reviewer, ~280 checks over the whole library after its split into basics,
losses, distributed, operators, checks and core). What it found and what now happens; the rest is in tests/README.md."""
import pytest
import torch
import torch.nn.functional as F

from hessian_nb.core import Objective, toy_problem
from hessian_nb.operators import as_op


def test_a_loss_of_shape_one_is_refused_with_the_fix():
    "A loss returning shape (1,) was taken, then G and R failed with raw shape errors."
    model, X, y = toy_problem(n=8)
    with pytest.raises(ValueError, match=r"returned shape \(1,\), not a 0-d scalar.*\.squeeze\(\)"):
        Objective(model, X, y, loss=lambda z, t: F.cross_entropy(z, t).reshape(1))
    Objective(model, X, y, loss=lambda z, t: F.cross_entropy(z, t).reshape(1).squeeze())  # the fix works


def test_scipy_adjoint_of_an_asymmetric_function_is_refused():
    "to_scipy() gave A x for A^T x without checking: scipy's .H, .T, lsqr, lsmr got wrong numbers."
    M = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, dtype=torch.float64).numpy()
    A = as_op(lambda V: M @ V, P=4, dtype=torch.float64).to_scipy()
    torch.testing.assert_close(torch.as_tensor(A.matvec(x)), M @ torch.as_tensor(x))  # products need no symmetry
    with pytest.raises(ValueError, match="is not symmetric"):
        A.rmatvec(x)
    with pytest.raises(ValueError, match="is not symmetric"):
        A.H.matvec(x)
    S = M + M.T
    torch.testing.assert_close(torch.as_tensor(as_op(lambda V: S @ V, P=4, dtype=torch.float64).to_scipy().rmatvec(x)),
                               S @ torch.as_tensor(x), rtol=1e-12, atol=1e-14)


def _mlp():
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()


class _Scaled(torch.nn.Module):
    "A model holding a plain tensor attribute (neither parameter nor buffer)."
    def __init__(self):
        super().__init__()
        self.body, self.scale = _mlp(), torch.tensor(2.0, dtype=torch.float64)

    def forward(self, x): return self.body(x) * self.scale


def _swap(m): m[1] = torch.nn.Softsign()
def _patch(m): m[1].forward = torch.sin
def _append(m): m.append(torch.nn.Tanh())
def _replace_tensor(m): m.scale = torch.tensor(6.0, dtype=torch.float64)
def _edit_tensor(m): m.scale.mul_(3)


@pytest.mark.parametrize("change, model, says", [
    (_swap, _mlp, "module '1' was replaced"), (_patch, _mlp, "got another forward"),
    (_append, _mlp, "module '3' was replaced, added or removed"),
    (_replace_tensor, _Scaled, "tensor attribute 'scale'"), (_edit_tensor, _Scaled, "tensor attribute 'scale'")])
def test_a_model_changed_after_construction_is_refused(change, model, says):
    "A layer swapped, forward patched, a layer appended, a tensor attribute replaced or edited: the products "
    "used the old graph while loss() used the new model (single batch), or mixed models across processes."
    X, y = torch.randn(8, 3, dtype=torch.float64), torch.arange(8) % 3
    m = model()
    obj = Objective(m, X, y)
    v = torch.ones(obj.num_params, dtype=torch.float64)
    obj.hvp(v)
    change(m)
    for call in (lambda: obj.hvp(v), obj.loss, obj.grad, obj.hessian):
        with pytest.raises(RuntimeError, match=f"the model changed after the Objective was built: .*{says}"):
            call()


def test_a_tensor_the_forward_itself_replaces_is_its_own_state():
    "A module caching its last input as a plain attribute changes it at every call: that is not a change of the model."
    class Caching(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.last = _mlp(), torch.zeros(1)

        def forward(self, x):
            self.last = x.detach()
            return self.body(x)
    X, y = torch.randn(8, 3, dtype=torch.float64), torch.arange(8) % 3
    obj = Objective(Caching(), X, y)
    v = torch.ones(obj.num_params, dtype=torch.float64)
    torch.testing.assert_close(obj.hvp(v), obj.hessian() @ v, rtol=1e-12, atol=1e-14)


def test_a_hook_that_observes_is_welcome():
    "Hooks are not part of the check (loggers and profilers are common); one that changes outputs is a known limit."
    m = _mlp()
    X, y = torch.randn(8, 3, dtype=torch.float64), torch.arange(8) % 3
    obj = Objective(m, X, y)
    seen = []
    handle = m.register_forward_hook(lambda mod, i, out: seen.append(out.shape))
    obj.hvp(torch.ones(obj.num_params, dtype=torch.float64))
    obj.loss()
    handle.remove()
    assert seen, "the hook ran"
