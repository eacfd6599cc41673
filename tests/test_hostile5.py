"""A fifth hostile round: what it found in the fourth round's fixes and in the new collapse diagnostics, each now the right
number or a clear error."""
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from hessian_nb.class_scale import ProfileCE, collapse_facts, penultimate
from hessian_nb.operators import FactorOp, as_op
from hessian_nb.core import Objective
from hessian_nb.data import Data
from hessian_nb.spectrum import hutchpp, lanczos

D = torch.float64
G = torch.Generator().manual_seed(0)
X, Y = torch.randn(12, 4, generator=G, dtype=D), torch.arange(12) % 3


class MakesItsOwnTensors(nn.Module):
    "A float32 model that creates float32 tensors in its forward (an LSTM's h0, a mask, x.float() / 255)."
    def __init__(self):
        super().__init__(); torch.manual_seed(0)
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x): return self.b(torch.tanh(self.a(x)) @ torch.eye(6))  # a float32 matrix of its own


def test_a_float32_model_making_float32_tensors_is_accepted():
    "The derivative check's float64 copy cannot run it: the model is checked as it is (it was refused with a dtype error)."
    obj = Objective(MakesItsOwnTensors(), X.float(), Y)
    assert torch.isfinite(obj.H @ torch.ones(obj.num_params)).all()


class Counting(nn.Module):
    "A forward that writes plain attributes of its own: a call counter and the last batch's size."
    def __init__(self):
        super().__init__(); torch.manual_seed(0)
        self.n, self.calls, self.last = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double(), 0, None

    def forward(self, x):
        self.calls, self.last = self.calls + 1, len(x)
        return self.n(x)


@pytest.mark.parametrize("batch_size", [None, 5])
def test_state_a_forward_writes_is_not_a_setting(batch_size):
    "A call counter and the last batch's size change on every forward: the Objective works on (it refused every call)."
    obj = Objective(Counting(), X, Y, batch_size=batch_size)
    for _ in range(2):
        obj.loss(); obj.grad(); obj.H @ torch.ones(obj.num_params, dtype=D)


def test_a_user_setting_is_still_watched_next_to_forward_state():
    m = Counting()
    m.scale = 1.0
    obj = Objective(m, X, Y)
    obj.loss()
    m.scale = 2.0
    with pytest.raises(RuntimeError, match="setting scale went from 1.0 to 2.0"):
        obj.loss()


def test_penultimate_features_are_those_the_last_linear_to_run_reads():
    class HeadFirst(nn.Module):
        def __init__(self):
            super().__init__(); torch.manual_seed(0)
            self.head, self.body = nn.Linear(16, 3).double(), nn.Sequential(nn.Linear(4, 16), nn.ReLU()).double()

        def forward(self, x): return self.head(self.body(x))
    m = HeadFirst()
    torch.testing.assert_close(penultimate(m, X), m.body(X).detach())
    same = nn.Sequential(m.body, m.head)  # the same network, registered in running order
    data = Data(X, Y, None, None, 3)
    assert collapse_facts(m, data).nc1 == collapse_facts(same, data).nc1


def test_error_bars_and_residuals_at_huge_scales():
    A = torch.randn(30, 30, generator=G, dtype=D)
    M = A + A.T
    small, big = hutchpp(as_op(M), 30), hutchpp(as_op(M * 2.0**600), 30)
    big, small = torch.tensor(big, dtype=D), torch.tensor(small, dtype=D)
    assert torch.isfinite(big).all()
    torch.testing.assert_close(big, small * 2.0**600, rtol=1e-10, atol=0)
    e = lanczos(as_op(M * 1e200), k=2)
    assert e.converged and torch.isfinite(e.residuals).all()
    torch.testing.assert_close(e.values / 1e200, torch.linalg.eigvalsh(M).flip(0)[:2])


def test_profile_constants_are_checked():
    with pytest.raises(ValueError, match=r"eps=1.5: a wrong-class mass must lie in \[0, 1\)"):
        ProfileCE("symmetric", eps=1.5)
    with pytest.raises(ValueError, match=r"class_logits has shape \(3,\): it must be \(C, C\)"):
        ProfileCE("class_mean", class_logits=torch.zeros(3))


