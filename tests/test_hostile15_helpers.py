"""The fifteenth hostile round, the helpers: barrier, line_losses, regime_rows and regime_verdict given the wrong
shapes of input, and `hessian-nb report` given a model that does not fit its data or NumPy data. Each ends in a
TypeError or ValueError (exit status 2 on the command line) that names what was expected and the fix."""
import re
import sys

import pytest
import torch
from torch import nn

from hessian_nb.interpolation import Line, barrier, line_losses, paired_lines, sharpness_along
from hessian_nb.regime import REGIME_RULE, regime_rows, regime_verdict


def t(*v): return torch.tensor(v, dtype=torch.float64)


def pair():
    torch.manual_seed(0)
    a, b = nn.Sequential(nn.Linear(2, 2)), nn.Sequential(nn.Linear(2, 2))
    return a, b, torch.randn(10, 2), torch.arange(10) % 2


# barrier

def test_barrier_still_measures_a_good_line():
    assert barrier(Line(t(0, .5, 1), t(1, 3, 1), t(1, 1, 1))) == 2.0
    assert barrier(Line(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([1, 1]))) == 0.0  # integer tensors


@pytest.mark.parametrize("make", [lambda: [0, .5, 1], lambda: __import__("numpy").array([0, .5, 1])])
def test_barrier_refuses_a_line_of_plain_values_naming_the_fix(make):
    with pytest.raises(TypeError, match=r"alpha and loss must be torch tensors.*torch\.as_tensor"):
        barrier(Line(make(), make(), make()))


def test_barrier_refuses_what_is_not_a_line():
    with pytest.raises(TypeError, match=r"barrier takes a Line .*not dict"):
        barrier({"alpha": t(0, 1), "loss": t(1, 1)})


def test_barrier_refuses_an_empty_line():
    with pytest.raises(ValueError, match=r"the line has no points.*include 0 and 1"):
        barrier(Line(t(), t(), t()))


@pytest.mark.parametrize("line, says", [
    (Line(t(0, .5, 1), t(1, 3), t(1, 1, 1)), r"3 alphas but 2 values of loss"),
    (Line(t(0, .5, 1), torch.ones(3, 2, dtype=torch.float64), t(1, 1, 1)), r"one value per alpha.*\(3, 2\)"),
])
def test_barrier_refuses_a_loss_that_does_not_match_alpha(line, says):
    with pytest.raises(ValueError, match=says): barrier(line)


# line_losses: alphas

@pytest.mark.parametrize("alphas, error, says", [
    (0.5, ValueError, r"alphas=0\.5 is one number: pass a sequence of points, e\.g\. \[0\.5\]"),
    ([[0, 1]], ValueError, r"alphas must be a 1-D sequence.*shape \(1, 2\)"),
    ([], ValueError, r"alphas is empty"),
    ([0, float("nan"), 1], ValueError, r"alphas must be finite"),
    ("0 1", TypeError, r"alphas must be a sequence of numbers.*not str"),
])
def test_line_losses_refuses_alphas_that_are_not_a_sequence_of_points(alphas, error, says):
    a, b, X, y = pair()
    with pytest.raises(error, match=says): line_losses(a, b, X, y, alphas=alphas)


def test_alphas_are_checked_by_every_door():
    from hessian_nb.data import from_tensors
    a, b, X, y = pair()
    d = from_tensors(X, y, test_fraction=0)
    with pytest.raises(ValueError, match="is one number"): sharpness_along(a, b, d, 0.5)
    with pytest.raises(ValueError, match="is one number"): paired_lines({1: a}, {1: b}, d, 0.5)
    line = line_losses(a, b, X, y, alphas=(0, 0.5, 1))  # a tuple, still fine
    assert line.alpha.tolist() == [0, 0.5, 1] and line.loss.shape == (3,)


# regime_rows and regime_verdict

def row(seed, step, g, o, w=8): return {"seed": seed, "step": step, "G/G1": g, "overlap": o, "width": w}


def test_regime_verdict_still_decides():
    v = regime_verdict([row(0, 10, 1.0, 0.95), row(1, 10, 3.0, 0.95), row(2, 10, 1.2, 0.99)])
    assert v.seeds == [0, 1, 2] and v.held == [0, 2] and v.stands


@pytest.mark.parametrize("rows, says", [
    ([{"step": 1, "G/G1": 1.0, "overlap": 1.0}], r"row 0 has no 'seed'"),
    ([row(0, 10, 1.0, 0.9), {"seed": 1, "step": 1, "overlap": 1.0}], r"row 1 has no 'G/G1'"),
])
def test_regime_verdict_names_the_missing_key(rows, says):
    with pytest.raises(ValueError, match=says + r".*regime_rows"): regime_verdict(rows)


