"""Claim 2 (outliers = classes) at the papers' sizes: Sagun et al. 2017's blob networks, 100-30-30-k (M = 3960 + 31k), k = 2..50.

    HESSIAN_NB_QUIET=1 .venv/bin/python bench/bulk_paper_scale.py

Trains (through the run cache) and diagonalises every network densely in float64, then prints the table for RESULTS.md with
the time it took. Results are cached like the chapter's, so a second run only prints.
"""
import time

import torch

from hessian_nb.bulk import SCALES, class_sweep

if __name__ == "__main__":
    t = time.perf_counter()
    sweep = class_sweep("paper")  # a second run reads the cache: the time printed is then the reading time
    minutes = (time.perf_counter() - t) / 60
    table1 = {2: (3, 4, 2), 5: (6, 7, 5), 10: (11, 12, 10), 20: (4, 21, 21), 50: (50, 51, 49)}  # gap / ratio / elbow, GD-ReLU
    print(f"scale 'paper': {SCALES['paper']['classes']}; {minutes:.1f} minutes (training and dense spectra, 2 CPU cores)\n")
    print("| classes k | P | N | final gradient norm | counted in H | counted in G | paper: gap / ratio / elbow | top k+1 eigenvalues of H |")
    print("|---|---|---|---|---|---|---|---|")
    for k, f in sweep.items():
        H = f["H"]
        print(f"| {k} | {f['P']:,} | {f['N']} | {f['grad_norm']:.1e} | {f['count_H']} | {f['count_G']} | "
              f"{' / '.join(map(str, table1[k]))} | {', '.join(f'{x:.3g}' for x in H.flip(0)[:k + 1].tolist()[:12])}{' ...' if k > 11 else ''} |")
