import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("GLOCAL_TEST_THREADS", "2")))

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Small models train fastest on one thread (and a shared 2-core box stays usable)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def has_fashion_mnist() -> bool:
    return os.path.isfile(os.path.join(FASHION_MNIST, "t10k-labels-idx1-ubyte.gz"))


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the long reliability loops (marked slow): random kills, 200 DDP runs")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long loops run with --slow (not in CI's suite)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="long loop: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
