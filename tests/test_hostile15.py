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


def test_subspace_overlap_checks_its_bases():
    from hessian_nb.class_structure import subspace_overlap
    Q = torch.linalg.qr(torch.randn(6, 2, dtype=torch.float64)).Q
    assert abs(subspace_overlap(Q, Q) - 1) < 1e-12 and abs(subspace_overlap(Q.float(), Q) - 1) < 1e-6  # dtypes mix
    for Q1, Q2, says in ((2 * Q, Q, "not orthonormal"), (Q[:, 0], Q, "must be a \\(P, k\\)"), (Q, torch.linalg.qr(torch.randn(5, 2, dtype=torch.float64)).Q, "rows")):
        with pytest.raises(ValueError, match=says): subspace_overlap(Q1, Q2)


def test_density_width_when_the_nodes_coincide():
    from hessian_nb.spectrum import Quadrature, density
    for value, grid in ((1e-6, torch.linspace(0, 2e-6, 2001)), (2.0, torch.linspace(1.9, 2.1, 2001))):
        nodes = torch.full((1, 3), value, dtype=torch.float64)
        nodes[0, 1] += value * 1e-15  # equal up to rounding (or exactly equal, for the first)
        q = Quadrature(nodes=nodes, weights=torch.full((1, 3), 1 / 3, dtype=torch.float64), P=3, products=3)
        mass = float(density(q, grid).sum() * (grid[1] - grid[0]))
        assert abs(mass - 1) < 1e-3, (value, mass)  # a unit mass, seen by a grid of its own scale


def test_lanczos_steps_fewer_than_the_pairs_and_operator_casts_are_refused():
    from hessian_nb.operators import as_op
    from hessian_nb.spectrum import lanczos
    A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="max_iter >= k"): lanczos(as_op(A), k=5, max_iter=3)
    with pytest.raises(TypeError, match="cast it instead"): as_op(A, dtype=torch.float32)
    for dt in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match="SciPy works in float32 or float64"): as_op(A.to(dt)).to_scipy()


def test_loss_checks_name_the_cause():
    torch.manual_seed(0)
    X, y = torch.randn(12, 5, dtype=torch.float64), torch.randn(12, dtype=torch.float64)
    m = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"Pass y\[:, None\]"):
        Objective(m, X, y, loss=nn.MSELoss())
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="mixes the samples"):
        Objective(m, X, y[:, None], loss=lambda z, t: (((z - t) / t.std()) ** 2).mean())


def test_report_names_numpy_data():
    import numpy as np
    from hessian_nb.network import report
    m = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(TypeError, match="NumPy arrays"):
        report(m, (np.zeros((4, 3), dtype=np.float32), np.zeros(4, dtype=np.int64)))
