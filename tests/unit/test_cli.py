"""The console script's choices: worker pools by workload."""
from __future__ import annotations

from conversation.cli import pool_for


def test_worker_pools_follow_the_workload() -> None:
    assert pool_for("conversation.context", "auto", 0) == ("threads", 16)
    assert pool_for("conversation.save", "auto", 0)[0] == "prefork"
    assert pool_for("conversation.context,conversation.save", "auto", 3) == ("prefork", 3)
    assert pool_for("conversation.save", "threads", 8) == ("threads", 8)
