"""The live explorers, driven through their Python API as a notebook would: moving a slider updates the output."""
import torch

from hessian_nb.core import toy_problem
from hessian_nb.data import from_tensors
from hessian_nb.widgets import InterpolationExplorer, SpectrumExplorer, frames_player


def test_spectrum_explorer_follows_its_sliders(tmp_path, monkeypatch):
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path))
    ex = SpectrumExplorer(grid={"classes": (2, 3), "width": (5, 7), "spread": (1.0,)},
                          start={"classes": 2, "width": 5, "spread": 1.0})
    p0 = ex.facts.P
    ex.sliders["width"].value = 7
    assert ex.facts.P > p0 and "width 7" in ex.status.value
    ex.sliders["width"].value = 5  # back: read from the cache, same numbers
    assert ex.facts.P == p0 and (tmp_path / "results").exists()


def test_spectrum_explorer_says_no_clear_gap(tmp_path, monkeypatch):
    "A position whose spectrum has no clear gap says so (it used to print 'None outliers counted')."
    import dataclasses
    import hessian_nb.widgets as w
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path))
    flat = torch.linspace(1.0, 0.5, 40, dtype=torch.float64)  # a smooth spectrum: no edge to count
    real = w.explorer_facts
    monkeypatch.setattr(w, "explorer_facts", lambda **p: dataclasses.replace(real(**p), H=flat))
    ex = SpectrumExplorer(grid={"classes": (2,), "width": (5,), "spread": (1.0,)},
                          start={"classes": 2, "width": 5, "spread": 1.0})
    assert ex.facts.count_H is None and "no clear gap" in ex.status.value and "None" not in ex.status.value


def test_interpolation_explorer_follows_its_slider():
    model, X, _ = toy_problem("mlp", n=30)
    data = from_tensors(X, torch.arange(30) % 3, num_classes=3)
    other = toy_problem("mlp", n=30, seed=1)[0]
    ix = InterpolationExplorer(model, other, data, alphas=torch.linspace(0, 1, 5), start=0.0)
    s0 = ix.sharpness
    ix.slider.value = 1.0
    assert "alpha = 1.00" in ix.status.value and ix.sharpness != s0


def test_frames_player_is_offline():
    html = frames_player(["a", "b"], lambda ax, t: ax.set_title(t))
    assert "https://" not in html and "http://" not in html and html.count("data:image/png;base64") == 2


def test_the_explorers_work_shows_inside_the_widget(tmp_path, monkeypatch):
    "Training and Lanczos run inside the widget's own output area, so their progress bars show there, not in the log."
    import dataclasses
    import ipywidgets
    import hessian_nb.widgets as w
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path))
    inside = []
    monkeypatch.setattr(ipywidgets.Output, "__enter__", lambda self: inside.append(self) or self)
    monkeypatch.setattr(ipywidgets.Output, "__exit__", lambda self, *a: inside.remove(self))
    seen = []
    real_facts, real_sharp = w.explorer_facts, None
    monkeypatch.setattr(w, "explorer_facts", lambda **p: seen.append(list(inside)) or real_facts(**p))
    ex = SpectrumExplorer(grid={"classes": (2,), "width": (5,), "spread": (1.0,)},
                          start={"classes": 2, "width": 5, "spread": 1.0})
    assert seen == [[ex.log]] and ex.log in ex.widget.children
    import hessian_nb.interpolation as interp
    real_sharp = interp.sharpness_along
    monkeypatch.setattr(interp, "sharpness_along", lambda *a, **k: seen.append(list(inside)) or real_sharp(*a, **k))
    model, X, _ = toy_problem("mlp", n=30)
    ix = InterpolationExplorer(model, toy_problem("mlp", n=30, seed=1)[0], from_tensors(X, torch.arange(30) % 3, num_classes=3),
                               alphas=torch.linspace(0, 1, 3), start=0.0)
    assert seen[-1] == [ix.log] and ix.log in ix.widget.children
