"""Bad input and failure modes of the lab (hessian_nb.data, hessian_nb.train)."""
import warnings

import pytest
import torch

from hessian_nb.data import Data, blobs, digits, from_tensors, mnist, subset, two_blobs
from hessian_nb.models import mlp
from hessian_nb.store import CorruptCheckpoint, atomic_save, load_checkpoint
from hessian_nb.train import TrainConfig, make_data, make_model, run, train


def test_data_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"y shape \(N,\)"):
        Data(torch.randn(4, 2), torch.zeros(4, 1).long(), torch.randn(2, 2), torch.zeros(2).long(), 1)


def test_data_rejects_float_labels():
    with pytest.raises(ValueError, match="labels must be integers"):
        Data(torch.randn(4, 2), torch.zeros(4), torch.randn(2, 2), torch.zeros(2).long(), 1)


def test_data_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1 for 2 classes; found 0\.\.2"):
        from_tensors(torch.randn(9, 2), torch.tensor([0, 1, 2] * 3), num_classes=2)


def test_data_rejects_empty_class():
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have no training sample"):
        Data(torch.randn(4, 2), torch.tensor([0, 0, 2, 2]), torch.randn(2, 2), torch.tensor([0, 2]), 3)


def test_data_rejects_nan_inputs():
    X = torch.randn(6, 2); X[0, 0] = float("nan")
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        from_tensors(X, torch.tensor([0, 1] * 3))


def test_too_many_per_class():
    with pytest.raises(ValueError, match="n_per_class=200 is not possible"): digits(n_per_class=200)
    with pytest.raises(ValueError, match="class 0 has only 5 training samples"):
        subset(blobs(k=2, d=3, n_per_class=5), 6)


def test_blobs_arguments():
    with pytest.raises(ValueError, match="k >= 2"): blobs(k=1)
    with pytest.raises(ValueError, match="spread > 0"): two_blobs(spread=0)


def test_mnist_is_never_downloaded(tmp_path):
    with pytest.raises((ImportError, FileNotFoundError)) as e: mnist(str(tmp_path))
    assert "never downloads" in str(e.value) or "use digits() instead" in str(e.value)
    assert not any(tmp_path.rglob("*")), "nothing may be written (or fetched) into the folder"


def test_model_and_config_errors():
    with pytest.raises(ValueError, match="activation='gelu'"): mlp([2, 3], activation="gelu")
    cfg = TrainConfig(data={"name": "nope"}, model={"arch": "mlp"})
    with pytest.raises(ValueError, match="data name 'nope' is not one of"): make_data(cfg)
    cfg = TrainConfig(data={"name": "two_blobs"}, model={"arch": "resnet"})
    with pytest.raises(ValueError, match="model arch 'resnet' is not"): make_model(cfg, make_data(cfg))
    cfg = TrainConfig(data={"name": "two_blobs"}, model={"arch": "mlp", "hidden": [4]}, checkpoints=(5,))
    with pytest.raises(ValueError, match="needs a checkpoint_dir"): train(cfg)


def test_divergence_is_an_error():
    cfg = TrainConfig(data={"name": "two_blobs", "spread": 1.0}, model={"arch": "mlp", "hidden": [8, 8]}, loss="mse",
                      lr=1e6, max_steps=50)
    with pytest.raises(FloatingPointError, match="lower the learning rate"): train(cfg)


def test_truncated_checkpoint_is_rejected(tmp_path):
    cfg = TrainConfig(data={"name": "two_blobs"}, model={"arch": "mlp", "hidden": [4]}, max_steps=10, checkpoints=(10,))
    train(cfg, checkpoint_dir=tmp_path)
    path = tmp_path / "step_0000010.pt"
    assert load_checkpoint(path)["step"] == 10
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(CorruptCheckpoint, match="step_0000010.pt cannot be read .* truncated or corrupt"):
        load_checkpoint(path)


def test_non_checkpoint_file_is_rejected(tmp_path):
    atomic_save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CorruptCheckpoint, match="not a hessian_nb checkpoint"): load_checkpoint(tmp_path / "other.pt")


def test_cache_with_foreign_config_is_retrained(tmp_path, monkeypatch):
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path))
    a = TrainConfig(data={"name": "two_blobs"}, model={"arch": "mlp", "hidden": [4]}, max_steps=20)
    b = TrainConfig(data={"name": "two_blobs"}, model={"arch": "mlp", "hidden": [5]}, max_steps=20)
    run(a); run(b)
    fa, fb = (tmp_path / "runs" / c.key() / "final.pt" for c in (a, b))
    fa.write_bytes(fb.read_bytes())  # a's entry now holds b's run
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = run(a)
    assert not r.from_cache and any("another configuration" in str(x.message) for x in w)


