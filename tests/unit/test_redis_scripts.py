"""The Lua scripts as Redis caches them (by SHA1), pinned: they moved from strings in
redis_store.py to scripts/*.lua byte for byte (issue 16), and a change to one is a change of
behaviour to make on purpose (update the hash with it), never the side effect of a move."""
from __future__ import annotations

import hashlib

from conversation.adapters.redis import lua

PINNED = {
    "append": "18301db8f9c40459b699738e41d529581e542bfa",
    "resolve_session": "05cbc581beb34b52ff97f2715a5e68185493ce64",
    "save_in_session": "c144a547ac9d5012b53b2385ec323b8625a5b9f5",
    "save_batch": "fe381d2f625181ac6949451621e31f38fe1073ee",
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
