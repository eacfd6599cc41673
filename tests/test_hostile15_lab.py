"The fifteenth hostile round, the lab's part: TrainConfig's dicts and their entries, and the data makers' arguments."
import gzip
import struct

import numpy as np
import pytest
import torch

from hessian_nb.data import Data, blobs, digits, fashion_mnist, from_tensors, shuffled_by_class, subset, two_blobs
from hessian_nb.data import FASHION_MNIST_ENV, FASHION_MNIST_FILES
from hessian_nb.train import TrainConfig, make_data, make_model

from helpers import raises

SMALL = {"name": "digits", "n_per_class": 5, "n_test_per_class": 5}
MLP = {"arch": "mlp", "hidden": [4]}


# --- TrainConfig: the data and model dicts ---------------------------------------------------------------------------

def test_config_keeps_copies_of_its_dicts():
    "Changing the caller's dicts after the config is made must not rewrite the config (nor a finished Run's)."
    data, model = dict(SMALL), {"arch": "mlp", "hidden": [4]}
    cfg = TrainConfig(data=data, model=model, max_steps=2)
    key = cfg.key()
    model["hidden"][0] = 16; model["activation"] = "tanh"; data["n_per_class"] = 9
    assert cfg.model == {"arch": "mlp", "hidden": [4]} and cfg.data == SMALL
    assert cfg.key() == key


def test_numpy_numbers_in_the_dicts_are_python_numbers():
    "NumPy integers, floats and bools inside data/model are stored as the Python numbers they are: the same run, the same key."
    cfg = TrainConfig(data={"name": "blobs", "n_per_class": np.int64(5), "spread": np.float64(0.5), "seed": np.int32(1)},
                      model={"arch": "mlp", "hidden": [np.int64(4), np.int16(3)]}, max_steps=1)
    plain = TrainConfig(data={"name": "blobs", "n_per_class": 5, "spread": 0.5, "seed": 1},
                        model={"arch": "mlp", "hidden": [4, 3]}, max_steps=1)
    assert cfg.key() == plain.key() and cfg == plain
    assert [type(v) for v in (cfg.data["n_per_class"], cfg.data["spread"], *cfg.model["hidden"])] == [int, float, int, int]
    img = TrainConfig(data=SMALL | {"image": np.bool_(True)}, model={"arch": "cnn"})
    assert type(img.data["image"]) is bool


@pytest.mark.parametrize("where, data, model", [
    ("model['hidden'][0]", SMALL, {"arch": "mlp", "hidden": [torch.tensor(4)]}),
    ("data['n_per_class']", {"name": "digits", "n_per_class": torch.tensor(5)}, MLP),
    ("data['spread']", {"name": "blobs", "spread": object()}, MLP),
    ("model['hidden']", SMALL, {"arch": "mlp", "hidden": {4}}),
])
def test_values_json_cannot_hold_are_refused_naming_the_entry(where, data, model):
    with raises(ValueError, "TrainConfig:", where, "int(x)"):
        TrainConfig(data=data, model=model)


def test_a_dict_key_must_be_a_string():
    with raises(ValueError, "TrainConfig: model has the key 1 (int)", "strings"):
        TrainConfig(data=SMALL, model={"arch": "mlp", 1: 2})


@pytest.mark.parametrize("hidden", [[4.0], [2.7], ["4"], [0], [True], [4, -1]])
def test_hidden_widths_must_be_positive_integers(hidden):
    with raises(ValueError, "TrainConfig: model hidden must be a list of positive integers", "[30, 30]", repr(hidden)):
        TrainConfig(data=SMALL, model={"arch": "mlp", "hidden": hidden})


@pytest.mark.parametrize("key, value", [("seed", 3), ("dtype", "float64")])
def test_seed_and_dtype_belong_to_the_config_not_the_model(key, value):
    with raises(ValueError, f"TrainConfig: model[{key!r}]", f"TrainConfig({key}={value!r})"):
        TrainConfig(data=SMALL, model=MLP | {key: value})


