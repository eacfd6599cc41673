"""A tenth hostile round: parameters reached around the module, losses that leave samples out, autocast and inference
mode, a model changed after construction on the paths that did not check it, a backward right only to first order, a
stream without an end, and byte limits that are not numbers. Each case gave a silent wrong number, a hang or a raw error;
each now gives the right number or an error naming the fix."""
import itertools

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

import hessian_nb.checks as checks
from hessian_nb.class_structure import averaged_top_space, class_means
from hessian_nb.core import Objective
from hessian_nb.gauss_newton import ggn, ggn_op, residual, residual_op


def data(n=40, d=3, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.arange(n) % C


def mlp(d=3, C=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 5), nn.Tanh(), nn.Linear(5, C)).double()


class ListRef(nn.Module):
    "A parameter used normally and also through a plain Python list (functional_call cannot substitute that one)."
    def __init__(self):
        super().__init__(); self.l = nn.Linear(3, 3).double(); self.refs = [self.l.weight]
    def forward(self, x): return self.l(x) + torch.tanh(x @ self.refs[0].T)


class ClosureRef(nn.Module):
    def __init__(self):
        super().__init__(); self.l = nn.Linear(3, 3).double(); w = self.l.weight; self.extra = lambda x: torch.tanh(x @ w.T)
    def forward(self, x): return self.l(x) + self.extra(x)


@pytest.mark.parametrize("make", [ListRef, ClosureRef])
def test_a_parameter_reached_around_the_module_is_refused(make):
    "It stayed constant in every product: the gradient was 51% off and the Hessian 56%."
    torch.manual_seed(0)
    X, y = data()
    with pytest.raises(ValueError, match="reach the loss by a path the library cannot follow.*nn.ParameterList"):
        Objective(make(), X, y)


def test_a_parameter_used_normally_is_taken():
    X, y = data()
    model = mlp()
    obj = Objective(model, X, y)
    ref = torch.autograd.grad(nn.functional.cross_entropy(model(X), y), list(model.parameters()))
    torch.testing.assert_close(obj.grad(), torch.cat([g.reshape(-1) for g in ref]))


@pytest.mark.parametrize("seed", range(12))
def test_a_loss_with_ignored_labels_is_refused_whatever_the_draw(seed):
    "nn.CrossEntropyLoss's ignore_index (-100) left 10% of the samples out: 3 of 12 draws were taken, G + R 10% off H."
    X, y = data(seed=seed)
    y = y.clone(); y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:4]] = -100
    with pytest.raises(ValueError, match="ignore_index=-100 drops the samples labelled -100.*X\\[keep\\], y\\[keep\\]"):
        Objective(mlp(), X, y, loss=nn.CrossEntropyLoss())


def test_a_weighted_loss_is_refused_even_when_its_halves_balance():
    X, y = data(n=6)
    y = torch.tensor([0, 1, 2, 0, 1, 2])  # each half holds one sample of every class: the halves check balances
    with pytest.raises(ValueError, match="not the mean of their losses one at a time"):
        Objective(mlp(), X, y, loss=nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)))


def test_a_plain_nn_loss_is_taken():
    X, y = data()
    obj = Objective(mlp(), X, y, loss=nn.CrossEntropyLoss())
    torch.testing.assert_close(obj.loss(), Objective(mlp(), X, y).loss())


def test_autocast_and_inference_mode_are_refused_and_leave_no_graph_behind():
    "One H @ v under bfloat16 autocast used to cache its graph: every later product was 0.5% off."
    X, y = data()
    obj, V = Objective(mlp(), X, y), torch.randn(38, 2, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for f in (lambda: obj.H @ V, obj.loss, obj.grad, lambda: ggn_op(obj) @ V):
            with pytest.raises(RuntimeError, match="inside an autocast region"): f()
        with pytest.raises(RuntimeError, match="inside an autocast region"): Objective(mlp(), X, y)
    torch.testing.assert_close(obj.H @ V, Objective(mlp(), X, y).H @ V, rtol=1e-12, atol=1e-14)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match="under torch.inference_mode"): obj.grad()
        with pytest.raises(RuntimeError, match="under torch.inference_mode"): Objective(mlp(), X, y)
    with torch.no_grad(): torch.testing.assert_close(obj.grad(), Objective(mlp(), X, y).grad())  # no_grad is fine


def test_a_model_changed_after_construction_is_refused_by_the_residual_and_the_class_means():
    "residual(obj), with_loss and class_means rebuilt from the changed model (R 43% away, the means 18%)."
    X, y = data()
    model = mlp()
    obj = Objective(model, X, y)
    model[1] = nn.Softsign()
    for f in (residual, lambda o: residual_op(o) @ torch.ones(38, dtype=torch.float64), lambda o: o.with_loss("mse"),
              class_means, averaged_top_space):
        with pytest.raises(RuntimeError, match="the model changed after the Objective was built"): f(obj)


def tanh_function(detached: bool):
    "tanh as a custom Function; `detached`: its backward, right in value, is computed from a detached input (no second order)."
    class Tanh(torch.autograd.Function):
        generate_vmap_rule = True  # torch.func style, so that G's per-sample Jacobians can go through it
        @staticmethod
        def forward(x): return torch.tanh(x)
        @staticmethod
        def setup_context(ctx, inputs, output): ctx.save_for_backward(inputs[0])
        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g * (1 - torch.tanh(x.detach() if detached else x) ** 2)
    return Tanh


