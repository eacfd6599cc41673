"""Bad input at the doors of the library: the command line (hessian_nb.cli, as a module and as the console script), the
training configuration (hessian_nb.train.TrainConfig) and the data makers (hessian_nb.data). Each case ends in the right
behaviour or in an error that names the argument and the fix."""
import gzip
import dataclasses
import math
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hessian_nb.bulk import TrainedTop
from hessian_nb.class_scale import ClassFacts

from hessian_nb import cli
from hessian_nb.data import FASHION_MNIST_FILES, blobs, digits, fashion_mnist, subset, two_blobs
from hessian_nb.store import cache_root
from hessian_nb.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SCRIPT = Path(PY).parent / "hessian-nb"  # the console script pip installed beside this Python


def shell(*argv, cwd=ROOT, env=None):
    "Run a command line in a fresh process; its CompletedProcess (text)."
    env = {**os.environ, "HESSIAN_NB_QUIET": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def refused(capsys, *argv):
    "(exit status, last line of stderr) of a command line that cli.main refuses."
    with pytest.raises(SystemExit) as e: cli.main(list(argv))
    return e.value.code, capsys.readouterr().err.strip().splitlines()[-1]


# The command line: one behaviour through every door

def test_module_and_console_script_print_the_same():
    runs = {"python -m hessian_nb.cli": shell(PY, "-m", "hessian_nb.cli", "list"), "hessian-nb": shell(SCRIPT, "list")}
    for door, r in runs.items(): assert r.returncode == 0 and "class_sweep" in r.stdout and "cache: " in r.stdout, (door, r)
    assert runs["python -m hessian_nb.cli"].stdout == runs["hessian-nb"].stdout


def test_python_m_package_is_the_same_command_line():
    a, b = shell(PY, "-m", "hessian_nb", "list"), shell(PY, "-m", "hessian_nb.cli", "list")
    assert a.returncode == 0 and a.stdout == b.stdout and "class_sweep" in a.stdout, a
    bad = shell(PY, "-m", "hessian_nb", "run", "nonsense")
    assert bad.returncode == 2 and "invalid choice: 'nonsense'" in bad.stderr, bad
    assert all(name in bad.stderr for name in cli.EXPERIMENTS), bad.stderr


def test_module_refuses_an_unknown_experiment_naming_the_choices():
    for argv in ([PY, "-m", "hessian_nb.cli"], [SCRIPT]):
        r = shell(*argv, "run", "nonsense")
        assert r.returncode == 2 and "invalid choice: 'nonsense'" in r.stderr, r
        assert all(name in r.stderr for name in cli.EXPERIMENTS), r.stderr
        assert r.stdout == "", "nothing ran"


def test_options_that_do_not_apply_are_refused(capsys):
    assert refused(capsys, "list", "--scale", "paper") == (2, "hessian-nb: error: unrecognized arguments: --scale paper")
    assert refused(capsys, "list", "--cache", "X") == (2, "hessian-nb: error: unrecognized arguments: --cache X")
    assert refused(capsys, "--cache", "X", "list")[0] == 2
    assert refused(capsys, "run", "class_sweep", "--scale", "huge")[0] == 2


@pytest.mark.parametrize("scale", ["paper", "book"])
def test_one_size_experiment_refuses_a_scale(capsys, monkeypatch, scale):
    monkeypatch.setitem(cli.EXPERIMENTS, "training_spectra", cli.Experiment(lambda: pytest.fail("it ran"), "stub", str))
    code, msg = refused(capsys, "run", "training_spectra", "--scale", scale)
    assert code == 2 and "training_spectra has one size only and takes no --scale" in msg, msg
    assert f"drop --scale {scale}" in msg


def test_one_size_experiment_runs_without_a_scale_and_the_others_get_book(capsys, monkeypatch, tmp_path):
    class Facts:  # what summary() reads of a spectrum
        H, P, count_H, loss = torch.tensor([3.0, 2.0, 1.0]), 10, 1, 0.5
    calls = []
    monkeypatch.setitem(cli.EXPERIMENTS, "training_spectra",
                        cli.Experiment(lambda: calls.append(()) or {0: Facts()}, "stub", cli.summary))
    monkeypatch.setitem(cli.EXPERIMENTS, "class_sweep",
                        cli.Experiment(lambda scale: calls.append(scale) or {2: Facts()}, "stub", cli.summary))
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path))
    assert cli.main(["run", "training_spectra"]) == 0 and cli.main(["run", "class_sweep"]) == 0
    assert calls == [(), "book"]
    out = capsys.readouterr().out
    assert "training_spectra at its one size" in out and "class_sweep at scale 'book'" in out


