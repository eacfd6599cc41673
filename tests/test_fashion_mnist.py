"""Fashion-MNIST loader (hessian_nb.data.fashion_mnist): failure modes on small fake IDX files, a round trip, the real package."""
import gzip
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hessian_nb.data import (FASHION_MNIST_CLASSES, FASHION_MNIST_DEBIAN, FASHION_MNIST_ENV, FASHION_MNIST_FILES, Data,
                             fashion_mnist, fashion_mnist_arrays, fashion_mnist_files, read_idx)

TRAIN_IMAGES, TRAIN_LABELS = FASHION_MNIST_FILES["train"]
TEST_IMAGES, TEST_LABELS = FASHION_MNIST_FILES["test"]


def idx_bytes(a, magic=None):
    "The IDX encoding of the uint8 array `a`: magic number, big-endian sizes, bytes (written here, independent of the library)."
    a = np.asarray(a, dtype=np.uint8)
    return struct.pack(">I", magic or {1: 2049, 3: 2051}[a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def write(path, a, magic=None, gz=True):
    raw = idx_bytes(a, magic)
    Path(path).write_bytes(gzip.compress(raw) if gz else raw)
    return path


def fake_split(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = 255; images[:, 0, 1] = 0  # every image spans the full range
    return images, labels


@pytest.fixture
def fake(tmp_path, monkeypatch):
    "A tiny fake Fashion-MNIST: 30 training images (3 per class) and 20 test images (2 per class), in the package's layout."
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    root = tmp_path / "fmnist"; root.mkdir()
    arrays = {"train": fake_split(30, 1), "test": fake_split(20, 2)}
    for split, (images, labels) in arrays.items():
        write(root / FASHION_MNIST_FILES[split][0], images); write(root / FASHION_MNIST_FILES[split][1], labels)
    return root, arrays


# --- round trip -------------------------------------------------------------------------------------------------------

def test_round_trip_all_images(fake):
    root, arrays = fake
    d = fashion_mnist(root=root)
    assert isinstance(d, Data) and d.num_classes == 10
    assert d.X.shape == (30, 784) and d.X_test.shape == (20, 784)
    assert d.X.dtype == torch.float32 and d.y.dtype == torch.int64
    torch.testing.assert_close(d.X, torch.from_numpy(arrays["train"][0].reshape(30, -1).astype(np.float32) / 255), rtol=0, atol=0)
    torch.testing.assert_close(d.X_test, torch.from_numpy(arrays["test"][0].reshape(20, -1).astype(np.float32) / 255), rtol=0, atol=0)
    assert d.y.tolist() == arrays["train"][1].tolist() and d.y_test.tolist() == arrays["test"][1].tolist()
    assert float(d.X.min()) == 0.0 and float(d.X.max()) == 1.0  # scaled to [0, 1], not standardized
    assert d.class_counts().tolist() == [3] * 10
    img = fashion_mnist(root=root, image=True)
    assert img.X.shape == (30, 1, 28, 28) and img.X_test.shape == (20, 1, 28, 28)
    assert torch.equal(img.X.reshape(30, -1), d.X)


def test_round_trip_balanced_subsets_are_seeded(fake):
    root, arrays = fake
    d = fashion_mnist(n_per_class=2, n_test_per_class=1, root=root, seed=5)
    assert d.class_counts().tolist() == [2] * 10 and torch.bincount(d.y_test, minlength=10).tolist() == [1] * 10
    rows = {tuple(r): int(l) for r, l in zip(arrays["train"][0].reshape(30, -1), arrays["train"][1])}
    for x, label in zip(d.X, d.y):  # every kept image is a training image with its own label
        assert rows[tuple((x * 255).round().to(torch.uint8).tolist())] == int(label)
    again = fashion_mnist(n_per_class=2, n_test_per_class=1, root=root, seed=5)
    assert torch.equal(again.X, d.X) and torch.equal(again.y, d.y) and torch.equal(again.X_test, d.X_test)
    other = fashion_mnist(n_per_class=2, n_test_per_class=1, root=root, seed=6)
    assert not torch.equal(other.X, d.X)
    assert fashion_mnist(n_per_class=3, n_test_per_class=0, root=root).X_test.shape == (0, 784)


def test_too_many_per_class(fake):
    root, _ = fake
    with pytest.raises(ValueError, match=r"n_per_class=4 is not possible: class \d has 3 images"):
        fashion_mnist(n_per_class=4, root=root)
    with pytest.raises(ValueError, match=r"n_test_per_class=3 is not possible"):
        fashion_mnist(n_test_per_class=3, root=root)
    with pytest.raises(ValueError, match=r"n_per_class=0 is not possible"):
        fashion_mnist(n_per_class=0, root=root)


def test_environment_variable_and_uncompressed_copy(fake, tmp_path, monkeypatch):
    root, arrays = fake
    plain = tmp_path / "plain"; plain.mkdir()
    for split, (images, labels) in arrays.items():  # a user's copy, gunzipped
        write(plain / FASHION_MNIST_FILES[split][0].removesuffix(".gz"), images, gz=False)
        write(plain / FASHION_MNIST_FILES[split][1].removesuffix(".gz"), labels, gz=False)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(plain))
    assert fashion_mnist_files()["train"][0] == plain / "train-images-idx3-ubyte"
    assert torch.equal(fashion_mnist().X, fashion_mnist(root=root).X)  # root= wins over the environment variable


def test_arrays_are_cached_and_read_only(fake):
    root, _ = fake
    a, b = fashion_mnist_arrays(root), fashion_mnist_arrays(root)
    assert a["train"][0] is b["train"][0]
    assert not a["train"][0].flags.writeable
    d = fashion_mnist(root=root); d.X.zero_()  # the returned tensors are copies: the cache is untouched
    assert float(fashion_mnist(root=root).X.max()) == 1.0


def test_cache_sees_a_replaced_file(fake):
    root, _ = fake
    assert len(read_idx(root / TRAIN_LABELS, 1)) == 30
    write(root / TRAIN_LABELS, np.arange(40) % 10)
    assert len(read_idx(root / TRAIN_LABELS, 1)) == 40


# --- failure modes ----------------------------------------------------------------------------------------------------

def test_missing_folder_names_package_command_and_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    with pytest.raises(FileNotFoundError) as e:
        fashion_mnist(root=tmp_path / "nowhere")
    msg = str(e.value)
    for needle in ("dataset-fashion-mnist", "sudo apt-get install dataset-fashion-mnist", FASHION_MNIST_ENV,
                   str(tmp_path / "nowhere"), TRAIN_IMAGES, "never downloads"):
        assert needle in msg, (needle, msg)


def test_missing_folder_from_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path / "mine"))
    with pytest.raises(FileNotFoundError, match=r"mine lacks .*sudo apt-get install dataset-fashion-mnist"):
        fashion_mnist()


