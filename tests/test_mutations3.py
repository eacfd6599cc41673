"""The survivors of a third mutation round (40 small edits over the whole library, chosen by someone who had not seen the
tests; each run with `python -P -m pytest` against a copy of the library carrying one edit). Each test below fails on a
copy carrying its mutant and passes on the library.
"""
from types import SimpleNamespace

import torch

from hessian_nb.core import Objective, toy_problem


def test_the_heaviest_share_counts_at_least_one_sample():
    "within_class: on 8 samples, 5% of them rounds to none; the heaviest share is still the heaviest sample's (not 0)."
    from hessian_nb.class_scale import within_class
    from hessian_nb.class_structure import class_means
    model, X, y = toy_problem(n=8)
    dcc, _ = class_means(Objective(model, X, y))
    f = within_class(model, SimpleNamespace(X=X, y=y), dcc)
    assert 1 / 8 <= f["heavy_G"] <= 1 and 1 / 8 <= f["heavy_G3"] <= 1, f  # the largest of 8 shares is at least the mean
    every = within_class(model, SimpleNamespace(X=X, y=y), dcc, heavy=1.0)
    assert abs(every["heavy_G"] - 1) < 1e-12 and abs(every["heavy_G3"] - 1) < 1e-12, every


def test_digits_pixels_lie_in_the_unit_interval():
    "scikit-learn's digits hold 0..16 per pixel: the lab divides by 16, so the images span [0, 1] exactly."
    from hessian_nb.data import digits
    X = digits(n_per_class=5).X
    assert float(X.min()) == 0.0 and float(X.max()) == 1.0, (float(X.min()), float(X.max()))


def test_an_absolute_explorer_axis_starts_at_zero_for_a_positive_spectrum():
    "The explorer's absolute axis keeps 0 in view, so the bulk at zero stays where the reader looks for it."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from hessian_nb.bulk import Spectra
    from hessian_nb.widgets import draw_spectrum
    fig, ax = plt.subplots()
    f = Spectra(H=torch.tensor([5.0, 3.0, 1.0]), G=None, R=None, P=3, N=1, C=2, loss=0.0, grad_norm=0.0)
    draw_spectrum(ax, f, axis="absolute")
    assert ax.get_xlim() == (0.0, 5.0), ax.get_xlim()
    plt.close(fig)
