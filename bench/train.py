"""Training speed: hessian_nb.train against a minimal hand-written PyTorch loop doing the same arithmetic, in one run.

1. One full-batch GD step of the 100-30-30-10 blob MLP (Sagun et al. 2017) on N = 1,000 samples, float64.
2. One SGD epoch (batch 32) of the small CNN on scikit-learn digits (all 1,297 training images), float32.
3. Training the 100-30-30-10 blob net to gradient norm 1e-4 (wall time, for scale).

Both sides take the same number of steps from the same initialisation; hessian_nb logs nothing (log_every=0: no full-batch
evaluations), so the ratio measures the loop's own overhead. Medians of interleaved repeats; ratio = hessian_nb / minimal.

    .venv/bin/python bench/train.py
"""
import copy
import statistics
import time

import torch
from torch import nn

from hessian_nb.train import TrainConfig, make_data, make_model, train


def minimal_loop(model, X, y, lr, steps, batch_size=None, seed=0):
    "The reference: forward, cross-entropy, backward, p -= lr * grad; minibatches from a seeded permutation per epoch."
    params = list(model.parameters())
    n = len(X)
    for step in range(steps):
        if batch_size is None: Xb, yb = X, y
        else:
            per_epoch = -(-n // batch_size); epoch, i = divmod(step, per_epoch)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
            idx = perm[i * batch_size:(i + 1) * batch_size]; Xb, yb = X[idx], y[idx]
        grads = torch.autograd.grad(nn.functional.cross_entropy(model(Xb), yb), params)
        with torch.no_grad():
            for p, g in zip(params, grads): p.sub_(g, alpha=lr)
    return model


def compare(cfg, steps, repeats=7):
    data = make_data(cfg)
    init = make_model(cfg, data)
    ours, ref = [], []
    for _ in range(repeats):  # interleaved, so drift on the shared machine hits both
        m = copy.deepcopy(init); t0 = time.perf_counter()
        train(cfg, data, m, progress=False); ours.append(time.perf_counter() - t0)
        m2 = copy.deepcopy(init); t0 = time.perf_counter()
        minimal_loop(m2, data.X, data.y, cfg.lr, steps, cfg.batch_size, cfg.seed); ref.append(time.perf_counter() - t0)
    same = all(torch.equal(a, b) for a, b in zip(m.parameters(), m2.parameters()))
    return statistics.median(ours), statistics.median(ref), same


def main():
    print(f"# bench/train.py: torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| case | hessian_nb (ms) | minimal loop (ms) | ratio | same parameters |")
    print("|---|---|---|---|---|")
    S = 200
    gd = TrainConfig(data={"name": "blobs", "k": 10, "d": 100, "n_per_class": 100}, model={"arch": "mlp", "hidden": [30, 30]},
                     lr=0.1, max_steps=S, grad_tol=0.0, log_every=0, dtype="float64")
    a, b, same = compare(gd, S)
    print(f"| one GD step, 100-30-30-10 MLP, N=1000, float64 | {a / S * 1e3:.3f} | {b / S * 1e3:.3f} | {a / b:.2f} | {same} |")
    n_train = len(make_data(TrainConfig(data={"name": "digits", "image": True}, model={"arch": "cnn"})).X)
    E = -(-n_train // 32)
    sgd = TrainConfig(data={"name": "digits", "image": True}, model={"arch": "cnn"}, lr=0.05, batch_size=32, max_steps=E,
                      grad_tol=0.0, log_every=0, dtype="float32")
    a, b, same = compare(sgd, E, repeats=5)
    print(f"| one SGD epoch ({E} steps of 32), digits CNN, float32 | {a * 1e3:.1f} | {b * 1e3:.1f} | {a / b:.2f} | {same} |")
    conv = TrainConfig(data={"name": "blobs", "k": 10, "d": 100, "n_per_class": 100}, model={"arch": "mlp", "hidden": [30, 30]},
                       lr=0.1, max_steps=200_000, grad_tol=1e-4, log_every=1000, dtype="float64")
    t0 = time.perf_counter(); r = train(conv, progress=False); t = time.perf_counter() - t0
    print(f"\nTraining the 100-30-30-10 blob MLP (k=10, N=1000, lr 0.1, float64) to gradient norm 1e-4: "
          f"{r.step:,} GD steps, {t:.1f} s, final gradient norm {r.history[-1]['grad_norm']:.2e}, converged={r.converged}.")


if __name__ == "__main__":
    main()
