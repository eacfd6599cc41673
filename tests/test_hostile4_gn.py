"""A fourth hostile round, the Gauss-Newton chapter: each case that gave a silent wrong number, a hang or an unclear error
now gives the right number or a clear error, raised on every process where the Objective is sharded."""
import datetime
import os
import socket
import time
import traceback
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import hessian_nb.core as core
from hessian_nb.operators import Operator
from hessian_nb.core import Objective
from hessian_nb.gauss_newton import ggn, ggn_op, gram_eigh, logit_grads, residual_op
from hessian_nb.spectrum import lanczos

D = torch.float64


# 1. nn.Embedding(padding_idx=...): G's products are the dense G (reverse mode for J v), and G's symmetry is checked -----

class Emb(nn.Module):
    "Token ids (n, 5) -> an embedding with a padding row -> tanh -> mean over tokens -> 3 logits."
    def __init__(self):
        super().__init__()
        self.e, self.l = nn.Embedding(7, 4, padding_idx=0), nn.Linear(4, 3)

    def forward(self, t): return self.l(torch.tanh(self.e(t)).mean(1))


@pytest.fixture
def padding_obj():
    "An Objective of a model with nn.Embedding(padding_idx=0), padding tokens in its data (as real batches have)."
    # core's construction check compares autograd with a central difference, leaving out the padding row, which
    # PyTorch holds fixed by definition: the Objective is the loss with that row constant, as its gradient says
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    T, y = torch.randint(0, 7, (16, 5), generator=g), torch.randint(0, 3, (16,), generator=g)
    assert (T == 0).any()
    return Objective(Emb().double(), T, y)


def test_padding_idx_ggn_products_are_the_dense_ggn(padding_obj):
    obj = padding_obj
    Gp, Gd = Operator.dense(ggn_op(obj)), ggn(obj)  # products with the identity; per-sample Jacobians
    scale = float(Gd.abs().max())
    assert float((Gp - Gp.T).abs().max()) < 1e-12 * scale  # was 2.7% asymmetric
    assert float((Gp - Gd).abs().max()) < 1e-12 * scale  # was 2.7% off
    HmR = obj.hessian() - residual_op(obj).dense()
    assert float((Gp - HmR).abs().max()) < 1e-10 * scale


def test_padding_idx_lanczos_on_ggn_is_right(padding_obj):
    obj = padding_obj
    e = lanczos(ggn_op(obj), k=3)
    exact = torch.linalg.eigvalsh(ggn(obj)).flip(0)[:3]
    assert e.converged
    torch.testing.assert_close(e.values, exact, rtol=1e-9, atol=0)


def test_padding_idx_streamed_ggn_products(padding_obj):
    obj = padding_obj
    s = Objective(obj.model, DataLoader(TensorDataset(obj.X, obj.y), batch_size=5))
    V = torch.randn(obj.num_params, 3, generator=torch.Generator().manual_seed(1), dtype=D)
    torch.testing.assert_close(ggn_op(s) @ V, ggn(obj) @ V, rtol=1e-12, atol=1e-14)


class SkewTanh(torch.autograd.Function):
    "tanh with the right backward but a forward-mode derivative scaled per feature: J v and J^T u of two Jacobians."
    generate_vmap_rule = True

    @staticmethod
    def forward(x): return torch.tanh(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, g):
        y, = ctx.saved_tensors
        return g * (1 - y * y)

    @staticmethod
    def jvp(ctx, t):
        y, = ctx.saved_tensors
        return t * (1 - y * y) * torch.linspace(0.5, 1.5, y.shape[-1], dtype=y.dtype)


class Skew(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x): return self.b(SkewTanh.apply(self.a(x)))


def test_ggn_symmetry_is_checked_before_an_eigensolver_trusts_it():
    "An operation whose forward-mode derivative is not the transpose of its backward: lanczos on G refuses, naming it."
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(12, 4, generator=g, dtype=D), torch.arange(12) % 3
    obj = Objective(Skew().double(), X, y)
    G = ggn_op(obj)
    assert G.symmetric is None  # not assumed
    with pytest.raises(ValueError, match=r"(?s)G is not symmetric.*forward-mode derivative.*scale_grad_by_freq"):
        lanczos(G, k=2)
    ok = ggn_op(Objective(nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double(), X, y))
    lanczos(ok, k=2)
    assert ok.symmetric is True  # checked once, then remembered


# 2. The Gram route refuses past max_dense_bytes ---------------------------------------------------------------------

def test_gram_route_respects_max_dense_bytes():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    X, y = torch.randn(2000, 5, generator=g, dtype=D), torch.randint(0, 3, (2000,), generator=g)
    obj = Objective(model, X, y, max_dense_bytes=3_000_000)  # the factor (57 x 6,000) fits; its Gram matrix does not
    for call in (lambda: ggn_op(obj).eigh(2, vectors=False), lambda: gram_eigh(obj, 2)):
        with pytest.raises(MemoryError, match=r"(?s)6,000 x 6,000 Gram matrix.*288.0 MB.*lanczos\(ggn_op\(obj\), k\)"):
            call()
    small = Objective(model, X[:40], y[:40], max_dense_bytes=3_000_000)
    torch.testing.assert_close(ggn_op(small).eigh(2, vectors=False),
                               torch.linalg.eigvalsh(ggn(small)).flip(0)[:2], rtol=1e-10, atol=0)


