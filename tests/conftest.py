import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("GLOCAL_TEST_THREADS", "2")))

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def has_fashion_mnist() -> bool:
    return os.path.isfile(os.path.join(FASHION_MNIST, "t10k-labels-idx1-ubyte.gz"))
