"""Sagun et al. 2017 Fig. 4 (large vs small batch): how the ratio of top eigenvalues depends on what the paper left unstated.

The paper trained a convnet on 1,000 MNIST images with batch 10 and 512, "the same step size and number of iterations", and
found the large batch's top eigenvalue ~4x the small batch's (21.3 vs 5.3). Neither the step size nor the step count is
stated. Chapter 05 measures 2.9x at 300 steps and lr 0.1 on Fashion-MNIST; this sweep varies the two unstated knobs:

- steps in {150, 300, 600, 1200, 2000} (2000: the paper-scale setting of chapter 05) at lr 0.1, and lr in {0.05, 0.2} at 300 steps, 3 seeds each, both batch sizes;
- a control for the edge-of-stability reading: gradient descent with step lr cannot settle where the top eigenvalue
  exceeds 2/lr, so the large batch (close to full batch: 512 of 1,000) should sit at or below 2/lr, and the small batch's
  noise should hold it lower.

    HESSIAN_NB_QUIET=1 OMP_NUM_THREADS=1 .venv/bin/python bench/batch_sweep.py     # ~30 min on one core, cached

Every run goes through the chapters' result cache (`fmnist_batch_run`), so a second run only prints.
"""
import time

import torch

from hessian_nb.bulk import fmnist_batch_run
from hessian_nb.store import one_thread

SEEDS = (0, 1, 2)
GRID = [(0.1, s) for s in (150, 300, 600, 1200, 2000)] + [(0.05, 300), (0.2, 300)]


def row(lr, steps):
    out = {}
    for b in (10, 512):
        runs = [fmnist_batch_run(b, seed, lr=lr, steps=steps) for seed in SEEDS]
        out[b] = {"top": torch.tensor([float(r["top"][0]) for r in runs]),
                  "loss": sum(r["loss"] for r in runs) / len(runs),
                  "test_acc": sum(r["test_acc"] for r in runs) / len(runs)}
    return out


def main():
    print("| lr | steps | 2/lr | top eig. large (512) | top eig. small (10) | ratio large/small (per seed) | "
          "train loss large / small | test acc. large / small |")
    print("|---|---|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    with one_thread():
        for lr, steps in GRID:
            r = row(lr, steps)
            L, S = r[512]["top"], r[10]["top"]
            ratio = L / S
            print(f"| {lr} | {steps} | {2 / lr:.0f} | {L.mean():.1f} ({L.min():.1f}-{L.max():.1f}) | "
                  f"{S.mean():.1f} ({S.min():.1f}-{S.max():.1f}) | {ratio.mean():.2f} ({ratio.min():.2f}-{ratio.max():.2f}) | "
                  f"{r[512]['loss']:.3g} / {r[10]['loss']:.3g} | {r[512]['test_acc']:.3f} / {r[10]['test_acc']:.3f} |",
                  flush=True)
    print(f"\n{(time.perf_counter() - t0) / 60:.1f} minutes; paper (MNIST): 21.3 vs 5.3 (4.0x)")


if __name__ == "__main__":
    main()
