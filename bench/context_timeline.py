"""Where a get_context through Celery spends its time above the echo task's round trip.

    flock /work/wt/bench.lock .venv/bin/python -m bench.context_timeline [-n 300]

The service's servers (`conversation run`), a worker of the service's app with timestamps at
each step (bench/context_probe_app.py: prefork, 2 processes, the service's Celery config, on
broker/backend databases of its own so the service's worker never takes its tasks), and a
producer alternating bench.echo and get_context (1,000 messages, 8k, as bench
`context-celery`). Prints the median of each step for both, and their difference."""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
import uuid
from typing import Any

import orjson
import redis

from bench.__main__ import build_history
from bench.service import ServiceRun
from config.settings import PROJECT_ROOT

STEPS = (
    # (label, from stamp, to stamp)
    ("publish (send_task)", "p_send", "p_sent"),
    ("broker -> worker main process", "p_sent", "received"),
    ("main process -> pool process (task start)", "received", "prerun"),
    ("kwargs validation", "validate_start", "validate_end"),
    ("service work (ContextBuilder)", "service_start", "service_end"),
    ("task start -> result store begins", "prerun", "mark_done_start"),
    ("  backend GET (Celery's check before SET)", "backend_get_start", "backend_get_end"),
    ("  result encode (JSON)", "encode_start", "encode_end"),
    ("  backend SETEX + PUBLISH", "backend_set_start", "backend_set_end"),
    ("result store (mark_as_done), whole", "mark_done_start", "mark_done_end"),
    ("saferepr of the result", "saferepr_start", "saferepr_end"),
    ("success signal -> postrun (success log, after_return)", "success_signal", "postrun"),
    ("result stored -> producer has it", "backend_set_end", "p_got"),
    ("  producer decode (in that)", "decode_start", "decode_end"),
    ("round trip, whole", "p_send", "p_got"),
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.context_timeline")
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--wait", action="store_true",
                        help="save then get_context(wait_for_message_id), beside a plain "
                             "get_context (as bench tools' wait row)")
    parser.add_argument("--fast-json", action="store_true",
                        help="the producer decodes with orjson (tasks.serialization), as the "
                             "service's own processes do; default: kombu's json, as a producer "
                             "that imports only celery")
    ns = parser.parse_args()
    if ns.fast_json:
        from tasks.serialization import use_fast_json

        use_fast_json()
    from conversation.bootstrap import Container
    from tests.workers import producer, running_worker

    run = ServiceRun()
    try:
        base = run.service.require("broker_url").rsplit("/", 1)[0]
        settings = dataclasses.replace(run.service, broker_url=f"{base}/5",
                                       result_backend=f"{base}/6")
        container = Container(settings)
        conversation_id = build_history(container, "bench",
                                        f"probe-{uuid.uuid4().hex[:6]}", 1_000)
        backend_db = redis.Redis.from_url(settings.result_backend or "")
        backend_db.delete("bench:probe:stamps")
        with running_worker(settings, PROJECT_ROOT / "var" / "bench-probe.log", concurrency=2,
                            name="probe", app_module="bench.context_probe_app",
                            queues=("conversation.context", "conversation.save")):
            stamps = (drive_wait(settings, producer, container, ns.n) if ns.wait
                      else drive(settings, producer, conversation_id, ns.n))
            app = producer(settings)
            flushes = [app.send_task("bench.probe_flush", queue="conversation.context")
                       for _ in range(20)]
            for result in flushes:
                result.get(timeout=30)
            time.sleep(2.5)  # the main process's flusher (every second)
            app.close()
        for raw in backend_db.lrange("bench:probe:stamps", 0, -1):
            entry = orjson.loads(raw)
            stamps.setdefault(entry.pop("id"), {}).update(
                {k: v for k, v in entry.items() if k != "pid"})
        backend_db.delete("bench:probe:stamps")
        backend_db.close()
        container.close()
    finally:
        run.stop()
    if ns.wait:
        show_wait(stamps)
    else:
        show(stamps)