def test_mse_training_reduces_the_loss():
    cfg = TrainConfig(data={"name": "blobs", "k": 3, "d": 5, "n_per_class": 10}, model={"arch": "mlp", "hidden": [8]},
                      loss="mse", lr=0.05, max_steps=100)
    r = train(cfg)
    assert r.history[-1]["loss"] < 0.5 * r.history[0]["loss"]


def test_mnist_from_a_local_copy():
    "Reads MNIST when HESSIAN_NB_MNIST names a local copy and torchvision works; skipped otherwise (never downloaded)."
    import os
    root = os.environ.get("HESSIAN_NB_MNIST")
    if not root: pytest.skip("set HESSIAN_NB_MNIST to a folder holding MNIST/raw to run this test")
    try:
        import torchvision  # noqa: F401
    except Exception as e:
        pytest.skip(f"torchvision does not load here ({type(e).__name__})")
    d = mnist(root, n_per_class=10)
    assert d.class_counts().tolist() == [10] * 10 and d.X.shape[1] == 784 and len(d.X_test) == 10_000


# ---- issue 13: cache and checkpoints, long work; issue 12 item 8: friction ----
import io
import os
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import hessian_nb.store as st
import hessian_nb.train as tr
from hessian_nb.store import CacheNotWritable, cached, safe_load
from hessian_nb.train import fit

SMALL = dict(data={"name": "blobs", "k": 3, "d": 5, "n_per_class": 10}, model={"arch": "mlp", "hidden": [6]})


def same_params(a, b): return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_resume_refuses_a_checkpoint_of_another_configuration(tmp_path):
    cfg = TrainConfig(**SMALL, lr=0.1, max_steps=10, checkpoints=(10,), batch_size=8)
    train(cfg, checkpoint_dir=tmp_path)
    ck = load_checkpoint(tmp_path / "step_0000010.pt")
    assert ck["key"] == cfg.key() and ck["step"] == 10  # the origin is recorded
    other = TrainConfig(**{**asdict(cfg), "batch_size": 5, "max_steps": 20, "checkpoints": ()})
    with pytest.raises(ValueError, match="another run: it differs in batch_size"): train(other, resume=ck)
    with pytest.raises(ValueError, match="step 10 is outside 0..max_steps=5"):
        train(TrainConfig(**{**asdict(cfg), "max_steps": 5, "checkpoints": ()}), resume=ck)
    longer = train(TrainConfig(**{**asdict(cfg), "max_steps": 20, "checkpoints": ()}), resume=ck)  # only when to stop changed
    assert longer.step == 20 and longer.resumed_from == 10


@pytest.mark.parametrize("damage", ["wrong_shape", "missing_key"])
def test_final_checkpoint_that_does_not_fit_is_retrained(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path))
    cfg = TrainConfig(**SMALL, max_steps=15)
    first = run(cfg)
    final = tmp_path / "runs" / cfg.key() / "final.pt"
    ck = load_checkpoint(final)
    if damage == "wrong_shape": ck["state"]["0.weight"] = torch.zeros(7, 5, dtype=torch.float64)
    else: del ck["state"]["2.bias"]
    atomic_save(ck, final)  # intact file, valid digest, but it does not fit the network
    with pytest.warns(UserWarning, match="does not fit the model .*(size mismatch|Missing key).* Training again"):
        again = run(cfg)
    assert not again.from_cache and same_params(again.model, first.model)
    assert run(cfg).from_cache


class Result:
    "An arbitrary object: torch.save writes it, torch.load(weights_only=True) refuses it."
    def __init__(self): self.x = torch.ones(2)


def test_cached_value_that_weights_only_cannot_read_fails_at_save(tmp_path, monkeypatch):
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path))
    class Local: pass  # cannot even be pickled
    with pytest.raises(TypeError, match="the value cannot be stored.*Local"): cached("local", {}, Local)
    calls = []
    def compute(): calls.append(1); return Result()
    with pytest.raises(TypeError, match=r"cached\('obj'\): the value cannot be stored.*Result.*dataclasses.asdict"):
        cached("obj", {"a": 1}, compute)
    assert calls == [1] and not list((tmp_path / "results").iterdir())  # nothing left that would be "recomputed" later
    assert cached("ok", {"a": 1}, lambda: {"x": torch.ones(2), "t": (1, "a")})["t"] == (1, "a")


