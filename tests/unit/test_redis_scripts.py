"""The Lua scripts as Redis caches them (by SHA1), pinned: they moved from strings in
redis_store.py to scripts/*.lua byte for byte (issue 16), and a change to one is a change of
behaviour to make on purpose (update the hash with it), never the side effect of a move."""
from __future__ import annotations

import hashlib
import re
from enum import IntEnum
from importlib.resources import files

from conversation.adapters.redis import lua
from conversation.adapters.redis.statuses import (
    Applied,
    CloseStatus,
    EraseStatus,
    OpenStatus,
    ResolveStatus,
    SaveStatus,
)

PINNED = {
    "append": "18301db8f9c40459b699738e41d529581e542bfa",
    "resolve_session": "2f87263762d84fb7010078e5de43de1c80a6189b",
    "save_in_session": "f3f08c7ea6c11c5afc884c180905874b072a4ab5",
    "save_batch": "8e74e341660906bc868790457ff7d54ab55ad931",
    "close_session": "b4226703ca61eddd539fbd596cb353c2287ca2bb",
    "close_into_timer": "d582d584db8aa5b23f7c470f684675b161a15920",
    "arm_close_timer": "bafb08704d64fd02a17ea10518d5c366e6704be2",
    "take_close_timer": "aa1b45cd8441d078e5a8bab3e91d6b19bbb8b9ce",
    "open_session": "997ed0acb40fb34ab6760c0eba7c7084c5cb0ae0",
    "finish_migration": "235842de8e301ccdb4c75314572cff62112837a3",
    "save_summary": "a394a36c3657965646240ae044cda09ea6b31dda",
    "erase_conversation": "e5f5c862087c8dfcd9bad0b7584af763a880657a",
    "forget_session": "3c45e4e4fb0047dd479615101d29acb434f8c56d",
    "release_lock": "c0fe86dca9a7825a3e95860568351409cafd1294",
    "release_session": "ee72f00fbefc0374c7b4aa6ce1067068c491420a",
}


def test_every_script_is_byte_identical_to_the_pinned_one() -> None:
    assert {name: hashlib.sha1(text.encode()).hexdigest() for name, text in lua.ALL.items()} \
        == PINNED


def test_the_scripts_are_read_from_package_data() -> None:
    """Shipped in the wheel (pyproject's package-data), read without a connection."""
    from importlib.resources import files

    scripts = files("conversation.adapters.redis") / "scripts"
    assert (scripts / "save_batch.lua").read_text().endswith(lua.SAVE_BATCH[-200:])


# Each script file (a function file or a script) that returns statuses of its own, with the
# family that names them.
FAMILIES: dict[str, type[IntEnum]] = {
    "append_fn": SaveStatus,
    "save_group_fn": SaveStatus,
    "resolve_fn": ResolveStatus,
    "close_session": CloseStatus,
    "close_into_timer": CloseStatus,
    "open_session": OpenStatus,
    "erase_conversation": EraseStatus,
    "finish_migration": Applied,
    "save_summary": Applied,
    "release_session": Applied,
    "arm_close_timer": Applied,
}
# Scripts that return what a function above returns, or a count (0: nothing deleted), or a
# list: no status.
NO_STATUS_OF_THEIR_OWN = {"append", "save_in_session", "save_batch", "resolve_session",
                          "forget_session", "release_lock", "take_close_timer"}
# A literal returned, or first in a returned table; and the two values built before being
# returned (save_group's per-message "confirm first", resolve's "just set").
_STATUS_LITERALS = (
    re.compile(r"\breturn \{?(-?\d+)\b"),
    re.compile(r"\bunconfirmed\[#unconfirmed \+ 1\] = (-?\d+)\b"),
    re.compile(r"\bcreated = (-?\d+)\b"),
)


def _returned_statuses(name: str) -> set[int]:
    text = (files("conversation.adapters.redis") / "scripts" / f"{name}.lua").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return {int(n) for pattern in _STATUS_LITERALS for n in pattern.findall(code)}


def test_every_script_file_has_a_status_family_or_returns_none_of_its_own() -> None:
    scripts = files("conversation.adapters.redis") / "scripts"
    names = {entry.name.removesuffix(".lua") for entry in scripts.iterdir()
             if entry.name.endswith(".lua")}
    assert names == set(FAMILIES) | NO_STATUS_OF_THEIR_OWN
    for name in NO_STATUS_OF_THEIR_OWN:
        assert _returned_statuses(name) <= {0}, name


def test_each_status_a_script_returns_has_a_name_and_each_name_is_returned() -> None:
    returned: dict[type[IntEnum], set[int]] = {}
    for name, family in FAMILIES.items():
        statuses = _returned_statuses(name)
        assert statuses, f"{name}.lua: no status found (did its returns change shape?)"
        unnamed = statuses - {member.value for member in family}
        assert not unnamed, f"{name}.lua returns {unnamed}, unnamed in {family.__name__}"
        returned.setdefault(family, set()).update(statuses)
    for family, statuses in returned.items():
        assert {member.value for member in family} == statuses, family.__name__


def test_the_minus_two_of_a_session_is_recoded_before_it_meets_a_message_status() -> None:
    """-2 is another tenant's session from `resolve`, another tenant's conversation from
    `append`: a save's reply carries the first as -4, so the two never share a number there."""
    assert ResolveStatus.FOREIGN_SESSION == SaveStatus.FOREIGN_CONVERSATION == -2
    assert SaveStatus.FOREIGN_SESSION == -4
    assert "if resolved[1] == -2 then return {-4, ''} end" in lua.SAVE_GROUP_FN
