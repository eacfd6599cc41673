"""Papyan's class split on cases the chapter does not use (unbalanced classes, another model), and its bad input."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hessian_nb.class_structure import averaged_top_space, class_labels, class_split, logistic_ggn, subspace_overlap, theorem_8_1
from hessian_nb.core import Objective
from hessian_nb.gauss_newton import ggn
from helpers import raises

DT = torch.float64


def problem(counts=(3, 7, 2, 5), seed=0):
    "An ELU MLP with 4 classes of unequal sizes."
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.ELU(), nn.Linear(7, len(counts))).to(DT)
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return model, torch.randn(len(y), 5, generator=g, dtype=DT), y


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_split_is_exact_with_unbalanced_classes(loss):
    model, X, y = problem()
    obj = Objective(model, X, y, loss=loss)
    s = class_split(obj)
    torch.testing.assert_close(s.weights, torch.tensor([3, 7, 2, 5], dtype=DT) / 17)
    G = ggn(obj)
    torch.testing.assert_close(s.matrix(0, 1, 2, 3), G, rtol=0, atol=1e-13 * float(G.abs().max()))
    eG, e012, e1 = torch.linalg.eigvalsh(G).flip(0), s.eigvals(0, 1, 2), s.eigvals(1)
    tol = 1e-12 * float(eG[0])
    assert bool((eG[:len(e012)] >= e012 - tol).all()) and bool((e012[:4] >= e1[:4] - tol).all())


def test_averaging_gives_eigenvectors_of_G1():
    model, X, y = problem()
    s = class_split(Objective(model, X, y))
    w, Q = averaged_top_space(s, 3)
    G1 = s.matrix(1)
    torch.testing.assert_close(G1 @ Q, Q * w, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(Q.T @ Q, torch.eye(3, dtype=DT), rtol=0, atol=1e-10)
    assert abs(subspace_overlap(Q, Q) - 1) < 1e-12 and subspace_overlap(Q[:, :1], Q[:, 1:2]) < 1e-20


def test_empty_class():
    model, X, y = problem()
    with raises(ValueError, "class(es) [2] of 0..3 have no sample", "drop the empty classes"):
        class_labels(Objective(model, X, torch.where(y == 2, 0, y)))


def test_single_class():
    model = nn.Sequential(nn.Linear(5, 1)).to(DT)
    X = torch.randn(6, 5, dtype=DT)
    with raises(ValueError, "C = 1 output", "identically 0"):
        class_split(Objective(model, X, torch.zeros(6, dtype=torch.long)))


def test_more_classes_than_logits():
    model, X, y = problem()
    with raises(ValueError, "labels must lie in 0..3", "widen the output layer"):
        Objective(model, X, y + 1)


def test_regression_targets_have_no_classes():
    model, X, y = problem()
    with raises(ValueError, "real-valued", "no classes"):
        class_split(Objective(model, X, torch.randn(len(y), 4, dtype=DT), loss="mse"))


def test_one_hot_targets_are_classes():
    model, X, y = problem()
    assert torch.equal(class_labels(Objective(model, X, F.one_hot(y, 4).to(DT), loss="mse")), y)


def test_theorem_arguments_and_a_larger_case():
    with raises(ValueError, "C >= 3", "D >= C", "0 < alpha < 1"): theorem_8_1(5, 3, 1.0, 0.1)
    with raises(ValueError, "0 < alpha < 1"): theorem_8_1(3, 5, 1.0, 1.5)
    w = torch.linalg.eigvalsh(logistic_ggn(6, 12, 1.5, 0.4))
    pred = torch.cat([torch.full((m,), v, dtype=DT) for v, m in theorem_8_1(6, 12, 1.5, 0.4)]).sort().values
    torch.testing.assert_close(w, pred, rtol=0, atol=1e-12)
