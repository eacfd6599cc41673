"""The bulk-and-outliers experiments: their configurations at both scales, bad scales, and the measurements on a toy model."""
import pytest
import torch

from hessian_nb import bulk
from hessian_nb.core import toy_problem
from hessian_nb.data import from_tensors
from hessian_nb.models import num_params
from hessian_nb.train import make_data, make_model
from helpers import raises


@pytest.mark.parametrize("fn", [bulk.class_configs, bulk.width_configs, bulk.spread_configs, bulk.batch_configs,
                                bulk.class_sweep, bulk.width_sweep, bulk.spread_sweep, bulk.batch_comparison])
def test_unknown_scale(fn):
    with raises(ValueError, "scale='huge'", "choose one of ['book', 'paper']"):
        fn("huge")


def test_paper_scale_is_the_papers():
    "Sagun et al. 2017: 100-30-30-k blob nets with M = 3960 + 31k; one-hidden-layer nets for the width sweep."
    cfgs = bulk.class_configs("paper")
    assert [num_params(make_model(c, make_data(c))) for c in cfgs.values()] == [3960 + 31 * k for k in (2, 5, 10, 20, 50)]
    assert all(c.model["hidden"] == [h] for h, c in bulk.width_configs("paper").items())
    sb, lb = bulk.batch_configs("paper").values()
    assert sb.batch_size == 10 and lb.batch_size is None and sb.lr == lb.lr and sb.max_steps == lb.max_steps and sb.seed == lb.seed


def test_spectrum_facts_on_a_toy():
    model, X, y = toy_problem("mlp", n=40)
    data = from_tensors(X, y, num_classes=3)
    f = bulk.spectrum_facts(model, data)
    assert f.P == 51 and f.N == len(data.X) and f.C == 3
    assert f.H.shape == (51,) and bool((f.H[1:] <= f.H[:-1]).all())          # descending, as everywhere
    assert float(f.G[-1]) > -1e-12 and float(f.H[-1]) >= f.R_min - 1e-12     # G PSD; negative curvature bounded by R
    assert f.grad_norm > 0 and (f.count_H is None or 0 < f.count_H <= 51)
    assert bulk.spectrum_facts(model, data, parts=("H",)).G is None          # only what is asked for is diagonalised


def test_spread_trajectory_names_the_spreads_it_has():
    "A spread the sweep does not have is refused with the ones it has (not a bare KeyError: 0.3)."
    with raises(ValueError, "spread=0.3", "[0.2, 0.4, 0.6, 0.8, 1.0]"):
        bulk.spread_trajectory(0.3)
