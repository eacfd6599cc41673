import os

os.environ.setdefault("HESSIAN_NB_QUIET", "1")


import pytest
import torch


@pytest.fixture
def float64_default():
    "Tensors created in the test default to float64; the previous default is restored afterwards."
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
