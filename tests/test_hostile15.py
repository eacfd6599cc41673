"The fifteenth hostile round: half precision summed over many batches, and the smaller helpers' arguments."
import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hessian_nb.core import Objective
from hessian_nb.gauss_newton import ggn, ggn_diagonal, ggn_op
from hessian_nb.class_structure import class_means


def rel(a, b): return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_sums_over_many_batches(dtype):
    "1,024 batches: a running sum in bfloat16 stalls once it is ~256 shares (the loss came out 0.5 for 1.14)."
    torch.manual_seed(0)
    X, y = torch.randn(2048, 4), torch.randint(0, 3, (2048,))
    m = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)
    obj = Objective(m, DataLoader(TensorDataset(X.to(dtype), y), batch_size=2))
    ref = Objective(copy.deepcopy(m).double(), X.to(dtype).double(), y)  # float64 at the same rounded weights and data
    v = torch.randn(ref.num_params, dtype=torch.float64)
    tol = 0.02  # a few units of bfloat16's rounding (2^-8) on the products of each batch
    assert abs(float(obj.loss()) - float(ref.loss())) < tol * float(ref.loss())
    assert rel(obj.grad(), ref.grad()) < tol
    assert rel(obj.hvp(v.to(dtype)), ref.hvp(v)) < tol
    assert rel(ggn_op(obj) @ v.to(dtype), ggn_op(ref) @ v) < tol
    assert rel(ggn_diagonal(obj), ggn_diagonal(ref)) < tol
    assert rel(class_means(obj)[0], class_means(ref)[0]) < tol
    assert obj.loss().dtype == obj.grad().dtype == dtype  # rounded back to the model's dtype at the end


def test_half_precision_dense_matrices_over_many_batches():
    torch.manual_seed(1)
    X, y = torch.randn(1024, 3), torch.randint(0, 2, (1024,))
    m = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2)).to(torch.bfloat16)
    obj = Objective(m, DataLoader(TensorDataset(X.bfloat16(), y), batch_size=2))
    ref = Objective(copy.deepcopy(m).double(), X.bfloat16().double(), y)
    assert rel(obj.hessian(), ref.hessian()) < 0.02 and rel(ggn(obj), ggn(ref)) < 0.02
