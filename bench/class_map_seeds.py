"""Chapter 06b's map, seed by seed: is a run's end point a property of its setting or of its seed?

The map in chapter 06b trains one run (seed 0) per setting. Its weight-decay run (5e-3) ended at 100% training accuracy with
the map's lowest G/G1 (8.3) on one thread, and at 72% training accuracy with G/G1 17.7 when the same seed was trained with
two threads (float32 rounding in a different order): that run's end point is decided by rounding, not by its setting. This
script trains the base point (30 images per class) and the weight-decay point with seeds 0-4 and prints the end stage of
each, so the chapter's statements about either rest on five runs, not one.

    HESSIAN_NB_QUIET=1 OMP_NUM_THREADS=1 .venv/bin/python bench/class_map_seeds.py     # ~15 min on one core, cached
"""
import statistics
import time

from hessian_nb.class_scale import map_point, map_points, map_rows

SEEDS = range(5)
KEYS = ["G/G1", "G/G012", "share G3", "heaviest 5%", "tightness", "acc", "test_acc"]


def main():
    pts = map_points("book")
    t0 = time.perf_counter()
    print("| run | seed | " + " | ".join(KEYS) + " |\n|" + "---|" * (len(KEYS) + 2))
    for label in ("30 per class", "weight decay 5e-3"):
        ends = []
        for seed in SEEDS:
            end = map_rows({label: map_point({**pts[label], "seed": seed})})[-1]
            ends.append(end)
            print(f"| {label} | {seed} | " + " | ".join(f"{end[k]:.3g}" for k in KEYS) + " |", flush=True)
        print(f"| {label} | median | " + " | ".join(f"{statistics.median(e[k] for e in ends):.3g}" for k in KEYS) + " |")
    print(f"\n{(time.perf_counter() - t0) / 60:.1f} minutes")


if __name__ == "__main__":
    main()