def drive(settings: Any, producer: Any, conversation_id: str, n: int) -> dict[str, dict]:
    app = producer(settings)
    backend = app.backend
    decode = backend.decode_result
    current: dict[str, float] = {}

    def timed_decode(payload: Any) -> Any:
        current["decode_start"] = time.time()
        try:
            return decode(payload)
        finally:
            current["decode_end"] = time.time()

    backend.decode_result = timed_decode
    backend.result_consumer._decode_result = timed_decode
    kwargs = {"tenant_id": "bench", "conversation_id": conversation_id, "window": "8k"}
    stamps: dict[str, dict] = {}

    def one(name: str, task_kwargs: dict) -> None:
        current.clear()
        current["p_send"] = time.time()
        result = app.send_task(name, kwargs=task_kwargs, queue="conversation.context")
        current["p_sent"] = time.time()
        result.get(timeout=30)
        current["p_got"] = time.time()
        result.forget()
        stamps[result.id] = {"kind": name, **current}

    for i in range(n + 20):
        one("bench.echo", {})
        one("conversation.get_context", kwargs)
        if i < 20:  # warm-up
            for key in list(stamps)[-2:]:
                del stamps[key]
    app.close()
    return stamps


def drive_wait(settings: Any, producer: Any, container: Any, n: int) -> dict[str, dict]:
    from bench.tools import tool_history

    session = f"wait-{uuid.uuid4().hex[:6]}"
    container.saver.save_many(tool_history("bench", session, 1_000))
    app = producer(settings)
    kwargs = {"tenant_id": "bench", "session_id": session, "window": "8k"}
    stamps: dict[str, dict] = {}

    def plain() -> None:
        started = time.time()
        result = app.send_task("conversation.get_context", kwargs=kwargs,
                               queue="conversation.context")
        result.get(timeout=30)
        stamps[result.id] = {"kind": "plain", "p_send": started, "p_got": time.time()}
        result.forget()

    def save_then_context() -> None:
        message_id = uuid.uuid4().hex
        started = time.time()
        save = app.send_task("conversation.save_message", queue="conversation.save", kwargs={
            "tenant_id": "bench", "session_id": session, "agent_id": "bot", "role": "user",
            "content": "and one more question", "message_id": message_id})
        result = app.send_task("conversation.get_context", queue="conversation.context",
                               kwargs={**kwargs, "wait_for_message_id": message_id})
        context = result.get(timeout=30)
        assert context["waited_for"] == "found", context
        stamps[result.id] = {"kind": "waited", "p_send": started, "p_got": time.time(),
                             "save_id": save.id}
        result.forget()

    for i in range(n + 20):
        plain()
        save_then_context()
        if i < 20:
            for key in list(stamps)[-2:]:
                del stamps[key]
    app.close()
    return stamps


def show_wait(stamps: dict[str, dict]) -> None:
    """Each step's median time from the producer's first publish (ms)."""
    for kind in ("plain", "waited"):
        rows: dict[str, list[float]] = {}
        for entry in stamps.values():
            if entry.get("kind") != kind:
                continue
            merged = dict(entry)
            if "save_id" in entry:
                merged.update({f"save.{k}": v for k, v in stamps.get(entry["save_id"], {}).items()
                               if isinstance(v, float)})
            for key, value in merged.items():
                if isinstance(value, float):
                    rows.setdefault(key, []).append((value - entry["p_send"]) * 1e3)
        print(f"--- {kind}: median ms after the first publish (count)")
        for key, values in sorted(rows.items(), key=lambda kv: statistics.median(kv[1])):
            print(f"  {key:<28}{statistics.median(values):8.3f}  ({len(values)})")


def show(stamps: dict[str, dict]) -> None:
    kinds = ("bench.echo", "conversation.get_context")
    print(f"{'step (median, microseconds)':<58}{'echo':>9}{'context':>10}{'extra':>9}")
    summary = {}
    for label, start, end in STEPS:
        medians = []
        for kind in kinds:
            spans = [(s[end] - s[start]) * 1e6 for s in stamps.values()
                     if s.get("kind") == kind and start in s and end in s]
            medians.append(statistics.median(spans) if spans else None)
        echo, context = medians
        summary[label] = medians

        def cell(value: float | None) -> str:
            return f"{value:9.0f}" if value is not None else f"{'-':>9}"

        extra = cell(context - echo) if echo is not None and context is not None else cell(None)
        print(f"{label:<58}{cell(echo)}{cell(context)} {extra}")
    counts = {kind: sum(1 for s in stamps.values() if s.get("kind") == kind
                        and "prerun" in s) for kind in kinds}
    print(f"(tasks with worker stamps: {counts})")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