# 3. Sharded: a per-sample method refused on one process raises on both, at once ------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, outdir: str):
    "Rank 0 asks for G densely (a collective), rank 1 for G's Gram eigenpairs (refused on a sharded Objective)."
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1", HESSIAN_NB_QUIET="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=30))
    res = {}
    try:
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
        X, y = torch.randn(21, 4, generator=g, dtype=D), torch.randint(0, 3, (21,), generator=g)
        s = slice(0, 10) if rank == 0 else slice(10, 21)
        obj = Objective(model, X[s], y[s], group=True)
        for name, call in (("dense vs eigh", lambda: ggn_op(obj).dense() if rank == 0 else ggn_op(obj).eigh(2)),
                           ("eigh on both", lambda: ggn_op(obj).eigh(2))):
            t = time.time()
            try: call(); res[name] = ("no error", time.time() - t)
            except Exception as e: res[name] = (f"{type(e).__name__}: {e}", time.time() - t)
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    finally:
        try: dist.barrier()
        except Exception: pass
        dist.destroy_process_group()
    torch.save(res, os.path.join(outdir, f"rank{rank}.pt"))


def test_sharded_gram_refusal_raises_on_every_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    res = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    for r in (0, 1):
        assert "error" not in res[r], res[r]["error"]
        for name in ("dense vs eigh", "eigh on both"):
            msg, seconds = res[r][name]
            assert "not available on a sharded Objective" in msg and "ggn_op(obj).eigh()" in msg, (r, name, msg)
            assert seconds < 15, (r, name, seconds)  # at once, not the 30 s gloo timeout


# 4. Clear errors, or the right number: a custom loss vmap cannot take per sample; logits masked with -inf ------------

def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def test_custom_loss_with_one_hot_gets_a_clear_error_and_the_named_fix_works():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(23, 4, generator=g, dtype=D), torch.randint(0, 3, (23,), generator=g)
    one_hot = lambda z, t: 0.5 * (z - F.one_hot(t, 3).to(z.dtype)).pow(2).sum(-1).mean()
    obj = Objective(_mlp(), X, y, loss=one_hot)
    V = torch.randn(obj.num_params, 2, generator=g, dtype=D)
    says = r"(?s)cannot be differentiated one sample at a time.*vmap.*F\.one_hot.*torch\.arange"
    for call in (lambda: ggn_op(obj) @ V, lambda: residual_op(obj) @ V, lambda: ggn(obj),
                 lambda: logit_grads(obj.logits(), y, one_hot)):
        with pytest.raises(RuntimeError, match=says):
            call()
    fixed = lambda z, t: 0.5 * (z - (t[:, None] == torch.arange(3, device=t.device)).to(z.dtype)).pow(2).sum(-1).mean()
    good = Objective(_mlp(), X, y, loss=fixed)
    ref = Objective(_mlp(), X, F.one_hot(y, 3).to(D), loss="mse")
    torch.testing.assert_close(ggn_op(good) @ V, ggn_op(ref) @ V, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(residual_op(good) @ V, residual_op(ref) @ V, rtol=1e-12, atol=1e-14)


class Masked(nn.Module):
    "Class 2 is never allowed: its logit is -inf."
    def __init__(self):
        super().__init__()
        self.n = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))

    def forward(self, x): return self.n(x).masked_fill(torch.tensor([False, False, True]), float("-inf"))


@pytest.mark.parametrize("streamed", [False, True])
def test_logits_masked_with_minus_inf_have_a_residual(streamed):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(16, 5, generator=g, dtype=D), torch.randint(0, 2, (16,), generator=g)
    model = Masked().double()
    obj = Objective(model, X, y)
    R = residual_op(Objective(model, DataLoader(TensorDataset(X, y), batch_size=5)) if streamed else obj).dense()
    H, G = obj.hessian(), ggn(obj)
    assert torch.isfinite(R).all()
    assert float((G + R - H).abs().max()) < 1e-10 * float(H.abs().max())
    assert float(R.abs().max()) > 1e-3 * float(H.abs().max())  # not zero: the allowed classes' curvature is there


def test_ggn_products_without_any_jvp_get_a_clear_error():
    "nn.EmbeddingBag has neither a forward-mode derivative nor a derivative of its backward: G's products say so."
    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.e, self.l = nn.EmbeddingBag(7, 4, mode="mean"), nn.Linear(4, 3)

        def forward(self, t): return self.l(torch.tanh(self.e(t)))
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    T, y = torch.randint(0, 7, (12, 5), generator=g), torch.randint(0, 3, (12,), generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # functorch's "no batching rule for aten::_embedding_bag"
        obj = Objective(Bag().double(), T, y)
        V = torch.randn(obj.num_params, 2, generator=g, dtype=D)
        with pytest.raises(RuntimeError, match=r"G's products need J v.*ggn\(obj\) and ggn_op\(obj\)\.eigh\(\)"):
            ggn_op(obj) @ V
        torch.testing.assert_close(ggn_op(obj).eigh(2, vectors=False),
                                   torch.linalg.eigvalsh(ggn(obj)).flip(0)[:2], rtol=1e-10, atol=0)
