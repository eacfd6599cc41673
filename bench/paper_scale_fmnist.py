"""Fashion-MNIST at the papers' scale: Sagun et al. 2017 Fig. 4 (batch 10 vs 512, the convnet, 10 seeds, 2,000 steps) and the
class-mean map up to 1,000 images per class (Papyan 2019's "top-C of G ~ G1").

    HESSIAN_NB_QUIET=1 .venv/bin/python bench/paper_scale_fmnist.py [batch|map|map-fit|widths|spread]

widths: Sagun 2017 Fig. 3 and Sagun 2016 Fig. 1 at the paper scale (1,000 images, one and two hidden layers of 10-70
units, top 120 of H by Lanczos and SLQ with 8 probes x 100 steps).
spread: Sagun 2016 Fig. 7 from the authors' N(0, 0.1^2) initialisation with the paper scale's budget (200,000 GD
steps, against the book's 50,000) and a third, 600,000, for spreads 0.8 and 1.0: do the larger budgets make them converge?
map-fit: the map's 300 and 1,000 images per class did not fit their training sets in 5,000 steps (92% and 89%); these
runs train them longer (20,000 and 40,000 steps) to reach the late stage the map's other runs reach.

Everything goes through the result cache like the chapters', so a second run only prints. Needs the Debian package
dataset-fashion-mnist. Prints markdown tables for bench/RESULTS.md with the time they took.
"""
import sys
import time

import torch

from hessian_nb.bulk import (FMNIST_BATCH_PAPER, SCALES, SPREAD_PAPER, fmnist_batch_comparison, fmnist_width_sweep,
                             near_zero_share, spread_sweep_small_init)
from hessian_nb.class_scale import class_map, map_point, map_points, map_rows

def batch():
    t = time.perf_counter(); comp = fmnist_batch_comparison("paper"); minutes = (time.perf_counter() - t) / 60
    print(f"scale 'paper': {SCALES['paper']['fmnist_batches']}; {minutes:.1f} minutes\n")
    print("| batch | seeds | top 10 eigenvalues of H, mean (std) | training loss | test accuracy |\n|---|---|---|---|---|")
    for label, runs in comp.items():
        v = torch.stack([r["top"][:10].double() for r in runs])
        print(f"| {label} | {len(runs)} | {', '.join(f'{m:.3g} ({s:.2g})' for m, s in zip(v.mean(0), v.std(0)))} | "
              f"{sum(r['loss'] for r in runs) / len(runs):.3g} | {sum(r['test_acc'] for r in runs) / len(runs):.3f} |")
    print(f"\npaper (MNIST): {FMNIST_BATCH_PAPER}")

def fit_points() -> dict:
    "The paper map's two largest data sizes, trained until they fit (snapshots: the map's, and the end)."
    base = map_points("paper")
    return {f"{n} per class, {steps:,} steps": {**base[f"{n} per class"], "steps": steps, "snapshots": [30, 300, 5000, steps]}
            for n, steps in ((300, 20000), (1000, 40000))}

def cmap(fit=False):
    t = time.perf_counter()
    rows = map_rows({k: map_point(p) for k, p in fit_points().items()} if fit else class_map("paper"))
    minutes = (time.perf_counter() - t) / 60
    print(f"class map, scale 'paper'{', trained to fit' if fit else ''}: {minutes:.1f} minutes\n")
    keys = ["G/G1", "G/G012", "overlap", "tightness", "tightness by c'", "share G1", "share G2", "share G3", "heaviest 5%", "acc"]
    print("| run | step | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 2))
    for r in rows: print(f"| {r['run']} | {r['step']} | " + " | ".join(f"{r[k]:.3g}" for k in keys) + " |")

def widths():
    t = time.perf_counter(); sweep = fmnist_width_sweep("paper"); minutes = (time.perf_counter() - t) / 60
    print(f"widths, scale 'paper': {SCALES['paper']['fmnist_widths']}; {minutes:.1f} minutes\n")
    print("| hidden layers | width | P | top 5 of H | 120th | top / 120th | SLQ share within 1e-3 of 0 | training loss | training acc. |"
          "\n|---|---|---|---|---|---|---|---|---|")
    for (d, h), r in sweep.items():
        top = r["top"].double()
        print(f"| {d} | {h} | {r['P']:,} | {', '.join(f'{x:.3g}' for x in top[:5])} | {float(top[-1]):.3g} | "
              f"{float(top[0] / top[-1]):.0f} | {near_zero_share(r):.3f} | {r['loss']:.3g} | {r.get('acc', float('nan')):.3f} |")

def spread():
    # a third budget, 600,000 steps, for the two spreads that the paper scale's 200,000 leave just short of 1e-4
    SCALES["600k"] = {"spreads": {**SCALES["paper"]["spreads"], "spreads": (0.8, 1.0), "small_init_steps": 600_000}}
    out = {}
    for scale in ("book", "paper", "600k"):
        t = time.perf_counter(); out[scale] = spread_sweep_small_init(scale); minutes = (time.perf_counter() - t) / 60
        print(f"spread sweep from N(0, 0.1^2), scale {scale!r}: {SCALES[scale]['spreads']}; {minutes:.1f} minutes")
    print("\n| spread | budget (GD steps) | top 2 eigenvalues of H | gradient norm | training loss | converged (<= 1e-4) | paper |"
          "\n|---|---|---|---|---|---|---|")
    for scale, sw in out.items():
        for sp, f in sw.items():
            print(f"| {sp} | {SCALES[scale]['spreads']['small_init_steps']:,} | {float(f.H[0]):.3g}, {float(f.H[1]):.3g} | "
                  f"{f.grad_norm:.1e} | {f.loss:.3g} | {'yes' if f.grad_norm <= 1e-4 else 'no'} | {SPREAD_PAPER[sp]} |")

if __name__ == "__main__":
    which = sys.argv[1:] or ["batch", "map"]
    if "batch" in which: batch()
    if "map" in which: cmap()
    if "map-fit" in which: cmap(fit=True)
    if "widths" in which: widths()
    if "spread" in which: spread()
