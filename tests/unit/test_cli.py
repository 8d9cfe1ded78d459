"""The console script's choices: worker concurrency by pool."""
from __future__ import annotations

import os

from conversation.cli import THREADS_PER_WORKER, worker_concurrency


def test_worker_concurrency_defaults_by_pool() -> None:
    assert worker_concurrency("prefork", 0) == (os.cpu_count() or 1)
    assert worker_concurrency("threads", 0) == THREADS_PER_WORKER
    assert worker_concurrency("prefork", 3) == 3
    assert worker_concurrency("threads", 8) == 8