def test_regime_verdict_refuses_a_rule_without_its_keys():
    with pytest.raises(ValueError, match=r"rule has no 'overlap'.*REGIME_RULE"):
        regime_verdict([row(0, 10, 1.0, 0.99)], rule={"G/G1": 1.5})
    assert regime_verdict([row(0, 10, 1.0, 0.99)], rule=dict(REGIME_RULE)).stands


def test_regime_verdict_refuses_steps_that_are_not_integers():
    "As strings '9' sorts after '10': the last stage would be the wrong one, silently."
    with pytest.raises(TypeError, match=r"row 0: step='10' is not an integer.*steps must be integers"):
        regime_verdict([row(0, "10", 1.0, 0.99), row(0, "9", 9.0, 0.1)])
    assert regime_verdict([row(0, 10, 1.0, 0.99), row(0, 9, 9.0, 0.1)]).stands  # the later step decides


@pytest.mark.parametrize("rows, says", [
    ({"width 8, seed 0": []}, r"regime_verdict takes rows.*regime_verdict\(regime_rows\(result\)\)"),
    (["width 8, seed 0"], r"each row must be a dict.*not str"),
])
def test_regime_verdict_refuses_what_is_not_rows(rows, says):
    with pytest.raises(TypeError, match=says): regime_verdict(rows)


@pytest.mark.parametrize("label", ["my run", "width 8, seed 0, lr 0.1", "seed 0, width 8", "width 8.5, seed 0"])
def test_regime_rows_names_the_label_it_expects(label):
    with pytest.raises(ValueError, match=rf"{label!r}.*'width W, seed S'"): regime_rows({label: []})


def test_regime_rows_refuses_what_is_not_a_result():
    assert regime_rows({"width 8, seed 0": []}) == []
    with pytest.raises(TypeError, match=r"papyan_regime.*not list"): regime_rows([])
    with pytest.raises(TypeError, match=r"stages.*RegimeStage.*not int"): regime_rows({"width 8, seed 0": [3]})


# hessian-nb report

USERNET = ("import numpy as np\nimport torch\nfrom torch import nn\n"
           "from torch.utils.data import DataLoader, TensorDataset\n"
           "X, Y = torch.randn(30, 4), torch.arange(30) % 3\n"
           "def wide():\n    return nn.Sequential(nn.Linear(5, 3)), (X, Y)\n"
           "def bare():\n    return nn.Linear(5, 3), (X, Y)\n"
           "def wide_loader():\n"
           "    return nn.Sequential(nn.Linear(5, 3)), DataLoader(TensorDataset(X, Y), batch_size=10)\n"
           "def conv():\n    return nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(8, 3)), "
           "(torch.randn(6, 1, 4, 4), torch.arange(6) % 3)\n"
           "def numpy_data():\n    return nn.Sequential(nn.Linear(4, 3)), (X.numpy(), Y.numpy())\n"
           "def numpy_x():\n    return nn.Sequential(nn.Linear(4, 3)), (X.numpy(), Y)\n"
           "def three():\n    return nn.Sequential(nn.Linear(4, 3)), (X, Y, X)\n"
           "def images():\n    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), "
           "(torch.randn(6, 1, 4, 4), torch.arange(6) % 3)\n")


@pytest.fixture
def usernet(tmp_path, monkeypatch):
    (tmp_path / "usernet15h.py").write_text(USERNET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "usernet15h", raising=False)


@pytest.mark.parametrize("fn, says", [
    ("wide", r"X has shape \(30, 4\), 4 features per sample, but the model's first layer 0 \(Linear\) expects "
             r"in_features = 5.*input width match the data.*or give data with 5"),
    ("bare", r"X has shape \(30, 4\), 4 features per sample, but the model's first layer \(Linear\) expects"),
    ("wide_loader", r"X has shape \(10, 4\).*in_features = 5"),
    ("conv", r"X has shape \(6, 1, 4, 4\).*first layer 0 \(Conv2d\) expects in_channels = 3"),
    ("numpy_data", r"the data are NumPy arrays \(ndarray, ndarray\).*torch\.as_tensor\(X\), torch\.as_tensor\(y\)"),
    ("numpy_x", r"the data are NumPy arrays \(ndarray, Tensor\).*torch\.as_tensor"),
    ("three", r"the data is a tuple of 3 tensors.*the pair \(X, y\)"),
])
def test_cli_report_says_what_does_not_fit_in_one_line(usernet, capsys, fn, says):
    from hessian_nb.cli import main
    with pytest.raises(SystemExit) as e: main(["report", f"usernet15h:{fn}", "--k", "3"])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert "Traceback" not in err and "collate_fn" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"hessian-nb report: error: usernet15h:{fn}: "), err
    assert re.search(says, last), last


def test_cli_report_runs_a_model_whose_first_layer_is_not_its_input_width(usernet, capsys):
    "Flatten, then Linear(16, ...): the width is checked only after a failure, never refusing a model that runs."
    from hessian_nb.cli import main
    assert main(["report", "usernet15h:images", "--k", "3"]) == 0
    assert "top eigenvalues of H" in capsys.readouterr().out
