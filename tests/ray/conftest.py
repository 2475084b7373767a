"""A local Ray cluster for the Ray backend's tests: started once per module, always stopped.

Two CPUs, no dashboard, no HTTP proxy; replicas reserve half a CPU each so two fit. The whole folder is
skipped (with the reason) only when `ray` cannot be imported: the `[ray]` extra is part of `[test]`.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

ray = pytest.importorskip(
    "ray", reason="ray is not installed: pip install -c constraints.txt -e '.[test]' (it pulls [ray])"
)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """One in-process Ray cluster for the module; Serve and Ray are shut down whatever the tests did."""
    from ray import serve

    sigint = signal.getsignal(signal.SIGINT)  # Ray may replace it; later tests' children inherit an ignored one
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        yield
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            signal.signal(signal.SIGINT, sigint)