_HalfTanh = tanh_function(detached=True)


class FirstOrderOnly(nn.Module):
    def __init__(self):
        super().__init__(); self.a, self.b = nn.Linear(3, 5), nn.Linear(5, 3)
    def forward(self, x): return self.b(_HalfTanh.apply(self.a(x)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_backward_right_only_to_first_order_is_refused_for_h_and_r_but_g_is_given(dtype):
    "The Hessian came out 16% off the true one, silently."
    torch.manual_seed(0)
    model, X, y = FirstOrderOnly().to(dtype), *data()
    obj = Objective(model, X.to(dtype), y)
    for f in (lambda: obj.H @ torch.ones(38, dtype=dtype), obj.hessian, lambda: residual_op(obj) @ torch.ones(38, dtype=dtype)):
        with pytest.raises(ValueError, match="not the derivative of the model's gradient.*G needs first derivatives"): f()
    good = nn.Sequential(model.a, nn.Tanh(), model.b)
    torch.testing.assert_close(ggn(obj), ggn(Objective(good, X.to(dtype), y)))


def test_a_true_second_derivative_passes_the_check():
    "A custom Function whose backward is written with torch ops on the saved input: H as the plain module's."
    Tanh2 = tanh_function(detached=False)
    class M(FirstOrderOnly):
        def forward(self, x): return self.b(Tanh2.apply(self.a(x)))
    torch.manual_seed(0)
    model, (X, y) = M().double(), data()
    good = nn.Sequential(model.a, nn.Tanh(), model.b)
    torch.testing.assert_close(Objective(model, X, y).hessian(), Objective(good, X, y).hessian())


class Endless(IterableDataset):
    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        for i in itertools.count(): yield torch.randn(3, generator=g, dtype=torch.float64), i % 3


def test_a_stream_without_an_end_is_refused(monkeypatch):
    "Objective(model, DataLoader(endless IterableDataset)) never returned, its memory growing."
    monkeypatch.setattr(checks, "MAX_STREAM", 2000)
    with pytest.raises(ValueError, match="more than 2,000 samples and has no length: it looks endless"):
        Objective(mlp(), DataLoader(Endless(), batch_size=50))


@pytest.mark.parametrize("bad", [None, "1e9", 2.5, True, 0])
def test_byte_limits_must_be_numbers_of_bytes(bad):
    X, y = data()
    for name in ("max_dense_bytes", "chunk_bytes"):
        with pytest.raises(TypeError, match=f"{name}={bad!r}: it must be a number of bytes"):
            Objective(mlp(), X, y, **{name: bad})


def test_a_density_grid_must_be_one_dimensional_and_its_width_finite():
    from hessian_nb.operators import as_op
    from hessian_nb.spectrum import density, slq
    q = slq(as_op(torch.diag(torch.linspace(0.1, 2, 80, dtype=torch.float64))), probes=2, steps=10)
    for grid in (0.5, torch.zeros(2, 2)):
        with pytest.raises(ValueError, match="pass the points as one 1-D tensor"): density(q, grid)
    with pytest.raises(ValueError, match="positive, finite number"): density(q, torch.zeros(3), sigma=float("inf"))
    assert density(q, [0.5, 1.0]).shape == (2,)


def test_hidden_widths_given_as_a_number_are_refused_with_the_list_to_give():
    from hessian_nb.train import TrainConfig, make_data, make_model
    cfg = TrainConfig(data={"name": "two_blobs"}, model={"arch": "mlp", "hidden": 6})
    with pytest.raises(ValueError, match=r"hidden=6: give the hidden widths as a list, e.g. \[6\]"):
        make_model(cfg, make_data(cfg))


def test_cache_keys_that_json_would_merge_or_cannot_write_are_refused(tmp_path, monkeypatch):
    "cached('t', {1: ...}) then cached('t', {'1': ...}) returned the first value for both."
    import numpy as np
    from hessian_nb.store import cached
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path))
    with pytest.raises(TypeError, match="has the key 1 \\(int\\): keys must be strings"):
        cached("t", {1: "a"}, lambda: 1)
    with pytest.raises(TypeError, match="config\\['k'\\] is a int64"):
        cached("t", {"k": np.int64(3)}, lambda: 1)
    assert cached("t", {"1": "a"}, lambda: 2) == 2 and cached("t", {"1": "b"}, lambda: 3) == 3


def test_a_function_operator_of_another_dtype_names_the_dtype_to_declare():
    from hessian_nb.operators import as_op
    A = torch.eye(5, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"declare the dtype the function computes in, as_op\(fn, P=..., dtype=torch.float64\)"):
        as_op(lambda V: A @ V, P=5) @ torch.ones(5)
    torch.testing.assert_close(as_op(lambda V: A @ V, P=5, dtype=torch.float64) @ torch.ones(5, dtype=torch.float64),
                               torch.ones(5, dtype=torch.float64))


def test_a_training_configuration_with_an_unknown_loss_or_a_name_for_data_is_refused_when_made():
    from hessian_nb.train import TrainConfig
    with pytest.raises(ValueError, match="TrainConfig: loss must be one of 'ce', 'mse'"): TrainConfig(loss="hinge")
    with pytest.raises(ValueError, match="TrainConfig: data must be a dict"): TrainConfig(data="blobs")
    with pytest.raises(ValueError, match="TrainConfig: model must be a dict"): TrainConfig(model="mlp")
