"""Bad input and failure modes of the lab (hessian_nb.data, hessian_nb.train)."""
import warnings

import pytest
import torch

from hessian_nb.data import Data, blobs, digits, from_tensors, mnist, subset, two_blobs
from hessian_nb.train import (CorruptCheckpoint, TrainConfig, atomic_save, load_checkpoint, make_data, make_model, mlp,
                              run, train)


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
