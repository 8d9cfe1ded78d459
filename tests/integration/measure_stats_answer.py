"""Not a test: one uncached stats answer for a 44 agents x 90 days x 3 models tenant, the
first implementation (test_stats_read_equivalence.reference_stats) against TenantStatistics,
interleaved, median of N, on an embedded PostgreSQL of its own. Prints milliseconds.

    .venv/bin/python -m tests.integration.measure_stats_answer [N] [--profile]
"""
from __future__ import annotations

import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine

from conversation.embedded import EmbeddedPostgres
from conversation.queries.stats import TenantStatistics
from tests.conftest import migrated_database
from tests.integration.test_stats_read_equivalence import reference_stats, seed_tenant


def interleaved(n: int, old: Callable[[], Any], new: Callable[[], Any]) -> tuple[float, float]:
    assert old() == new()  # and warm both
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(n):
        for call, into in ((old, times[0]), (new, times[1])):
            began = time.perf_counter()
            call()
            into.append((time.perf_counter() - began) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    n = int(next((a for a in sys.argv[1:] if a.isdigit()), "50"))
    with tempfile.TemporaryDirectory() as directory:
        server = EmbeddedPostgres(Path(directory) / "postgres", database="postgres").start()
        try:
            with migrated_database(f"postgresql://postgres@127.0.0.1:{server.port}/postgres",
                                   "measure") as url:
                engine = create_engine(url)
                seed_tenant(engine, "big", agents=44, models=3, sketch_size=400)
                start, end = datetime(2026, 8, 26, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC)
                stats = TenantStatistics(engine)
                for group_by, agent_id in (("day", None), ("week", None), ("month", None),
                                           ("day", "agent-3")):
                    def old() -> bytes:
                        return orjson.dumps(reference_stats(
                            engine, "big", start=start, end=end, group_by=group_by,
                            agent_id=agent_id))

                    def new() -> bytes:
                        return stats.stats_json("big", start=start, end=end, group_by=group_by,
                                                agent_id=agent_id)

                    before, after = interleaved(n, old, new)
                    print(f"group_by={group_by} agent={agent_id}: first {before:.1f} ms, "
                          f"now {after:.1f} ms, {before / after:.2f}x (median of {n})")
                    if "--profile" in sys.argv and agent_id is None and group_by == "day":
                        profile = cProfile.Profile()
                        profile.runcall(lambda: [new() for _ in range(10)])
                        pstats.Stats(profile).sort_stats("cumtime").print_stats(20)
                engine.dispose()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