def test_list_and_help_say_where_the_cache_is_outside_the_checkout(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("HESSIAN_NB_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path)); monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps help at hyphens, inside paths too: one line each
    home_cache = tmp_path / ".cache" / "hessian_nb"
    assert cache_root() == home_cache
    assert cli.main(["list"]) == 0
    assert f"cache: {home_cache} (under the home folder" in capsys.readouterr().out
    with pytest.raises(SystemExit): cli.main(["run", "--help"])
    help_text = capsys.readouterr().out
    assert "else ~/.cache/hessian_nb" in help_text and f"here: {home_cache} (under the home folder" in help_text
    assert "the project's .cache)" not in help_text  # the old help, wrong outside a checkout


def test_list_names_the_cache_set_by_the_environment(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HESSIAN_NB_CACHE", str(tmp_path / "odd%name")); monkeypatch.setenv("COLUMNS", "1000")
    assert cli.main(["list"]) == 0
    assert f"cache: {tmp_path / 'odd%name'} (set by $HESSIAN_NB_CACHE)" in capsys.readouterr().out
    with pytest.raises(SystemExit): cli.main(["run", "--help"])  # a % in the path does not break argparse's help
    assert f"here: {tmp_path / 'odd%name'} (set by $HESSIAN_NB_CACHE)" in capsys.readouterr().out


def test_list_in_a_subprocess_outside_the_checkout(tmp_path):
    env = {"HOME": str(tmp_path)}
    r = shell(SCRIPT, "list", cwd=tmp_path, env={**env, "HESSIAN_NB_CACHE": ""})
    assert r.returncode == 0 and f"cache: {tmp_path / '.cache' / 'hessian_nb'} (under the home folder" in r.stdout, r


# TrainConfig: every field checked when the configuration is made

@pytest.mark.parametrize("field,value,message", [
    ("batch_size", 0, "batch_size must be a positive integer, or None for full-batch gradient descent, got 0"),
    ("batch_size", -8, "batch_size must be a positive integer"),
    ("batch_size", 2.5, "batch_size must be a positive integer"),
    ("batch_size", True, "batch_size must be a positive integer"),
    ("batch_size", "32", "batch_size must be a positive integer"),
    ("lr", 0, "lr must be a finite number > 0"),
    ("lr", -0.1, "lr must be a finite number > 0"),
    ("lr", math.nan, "lr must be a finite number > 0"),
    ("lr", math.inf, "lr must be a finite number > 0"),
    ("lr", "0.1", "lr must be a finite number > 0"),
    ("max_steps", -1, "max_steps must be an integer >= 0"),
    ("max_steps", 2.5, "max_steps must be an integer >= 0"),
    ("max_steps", 1e4, "max_steps must be an integer >= 0"),
    ("grad_tol", -1e-4, "grad_tol must be a finite number >= 0"),
    ("grad_tol", math.nan, "grad_tol must be a finite number >= 0"),
    ("log_every", -1, "log_every must be an integer >= 0"),
    ("log_every", 0.5, "log_every must be an integer >= 0"),
    ("seed", 0.5, "seed must be an integer"),
    ("dtype", "double", "dtype must be one of 'float32', 'float64'"),
    ("dtype", "int64", "dtype must be one of 'float32', 'float64'"),
    ("dtype", torch.float64, "dtype must be one of 'float32', 'float64', 'float16', 'bfloat16', got torch.float64; pass the string 'float64'."),
])
def test_train_config_refuses(field, value, message):
    with pytest.raises(ValueError, match="TrainConfig: " + re.escape(message)): TrainConfig(**{field: value})


def test_train_config_keeps_valid_values_and_keys():
    a = TrainConfig(data={"name": "two_blobs"}, model={"arch": "mlp", "hidden": [4]}, lr=1, batch_size=8, max_steps=0,
                    grad_tol=0, log_every=0, dtype="float32")
    assert (a.lr, type(a.lr), a.batch_size, a.max_steps) == (1, int, 8, 0)  # kept as given: the key does not move
    b = TrainConfig(data={"name": "two_blobs"}, model={"arch": "mlp", "hidden": [4]}, lr=np.int64(1), batch_size=np.int64(8),
                    max_steps=np.int32(0), grad_tol=np.float32(0), log_every=np.int16(0), dtype="float32")
    assert b.key() == dataclasses.replace(a, grad_tol=0.0).key()  # numpy numbers: Python numbers, a JSON key
    assert TrainConfig(batch_size=None).batch_size is None


# The data makers: whole-number counts, positive spreads, True/False switches

@pytest.mark.parametrize("make,message", [
    (lambda: blobs(n_per_class=2.5), "blobs: n_per_class must be a whole number (an int), got 2.5 (float); pass n_per_class=2 or n_per_class=3"),
    (lambda: blobs(k=3.0), "blobs: k must be a whole number (an int), got 3.0 (float); pass k=3."),
    (lambda: blobs(d=True), "blobs: d must be a whole number (an int), got True (bool); pass an int, not a bool"),
    (lambda: blobs(n_test_per_class=2.5), "blobs: n_test_per_class must be a whole number"),
    (lambda: blobs(n_test_per_class=-1), "blobs needs n_test_per_class >= 0; got n_test_per_class=-1"),
    (lambda: blobs(spread=math.nan), "blobs needs spread > 0, a finite number; got spread=nan"),
    (lambda: blobs(center_box=0), "blobs needs center_box > 0"),
    (lambda: blobs(seed=0.5), "blobs: seed must be a whole number"),
    (lambda: two_blobs(n_per_class=2.5), "two_blobs: n_per_class must be a whole number (an int), got 2.5"),
    (lambda: two_blobs(n_test_per_class=-1), "two_blobs needs n_test_per_class >= 0; got n_test_per_class=-1"),
    (lambda: two_blobs(n_test_per_class=1.5), "two_blobs: n_test_per_class must be a whole number"),
    (lambda: two_blobs(spread="0.2"), "two_blobs needs spread > 0, a finite number; got spread='0.2'"),
    (lambda: digits(n_per_class=2.5), "digits: n_per_class must be a whole number (an int), got 2.5"),
    (lambda: digits(n_test_per_class=10.0), "digits: n_test_per_class must be a whole number"),
    (lambda: digits(image="yes"), "digits: image must be True or False, got 'yes'"),
    (lambda: subset(blobs(k=2, d=3, n_per_class=5), 2.5), "subset: n_per_class must be a whole number (an int), got 2.5"),
])
def test_data_makers_refuse(make, message):
    with pytest.raises(ValueError, match=re.escape(message)): make()


def test_numpy_integers_are_whole_numbers():
    assert blobs(k=np.int64(3), d=np.int32(4), n_per_class=np.int64(5)).class_counts().tolist() == [5] * 3


def write_idx(path, a):
    "A gzipped IDX file of the uint8 array `a` (written here, independent of the library)."
    head = struct.pack(">I", {1: 2049, 3: 2051}[a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    Path(path).write_bytes(gzip.compress(head + a.astype(np.uint8).tobytes()))


@pytest.fixture
def fake_fashion(tmp_path):
    "A fake Fashion-MNIST with 3 training and 2 test images per class."
    for split, n in (("train", 30), ("test", 20)):
        labels = np.arange(n) % 10
        images, labels_file = (tmp_path / f for f in FASHION_MNIST_FILES[split])
        write_idx(images, np.broadcast_to(labels[:, None, None] * 20, (n, 28, 28))); write_idx(labels_file, labels)
    return tmp_path


@pytest.mark.parametrize("kwargs,message", [
    (dict(n_per_class=2.5), "fashion_mnist: n_per_class must be a whole number (an int), got 2.5 (float); pass n_per_class=2 or n_per_class=3"),
    (dict(n_per_class=True), "fashion_mnist: n_per_class must be a whole number (an int), got True (bool); pass an int, not a bool"),
    (dict(n_test_per_class=0.5), "fashion_mnist: n_test_per_class must be a whole number"),
    (dict(n_per_class=0), "n_per_class=0 is not possible: class 0 has 3 images, and at least 1 is needed. Pass 1..3"),
    (dict(n_per_class=-2), "n_per_class=-2 is not possible"),
    (dict(n_per_class=4), "n_per_class=4 is not possible: class 0 has 3 images"),
    (dict(n_test_per_class=3), "n_test_per_class=3 is not possible: class 0 has 2 images"),
    (dict(image="no"), "fashion_mnist: image must be True or False, got 'no' (str)"),
    (dict(seed=1.5), "fashion_mnist: seed must be a whole number"),
])
def test_fashion_mnist_refuses(fake_fashion, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)): fashion_mnist(root=fake_fashion, **kwargs)


def test_fashion_mnist_arguments_are_checked_before_the_files_are_looked_for(tmp_path):
    "A wrong count is named even where the files are missing: the first error is the argument, not the install hint."
    with pytest.raises(ValueError, match="n_per_class must be a whole number"): fashion_mnist(n_per_class=2.5, root=tmp_path)


def test_fashion_mnist_valid_counts_still_work(fake_fashion):
    d = fashion_mnist(n_per_class=np.int64(2), n_test_per_class=0, root=fake_fashion, image=np.bool_(True))
    assert d.class_counts().tolist() == [2] * 10 and d.X.shape == (20, 1, 28, 28) and len(d.X_test) == 0


def test_every_table_prints_its_kind_of_result():
    class Facts:  # what the tables read of a spectrum
        def __init__(self, top, count): self.H, self.P, self.count_H, self.loss = torch.tensor(top), 10, count, 0.5
    draws = cli.draws_table({2: [Facts([3.0, 2.0, 0.1], 2), Facts([5.0, 1.0, 0.1], None)]})
    assert draws.splitlines()[1].split("|")[3].strip() == "2 -" and draws.splitlines()[1].endswith("| 3")  # torch: the lower median
    top = lambda t, loss, test_acc=None: TrainedTop(torch.tensor(t), 10, loss, 0.5, 1e-3, test_acc=test_acc)
    runs = cli.runs_table({"small": [top([4.0, 2.0, 1.0], 0.1, 0.8), top([2.0, 2.0, 1.0], 0.3, 0.6)],
                           0.0: top([1.0, 0.5, 0.2], 2.3)})  # no test set: nan, no error
    small, init = runs.splitlines()[1:]
    assert "|    2 |" in small and "3, 2, 1" in small and "| 0.2 | 0.700" in small, small
    assert init.endswith("| 2.3 | nan"), init
    f = ClassFacts(G=torch.tensor([4.0, 2.0]), G1=torch.tensor([2.0, 1.0]), G012=torch.tensor([4.0, 2.0]), overlap=0.5,
                   tightness=0.1, tightness_logit=0.2, tr_G0=0.5, tr_G1=0.5, tr_G2=0.5, tr_G=2.0, tr_G3=0.5,
                   tr_G3_same=0.1, heavy_G=0.3, heavy_G3=0.3, loss=0.1, acc=0.9, grad_norm=1e-3, test_acc=0.8, step=30)
    line = cli.map_table({"30 per class": [f]}).splitlines()[1]
    assert [x.strip() for x in line.split("|")] == ["30 per class", "30", "2", "1", "0.50", "0.900"], line


def test_the_command_line_does_not_import_the_network_module_until_report():
    "hessian_nb.network patches Operator when imported, which moves every cache key: `run` must read what the book cached."
    import subprocess
    import sys
    code = "import sys, hessian_nb.cli; print('hessian_nb.network' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