@pytest.mark.parametrize("loss", [["ce"], {"ce": 1}, None, 1])
def test_the_loss_must_be_a_name(loss):
    with raises(ValueError, "TrainConfig: loss must be one of 'ce', 'mse'"):
        TrainConfig(loss=loss)


def test_a_config_hashes_consistently_with_equality():
    a, b = TrainConfig(data=SMALL, model=MLP, lr=1), TrainConfig(data=dict(SMALL), model={"arch": "mlp", "hidden": [4]}, lr=1.0)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    c = TrainConfig(data=SMALL, model={"arch": "mlp", "hidden": [5]})
    assert c != a and len({a, c}) == 2
    assert {TrainConfig(): 1}[TrainConfig()] == 1


def test_an_mlp_on_images_is_refused():
    cfg = TrainConfig(data=SMALL | {"image": True}, model=MLP)
    with raises(ValueError, "arch 'mlp' takes flat inputs", "use image=False in data"):
        make_model(cfg, make_data(cfg))
    images = Data(torch.rand(4, 1, 8, 8), torch.tensor([0, 1] * 2), None, None, 2, "mine")
    with raises(ValueError, "arch 'mlp' takes flat inputs", "(1, 8, 8)"):
        make_model(TrainConfig(model=MLP), images)


def test_a_cnn_on_flat_inputs_is_refused():
    cfg = TrainConfig(data=SMALL, model={"arch": "cnn"})
    with raises(ValueError, "arch 'cnn' takes images", "use image=True in data"):
        make_model(cfg, make_data(cfg))
    flat = Data(torch.rand(4, 64), torch.tensor([0, 1] * 2), None, None, 2, "mine")
    with raises(ValueError, "arch 'cnn' takes images", "(64,)"):
        make_model(TrainConfig(model={"arch": "cnn"}), flat)


def test_a_cnn_sized_for_other_images_is_refused():
    big = Data(torch.rand(4, 1, 12, 12), torch.tensor([0, 1] * 2), None, None, 2, "mine")
    with raises(ValueError, "image_size=12"):
        make_model(TrainConfig(model={"arch": "cnn"}), big)
    assert make_model(TrainConfig(model={"arch": "cnn", "image_size": 12}, dtype="float32"), big)(big.X).shape == (4, 2)


def test_a_matching_cnn_and_mlp_still_build():
    for data, model in ((SMALL | {"image": True}, {"arch": "cnn"}), (SMALL, MLP)):
        cfg = TrainConfig(data=data, model=model, dtype="float32")
        d = make_data(cfg)
        assert make_model(cfg, d)(d.X).shape == (50, 10)


# --- the data makers --------------------------------------------------------------------------------------------------

def idx_bytes(a):
    a = np.asarray(a, dtype=np.uint8)
    return struct.pack(">I", {1: 2049, 3: 2051}[a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    "A tiny fake Fashion-MNIST: 30 training and 20 test images."
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 20)):
        images, labels = FASHION_MNIST_FILES[split]
        (tmp_path / images).write_bytes(gzip.compress(idx_bytes(rng.integers(0, 256, (n, 28, 28)))))
        (tmp_path / labels).write_bytes(gzip.compress(idx_bytes(np.arange(n) % 10)))
    return tmp_path


def test_fashion_mnist_takes_numpy_integers_and_bools(fake):
    np_args = dict(n_per_class=np.int64(2), n_test_per_class=np.int64(1), seed=np.int64(1), pad=np.int64(2),
                   normalize=np.bool_(True), image=np.bool_(True))
    mine = fashion_mnist(root=fake, **np_args)
    plain = fashion_mnist(root=fake, **{k: v.item() for k, v in np_args.items()})
    assert mine.name == plain.name == "fashion_mnist(n_per_class=2, n_test_per_class=1, pad=2, normalize=True, seed=1)"
    assert torch.equal(mine.X, plain.X) and torch.equal(mine.y_test, plain.y_test)


