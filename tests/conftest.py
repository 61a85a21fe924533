from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own prediction cache, so no test is helped by another's forward passes."""
    monkeypatch.setenv("CXRBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def torch_one_thread():
    """One intra-op thread for modules of small-image models: on two shared cores, two threads
    spin-wait on each other and cost several times the CPU time of one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
