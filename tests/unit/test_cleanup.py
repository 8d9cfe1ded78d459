"""The cleanup beat job runs its steps independently: one failing never skips the others."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from config.settings import Settings
from conversation.adapters.metrics import CLEANUP_STEP_FAILURES
from conversation.bootstrap import Container, Overrides, reset_container
from tasks.conversation_tasks import cleanup


class FailingSweeps:
    def sweep(self) -> None:  # what cleanup called before its steps were apart
        raise RuntimeError("the sweep broke")

    def sweep_lost_timers(self) -> tuple[int, int]:
        raise RuntimeError("the sweep broke")

    def migrate_idle(self) -> int:
        return 2


class CountingEraser:
    def __init__(self) -> None:
        self.runs = 0

    def purge_expired(self) -> int:
        self.runs += 1
        return 3


@pytest.fixture
def eraser() -> Iterator[CountingEraser]:
    eraser = CountingEraser()
    reset_container(Container(Settings(), Overrides(
        due_migrations=FailingSweeps(), eraser=eraser)))  # type: ignore[arg-type]
    yield eraser
    reset_container(None)


def failures(step: str) -> float:
    return CLEANUP_STEP_FAILURES.labels(step)._value.get()


def test_a_failing_sweep_still_runs_idle_migration_and_retention(
    eraser: CountingEraser, caplog: pytest.LogCaptureFixture
) -> None:
    before = failures("sweep")
    report = cleanup()
    assert eraser.runs == 1
    assert report == {"checked": 0, "migrated": 0, "idle": 2, "expired": 3, "failed": ["sweep"]}
    assert failures("sweep") == before + 1
    assert any("the sweep step failed" in r.getMessage() and r.exc_info for r in caplog.records)