def test_other_makers_take_numpy_integers():
    assert blobs(k=np.int64(3), d=np.int64(2), n_per_class=np.int64(3), seed=np.int64(1)).name == "blobs(k=3, d=2, spread=1.0)"
    assert torch.equal(digits(n_per_class=np.int64(3), seed=np.int64(2)).X, digits(n_per_class=3, seed=2).X)


X, Y = torch.randn(40, 2), torch.arange(40) % 2


@pytest.mark.parametrize("make", [lambda s: from_tensors(X, Y, seed=s), lambda s: subset(from_tensors(X, Y), 3, seed=s),
                                  lambda s: shuffled_by_class(Y, 2, seed=s), lambda s: blobs(d=2, n_per_class=2, seed=s),
                                  lambda s: two_blobs(seed=s), lambda s: digits(n_per_class=2, seed=s)])
@pytest.mark.parametrize("seed", [1.5, 1.0, True, "1", None])
def test_a_seed_must_be_a_whole_number(make, seed):
    with raises(ValueError, "seed must be a whole number (an int)"):
        make(seed)


def test_a_numpy_seed_is_the_seed_it_holds():
    a, b = from_tensors(X, Y, seed=np.int64(3)), from_tensors(X, Y, seed=3)
    assert torch.equal(a.X, b.X) and torch.equal(a.X_test, b.X_test)


@pytest.mark.parametrize("make", [lambda s: blobs(d=2, n_per_class=2, seed=s), lambda s: from_tensors(X, Y, seed=s),
                                  lambda s: digits(n_per_class=2, seed=s), lambda s: subset(from_tensors(X, Y), 2, seed=s)])
@pytest.mark.parametrize("seed", [2**70, 2**64, -2**63 - 1])
def test_a_seed_outside_the_generators_range_is_refused(make, seed):
    with raises(ValueError, f"seed={seed}", "torch.Generator.manual_seed", "-2**63..2**64-1"):
        make(seed)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "2", np.float64(2)])
def test_num_classes_must_be_a_whole_number_of_at_least_one(bad):
    with raises(ValueError, "num_classes must be a whole number >= 1", repr(bad)):
        from_tensors(X, Y, num_classes=bad)


def test_num_classes_numpy_is_an_int():
    d = from_tensors(X, Y, num_classes=np.int64(2))
    assert d.num_classes == 2 and type(d.num_classes) is int
    with raises(ValueError, "num_classes must be a whole number >= 1"):
        Data(X, Y, None, None, 2.0, "mine")


def test_from_tensors_refuses_empty_data():
    with raises(ValueError, "from_tensors: X and y hold no samples"):
        from_tensors(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))


def test_from_tensors_refuses_bool_labels():
    with raises(ValueError, "labels must be integers", "torch.bool", "y.long()"):
        from_tensors(X, Y.bool())


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool, torch.complex64])
def test_from_tensors_refuses_inputs_that_are_not_floating_point(dtype):
    with raises(ValueError, f"X is {dtype}", "X.float()"):
        from_tensors(X.abs().to(dtype), Y)
    with raises(ValueError, "X is torch.uint8", "X.float()"):
        from_tensors(np.zeros((10, 4), np.uint8), np.array([0, 1] * 5))


def test_digits_blames_the_test_count_it_was_given():
    with raises(ValueError, "digits needs n_test_per_class >= 0; got n_test_per_class=-1"):
        digits(n_test_per_class=-1)
    with pytest.raises(ValueError) as e: digits(n_test_per_class=200)
    assert "n_test_per_class=200 leaves" in str(e.value) and "n_per_class=None" not in str(e.value)
    with raises(ValueError, "n_per_class=200 is not possible"):
        digits(n_per_class=200)



def test_minibatch_training_takes_every_seed_the_config_takes(tmp_path, monkeypatch):
    "The minibatch order's generator seed is seed * 1_000_003 + epoch: past 2**43 it overflowed torch's seed."
    from hessian_nb.train import train
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path))
    run = train(TrainConfig(data=SMALL, model=MLP, seed=2**61, batch_size=8, max_steps=3, grad_tol=0, log_every=1))
    assert run.step == 3