def test_cached_recomputes_an_entry_whose_stored_config_differs(tmp_path, monkeypatch):
    "Catches cached() skipping its config comparison (mutation)."
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path))
    assert cached("m", {"k": 1}, lambda: torch.tensor(1.0)) == 1
    entry = next((tmp_path / "results").glob("m_*.pt"))
    atomic_save({"config": '[0, "m", {"k": 99}]', "value": torch.tensor(99.0)}, entry)  # same file name, another config
    with pytest.warns(UserWarning, match="holds another configuration"):
        assert cached("m", {"k": 1}, lambda: torch.tensor(1.0)) == 1


def test_atomic_save_that_crashes_midway_leaves_the_previous_file(tmp_path, monkeypatch):
    "Catches atomic_save writing in place (mutation): torch.save writes half of the file, then dies."
    path = tmp_path / "ck.pt"
    atomic_save({"w": torch.arange(100.0)}, path)
    real = torch.save
    def half_then_crash(obj, f, *a, **k):
        if isinstance(f, io.BytesIO): return real(obj, f, *a, **k)
        b = io.BytesIO(); real(obj, b); f.write(b.getvalue()[: len(b.getvalue()) // 2])
        raise OSError("killed midway")
    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(OSError, match="killed midway"): atomic_save({"w": torch.zeros(100)}, path)
    monkeypatch.setattr(torch, "save", real)
    assert torch.equal(safe_load(path)["w"], torch.arange(100.0))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # and no temporary file left


class _Evil:
    "Unpickling this runs code: os.mkdir(marker)."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.mkdir, (self.marker,))


def test_a_checkpoint_holding_a_code_running_pickle_is_refused(tmp_path, monkeypatch):
    "Catches weights_only=False in safe_load (mutation), on the outer file and on the digested payload."
    marker = tmp_path / "pwned"
    raw = tmp_path / "raw.pt"; torch.save(_Evil(str(marker)), raw)
    b = io.BytesIO(); torch.save({"state": _Evil(str(marker)), "step": 1, "history": [], "config": {}}, b)
    payload = b.getvalue()
    inner = tmp_path / "inner.pt"
    torch.save({"sha256": __import__("hashlib").sha256(payload).hexdigest(),
                "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}, inner)  # a valid digest
    for p in (raw, inner):
        with pytest.raises(CorruptCheckpoint, match="cannot be read"): load_checkpoint(p)
        assert not marker.exists(), f"{p.name}: the pickle ran code"
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BOX", "1")  # read at run time, not part of the code version: one version, two results
    measure = lambda: int(os.environ["BOX"])
    cached("v", {}, measure)
    entry = next((tmp_path / "cache" / "results").glob("v_*.pt")); entry.write_bytes(inner.read_bytes())
    monkeypatch.setenv("BOX", "2")
    with pytest.warns(UserWarning, match="cannot be read"): assert cached("v", {}, measure) == 2
    assert not marker.exists()


def test_killed_run_resumes_from_its_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path))
    cfg = TrainConfig(**SMALL, batch_size=8, max_steps=40, grad_tol=0, log_every=5, checkpoints=(10,))
    whole = train(cfg, checkpoint_dir=tmp_path / "whole")
    real = os.replace  # the kill goes below the library: patching its own functions would make another code version
    def killed_at_27(tmp, path):
        real(tmp, path)
        if Path(path).name == "last.pt" and load_checkpoint(path)["step"] == 27: raise KeyboardInterrupt("killed")
    monkeypatch.setattr(os, "replace", killed_at_27)
    with pytest.raises(KeyboardInterrupt): run(cfg, autosave_s=0)  # autosaves every step, dies after saving step 27
    monkeypatch.setattr(os, "replace", real)
    folder = tmp_path / "runs" / cfg.key()
    assert not (folder / "final.pt").exists() and load_checkpoint(folder / "last.pt")["step"] == 27
    (folder / ".final.pt.abcd.tmp").write_bytes(b"half a save")  # a kill during a save
    r = run(cfg)
    assert r.resumed_from == 27 and r.step == 40 and not r.from_cache
    assert same_params(r.model, whole.model) and r.history == whole.history  # bit for bit the uninterrupted run
    assert not list(folder.glob("*.tmp")) and not (folder / "last.pt").exists()
    # a damaged latest checkpoint is skipped: the run resumes from the one before it
    (folder / "final.pt").unlink(); atomic_save({"junk": 1}, folder / "last.pt")
    assert run(cfg).resumed_from == 10


TWO = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from hessian_nb.train import TrainConfig, run
    barrier = Path(sys.argv[1]); (barrier / f"ready{sys.argv[2]}").touch()
    while len(list(barrier.glob("ready*"))) < 2: time.sleep(0.005)  # both call run() at the same moment
    cfg = TrainConfig(data={"name": "blobs", "k": 3, "d": 10, "n_per_class": 40}, model={"arch": "mlp", "hidden": [32, 32]},
                      batch_size=10, max_steps=1500, grad_tol=0, log_every=100)
    r = run(cfg, progress=False)
    print("RESULT", r.from_cache, r.step)
''')


def test_two_processes_on_one_run_train_it_once(tmp_path):
    env = {**os.environ, "HESSIAN_NB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", TWO, str(tmp_path), str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-800:] for _, e in outs]
    results = sorted(o.split("RESULT")[-1].split() for o, _ in outs)
    assert results == [["False", "1500"], ["True", "1500"]], outs  # one trained, the other read its result
    waited = [e for (o, e) in outs if "RESULT True" in o][0]
    assert "being written by another process" in waited


def test_unwritable_or_full_cache_is_reported_before_training(tmp_path, monkeypatch):
    def no_training(*a, **k): raise AssertionError("trained before checking the cache")
    monkeypatch.setattr(tr, "train", no_training)
    (tmp_path / "file").write_text("a file, not a folder")
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path / "file" / "cache"))
    cfg = TrainConfig(**SMALL, max_steps=5)
    with pytest.raises(CacheNotWritable, match="cannot be written .*set HESSIAN_NB_CACHE"): run(cfg)
    with pytest.raises(CacheNotWritable, match="cannot be written"): cached("x", {}, no_training)
    if os.geteuid() != 0:  # root writes into read-only folders
        (tmp_path / "ro").mkdir(mode=0o555); monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path / "ro"))
        with pytest.raises(CacheNotWritable, match="cannot be written"): run(cfg)
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path / "full"))
    monkeypatch.setattr(st.shutil, "disk_usage", lambda p: __import__("shutil")._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(CacheNotWritable, match="MiB free and this needs about .*free some space"): run(cfg)


def test_fit_own_model_and_data_without_test_set():
    X, y = torch.randn(40, 3), torch.arange(40) % 2
    d = Data(X, y, None, None, 2, "mine")
    r = fit(torch.nn.Linear(3, 2), d, lr=0.5, steps=30)
    assert r.step == 30 and set(r.history[-1]) == {"step", "loss", "acc", "grad_norm"} and "test acc" not in repr(r)
    with pytest.raises(ValueError, match="train your own with fit"): run(r.config)
    with pytest.raises(ValueError, match="evaluation needs a test set, and mine has none"): d.require_test("evaluation")
    with pytest.raises(TypeError, match=r"use data.to\(torch.float64\)"):
        train(TrainConfig(max_steps=1), d, torch.nn.Linear(3, 2).double())
    assert from_tensors(X, y, test_fraction=0).X_test is None  # nothing held out: no test set, not an empty one


def test_a_runs_key_carries_the_version_of_the_training_code(monkeypatch):
    "Another training loop (or data or model builder) names another run: no cached run of the old code is read back."
    cfg = TrainConfig(**SMALL, max_steps=5)
    k0 = cfg.key()
    for name in ("train", "make_data", "make_model"):
        real = getattr(tr, name)
        monkeypatch.setattr(tr, name, lambda *a, real=real, **k: real(*a, **k))
        assert cfg.key() != k0, name
        monkeypatch.setattr(tr, name, real)
    assert cfg.key() == k0


def test_keys_and_code_versions_are_the_same_in_every_process():
    "String hashing is randomised per process: a set's order must never reach a key (a set of paths once did)."
    code = ("from hessian_nb.train import TrainConfig; from hessian_nb import bulk, regime; from hessian_nb.versions import "
            "code_version; print(TrainConfig(**" + repr(SMALL) + ").key(), code_version(bulk.fmnist_width_run), "
            "code_version(regime.regime_stage))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": s}).stdout for s in ("1", "2", "3")}
    assert len(outs) == 1, outs