def test_one_missing_file_is_named(fake):
    root, _ = fake
    (root / TEST_LABELS).unlink()
    with pytest.raises(FileNotFoundError) as e:
        fashion_mnist(root=root)
    assert f"lacks {TEST_LABELS}." in str(e.value)


def test_truncated_gzip_stream(fake):
    root, _ = fake
    gz = (root / TRAIN_IMAGES).read_bytes()
    (root / TRAIN_IMAGES).write_bytes(gz[: len(gz) // 2])
    with pytest.raises(ValueError, match=rf"{TRAIN_IMAGES} is truncated or not gzip .*reinstall dataset-fashion-mnist"):
        fashion_mnist(root=root)


def test_truncated_data_in_a_complete_gzip(fake):
    root, _ = fake
    raw = gzip.decompress((root / TRAIN_IMAGES).read_bytes())
    (root / TRAIN_IMAGES).write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(ValueError, match=r"is truncated or damaged: its header announces shape \(30, 28, 28\), 23,520 bytes, but "
                                         r"23,420 follow"):
        fashion_mnist(root=root)


def test_truncated_header(fake):
    root, _ = fake
    (root / TRAIN_LABELS).write_bytes(gzip.compress(idx_bytes(np.zeros(30))[:6]))
    with pytest.raises(ValueError, match="truncated or damaged: it ends after 6 bytes, inside the 8-byte header"):
        fashion_mnist(root=root)


def test_not_gzip(fake):
    root, arrays = fake
    write(root / TRAIN_LABELS, arrays["train"][1], gz=False)  # named .gz but not compressed
    with pytest.raises(ValueError, match="truncated or not gzip"):
        fashion_mnist(root=root)


def test_wrong_magic(fake):
    root, arrays = fake
    write(root / TRAIN_IMAGES, arrays["train"][0], magic=2049)
    with pytest.raises(ValueError, match=r"magic number 2049 \(0x00000801\) where an IDX file of images starts with 2051"):
        fashion_mnist(root=root)


def test_swapped_files_are_a_magic_error(fake):
    root, _ = fake
    images, labels = (root / TEST_IMAGES).read_bytes(), (root / TEST_LABELS).read_bytes()
    (root / TEST_IMAGES).write_bytes(labels); (root / TEST_LABELS).write_bytes(images)
    with pytest.raises(ValueError, match=r"magic number 2049 .*images and labels swapped"):
        fashion_mnist(root=root)


def test_label_image_count_mismatch(fake):
    root, arrays = fake
    write(root / TRAIN_LABELS, arrays["train"][1][:29])
    with pytest.raises(ValueError, match=r"train: .* holds 30 images but .* 29 labels; the two files do not belong together"):
        fashion_mnist(root=root)


def test_labels_out_of_range(fake):
    root, arrays = fake
    write(root / TEST_LABELS, np.full(20, 10))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.9, found 10"):
        fashion_mnist(root=root)


# --- the real package -------------------------------------------------------------------------------------------------

installed = all((Path(FASHION_MNIST_DEBIAN) / n).is_file() for names in FASHION_MNIST_FILES.values() for n in names)


@pytest.mark.skipif(not installed, reason=f"the Debian package dataset-fashion-mnist is not installed (no files in "
                                          f"{FASHION_MNIST_DEBIAN}); run: sudo apt-get install dataset-fashion-mnist")
def test_real_package(monkeypatch):
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    arrays = fashion_mnist_arrays()
    assert arrays["train"][0].shape == (60_000, 28, 28) and arrays["test"][0].shape == (10_000, 28, 28)
    assert np.bincount(arrays["train"][1]).tolist() == [6_000] * 10 and np.bincount(arrays["test"][1]).tolist() == [1_000] * 10
    t0 = time.perf_counter(); d = fashion_mnist(n_per_class=50, n_test_per_class=20, image=True, seed=1)
    assert time.perf_counter() - t0 < 2, "a subset from the cached arrays should take well under a second"
    assert d.X.shape == (500, 1, 28, 28) and d.X_test.shape == (200, 1, 28, 28) and d.X.dtype == torch.float32
    assert d.class_counts().tolist() == [50] * 10 and float(d.X.min()) == 0.0 and float(d.X.max()) == 1.0
    assert len(FASHION_MNIST_CLASSES) == 10 and FASHION_MNIST_CLASSES[9] == "Ankle boot"
