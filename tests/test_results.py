"""Result types: dataclasses whose eigenvalues are all in one order, descending (as lanczos, Spectra and the chapters'
tables read them), checked against dense eigvalsh on a tiny network."""
import dataclasses

import torch

from hessian_nb.core import Objective, toy_problem


def descending(e: torch.Tensor) -> bool:
    return bool((e[:-1] >= e[1:]).all())


def test_hierarchy_facts_is_a_dataclass_with_descending_spectra():
    from hessian_nb.class_structure import Hierarchy, class_split, hierarchy_facts
    from hessian_nb.gauss_newton import ggn
    obj = Objective(*toy_problem(n=8))
    f = hierarchy_facts(obj)
    assert isinstance(f, Hierarchy) and dataclasses.is_dataclass(f)
    assert all(descending(e) for e in (f.G, f.G012, f.G1)), (f.G[:4], f.G012[:4], f.G1[:4])
    torch.testing.assert_close(f.G, torch.linalg.eigvalsh(ggn(obj)).flip(0), rtol=0, atol=1e-12 * float(f.G[0]))
    G012 = class_split(obj).matrix(0, 1, 2)
    torch.testing.assert_close(f.G012[:5], torch.linalg.eigvalsh(G012).flip(0)[:5], rtol=1e-9, atol=1e-12)
    assert (f.C, f.N, f.P) == (3, 8, obj.num_params) and f.split_error < 1e-12 and 0 <= f.overlap <= 1 + 1e-12


def test_check_split_is_a_dataclass():
    from hessian_nb.gauss_newton import SplitCheck, check_split
    f = check_split(Objective(*toy_problem(n=8)))
    assert isinstance(f, SplitCheck) and all(descending(e) for e in (f.H, f.G, f.R))


def test_the_experiments_results_are_dataclasses_read_back_typed(tmp_path, monkeypatch):
    "class_facts (a ClassFacts, spectra descending against dense G), the lines and the two-phase run of chapter 07."
    from hessian_nb.class_scale import ClassFacts, class_facts
    from hessian_nb.data import from_tensors
    from hessian_nb.gauss_newton import ggn
    from hessian_nb.interpolation import Line, TwoPhase, interpolate, two_phase
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path))
    model, X, _ = toy_problem(n=30)
    y = torch.arange(30) % 3
    data = from_tensors(X, y, num_classes=3, test_fraction=0.3)
    f = class_facts(model, data, tol=1e-10)
    assert isinstance(f, ClassFacts) and all(descending(e) for e in (f.G, f.G1, f.G012))
    dense = torch.linalg.eigvalsh(ggn(Objective(model, data.X, data.y))).flip(0)[:len(f.G)]
    torch.testing.assert_close(f.G, dense, rtol=1e-6, atol=1e-10)
    tp = two_phase(model, data, small_batch=4, lr=0.1, steps=3, log_every=1)
    line = interpolate(tp.large, tp.small, data, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    assert isinstance(tp, TwoPhase) and isinstance(line, Line) and tp.switch == 3 and line.test_loss is not None
