"""The unclear errors left after the third hostile round, and what a fourth round found: each case now gives the right
number or a clear error naming the fix. (Sharded cases live in test_distributed.py.)"""
import numpy as np
import pytest
import scipy.sparse
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hessian_nb.core import FactorOp, Objective, as_op
from hessian_nb.spectrum import hutchpp, lanczos, slq

D = torch.float64
G = torch.Generator().manual_seed(0)
X, Y = torch.randn(12, 4, generator=G, dtype=D), torch.arange(12) % 3
A = torch.randn(6, 6, generator=G, dtype=D)
M = A + A.T


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()


@pytest.mark.filterwarnings("ignore:the matrix subclass")
@pytest.mark.parametrize("make", [scipy.sparse.csr_matrix, scipy.sparse.csr_array, np.matrix])
def test_sparse_matrices_and_numpy_matrices_are_operators(make):
    op = as_op(make(M.numpy()))
    torch.testing.assert_close(op @ torch.eye(6, dtype=D), M)
    torch.testing.assert_close(lanczos(op, k=2).values, torch.linalg.eigvalsh(M).flip(0)[:2])


def test_a_function_operator_needs_an_integer_dimension():
    with pytest.raises(ValueError, match=r"P=6.7: the dimension .* must be a positive integer"):
        as_op(lambda V: V, P=6.7)
    for bad in (0, True, "6"):
        with pytest.raises(ValueError, match="must be a positive integer"):
            as_op(lambda V: V, P=bad)
    assert as_op(lambda V: V, P=np.int64(6), dtype=D).P == 6


def test_a_half_precision_factor_is_refused_by_eigh():
    with pytest.raises(TypeError, match=r"float16.*FactorOp\(V.float\(\)\)"):
        FactorOp(torch.randn(6, 2, generator=G).half()).eigh()


@pytest.mark.parametrize("solver", [lambda op, s: lanczos(op, 2, seed=s), lambda op, s: slq(op, 2, 3, seed=s),
                                    lambda op, s: hutchpp(op, 6, seed=s)])
@pytest.mark.parametrize("seed", [None, 1.5, True])
def test_a_seed_must_be_an_integer(solver, seed):
    with pytest.raises(TypeError, match="seed=.* must be an integer"):
        solver(as_op(M), seed)


def test_a_model_must_be_a_module():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got function"):
        Objective(lambda x: x.sum(1, keepdim=True), X, Y)


class Bag(nn.Module):
    def __init__(self, **kw):
        super().__init__(); torch.manual_seed(0)
        self.e, self.out = nn.Embedding(10, 3, **kw).double(), nn.Linear(3, 3).double()

    def forward(self, ids): return self.out(self.e(ids).mean(1))


IDS = torch.randint(0, 10, (12, 4), generator=G)


def test_sparse_embeddings_are_refused():
    with pytest.raises(ValueError, match=r"'e' \(Embedding\) has sparse=True.*sparse=False"):
        Objective(Bag(sparse=True), IDS, Y)


def test_an_embedding_that_renormalises_its_rows_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"writes its own parameters in place.*max_norm=None"):
        Objective(Bag(max_norm=0.5), IDS, Y)
    Objective(Bag(), IDS, Y).H @ torch.ones(sum(p.numel() for p in Bag().parameters()), dtype=D)  # the plain one works


def test_integer_inputs_to_a_float_model_say_how_to_convert():
    with pytest.raises(TypeError, match=r"hold integers \(torch.int64\).*X.to\(torch.float64\).*nn.Embedding"):
        Objective(mlp(), torch.randint(0, 3, (12, 4)), Y)


def test_a_dataloader_without_batches_is_refused():
    with pytest.raises(ValueError, match="batch_size=None: it yields single samples"):
        Objective(mlp(), DataLoader(TensorDataset(X, Y), batch_size=None))


def test_a_later_batch_of_another_shape_is_named():
    batches = [(X[:6], Y[:6]), (torch.randn(6, 5, dtype=D), Y[6:])]
    with pytest.raises(ValueError, match=r"batch 1 of the data holds inputs of shape \(6, 5\), but the first batch \(6, 4\)"):
        Objective(mlp(), batches)
    T = torch.randn(12, 3, generator=G, dtype=D)
    batches = [(X[:6], T[:6, :2]), (X[6:], T[6:])]  # a custom loss takes targets of any shape: one shape per data set
    with pytest.raises(ValueError, match=r"batch 1 of the data holds targets of shape \(6, 3\), but the first batch \(6, 2\)"):
        Objective(mlp(), batches, loss=lambda z, t: ((z[:, :t.shape[1]] - t) ** 2).sum(1).mean())


def test_ignore_index_labels_are_explained():
    y = Y.clone(); y[:4] = -100
    with pytest.raises(ValueError, match=r"-100 is PyTorch's ignore_index.*keep = y != -100"):
        Objective(mlp(), X, y)
