from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own prediction cache, so no test is helped by another's forward passes."""
    monkeypatch.setenv("CXRBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
