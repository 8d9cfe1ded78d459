"""The CSV export is opened in spreadsheets: a cell a user wrote that starts like a formula
must arrive as text, never run (CSV injection, OWASP). JSONL stays the exact export."""
from __future__ import annotations

import csv
import io

import orjson

from conversation.queries.export import COLUMNS, as_csv, as_jsonl


def record(content: str, **extra: object) -> dict:
    base = dict.fromkeys(COLUMNS)
    base.update(conversation_id="c1", role="user", content=content, metadata={}, tool_calls=None)
    base.update(extra)
    return base


def csv_rows(*records: dict) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(b"".join(as_csv(iter(records))).decode(), newline="")))


def test_cells_that_would_run_as_formulas_are_quoted_as_text() -> None:
    hostile = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]
    rows = csv_rows(*(record(text) for text in hostile), record("plain", name="=cmd|'/c calc'!A1"))
    assert [row["content"] for row in rows[:-1]] == ["'" + text for text in hostile]
    assert rows[-1]["content"] == "plain"
    assert rows[-1]["name"] == "'=cmd|'/c calc'!A1"


def test_ordinary_cells_and_numbers_are_left_alone() -> None:
    rows = csv_rows(record("Where is my order?", tokens=12, session_id="s-1", agent_id="bot"))
    assert rows[0]["content"] == "Where is my order?"
    assert rows[0]["tokens"] == "12"
    assert rows[0]["session_id"] == "s-1"


def test_jsonl_keeps_the_exact_text() -> None:
    line = b"".join(as_jsonl(iter([record("=1+1")])))
    assert orjson.loads(line)["content"] == "=1+1"


def test_line_breaks_inside_a_message_stay_inside_its_cell() -> None:
    rows = csv_rows(record("one\rtwo"), record("three\nfour\r\nfive"), record("six"))
    assert [row["content"] for row in rows] == ["one\rtwo", "three\nfour\r\nfive", "six"]
