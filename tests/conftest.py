import os

os.environ.setdefault("HESSIAN_NB_QUIET", "1")
