"""The scale benchmark (bench/scale.py) on a CUDA GPU: hessian_nb and the peers on the same ResNet-style CNN (P = 1,022,716),
float32, absolute times and peak GPU memory (torch.cuda.max_memory_allocated); with 2 or more GPUs also the sharded run
(NCCL, one process per GPU). Exits with a message, and status 0, where no GPU is visible.

    HESSIAN_NB_QUIET=1 .venv/bin/python bench/gpu.py [--n-per-class 500]
"""
import subprocess
import sys
from pathlib import Path

import torch

if __name__ == "__main__":
    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device visible (torch.cuda.is_available() is False); nothing measured.")
        sys.exit(0)
    n = sys.argv[sys.argv.index("--n-per-class") + 1] if "--n-per-class" in sys.argv else "500"
    worlds = "1,2" if torch.cuda.device_count() >= 2 else "1"
    sys.exit(subprocess.call([sys.executable, str(Path(__file__).with_name("scale.py")), "--device", "cuda",
                              "--n-per-class", n, "--worlds", worlds]))