def test_the_command_line_reports_a_bad_setting_in_one_line(tmp_path):
    env = {**os.environ, "HESSIAN_NB_SEED_OFFSET": "x", "HESSIAN_NB_CACHE": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "hessian_nb", "run", "training_spectra"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == ("hessian-nb run: error: HESSIAN_NB_SEED_OFFSET='x' is not a whole number >= 0: set it "
                                "to 0, 1, 2, ... or unset it.")


def test_a_tuple_setting_is_watched_and_boolean_labels_refused():
    m = Counting()
    m.window = (3, 3)
    obj = Objective(m, X, Y)
    m.window = (4, 4)
    with pytest.raises(RuntimeError, match=r"setting window went from \(3, 3\) to \(4, 4\)"):
        obj.loss()
    with pytest.raises(ValueError, match="needs integer class labels"):
        Objective(Counting(), X, (Y > 0))


def test_collapse_diagnostics_and_profiles_against_their_definitions():
    "NC1 = tr(S_W S_B^+) / C of the penultimate features; the symmetric profile spreads eps over the C - 1 other classes."
    from hessian_nb.class_scale import map_config
    C, Xf = 3, torch.randn(30, 4, generator=G, dtype=D)
    yf = torch.arange(30) % C
    lin = nn.Sequential(nn.Identity(), nn.Linear(4, C)).double()
    mus = torch.stack([Xf[yf == c].mean(0) for c in range(C)])
    SW = sum(torch.outer(x - mus[c], x - mus[c]) for x, c in zip(Xf, yf)) / 30
    SB = sum(torch.outer(m - Xf.mean(0), m - Xf.mean(0)) for m in mus) / C
    nc1 = collapse_facts(lin, Data(Xf, yf, None, None, C)).nc1
    assert nc1 == pytest.approx(float(torch.trace(SW @ torch.linalg.pinv(SB)) / C), rel=1e-9)
    p = ProfileCE("symmetric", eps=0.3).probabilities(torch.zeros(2, 4, dtype=D), torch.tensor([0, 2]))
    torch.testing.assert_close(p, torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1]], dtype=D))
    point = dict(data="digits", n_per_class=5, model={"arch": "mlp", "hidden": [4]}, lr=0.1, batch_size=10, steps=20,
                 snapshots=[20], seed=0)
    assert map_config({**point, "weight_decay": 5e-3}).weight_decay == 5e-3  # and so in the run's key
    assert map_config({**point, "weight_decay": 5e-3}).key() != map_config(point).key()


class Slight(nn.Module):
    "A forward whose value ignores eps but whose gradient does not: (t.detach() - t) is 0, its gradient -1."
    def __init__(self, eps):
        super().__init__(); torch.manual_seed(0)
        self.a, self.b, self.eps = nn.Linear(4, 6).double(), nn.Linear(6, 3).double(), eps

    def forward(self, x):
        t = self.a.weight.sum()
        return self.b(torch.tanh(self.a(x) * (1 + self.eps * (t.detach() - t))))


def test_the_derivative_check_sees_a_gap_of_a_few_parts_in_ten_thousand():
    "eps = 0.01 moves the gradient along the test direction by 2e-4 of its norm: refused in float64; eps = 0 is fine."
    Objective(Slight(0.0), X, Y)
    with pytest.raises(ValueError, match="not the derivative of the model's forward"):
        Objective(Slight(0.01), X, Y)


class LateWriter(nn.Module):
    "A forward that starts writing its own weight in place only after its first few calls (past the construction checks)."
    def __init__(self):
        super().__init__(); torch.manual_seed(0)
        self.n, self.calls = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double(), 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 40:
            with torch.no_grad(): self.n[0].weight.mul_(0.5)
        return self.n(x)


def test_a_forward_that_writes_theta_later_is_refused_at_the_next_computation():
    obj = Objective(LateWriter(), X, Y)
    with pytest.raises(RuntimeError, match="writes its own parameters in place"):
        for _ in range(50): obj.loss()
