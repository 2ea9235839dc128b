"""Shared fixtures: one local Ray cluster per test session, for the tests marked `ray`."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """A 2-CPU local Ray cluster with a 512 MB object store, started once per session."""
    ray = pytest.importorskip("ray", reason="needs the thresher[ray] extra")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, object_store_memory=512 << 20, include_dashboard=False,
                 log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
