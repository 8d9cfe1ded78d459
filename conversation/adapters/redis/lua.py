"""The Lua scripts, read once from scripts/*.lua when this package is imported (no connection:
each store registers them on its client). Helper functions shared by several scripts live in
files of their own (`*_fn.lua`) and are prefixed to the scripts that call them, so each rule
is written once; the resulting texts are what Redis caches by SHA1 (tests/unit/adapters pins
them, so a move or a reformat cannot change them silently)."""
from __future__ import annotations

from importlib.resources import files

_SCRIPTS = files("conversation.adapters.redis") / "scripts"


def _read(name: str) -> str:
    # Bytes, decoded: the text exactly as stored (no newline translation).
    return (_SCRIPTS / f"{name}.lua").read_bytes().decode("utf-8")


APPEND_FN = _read("append_fn")
RESOLVE_FN = _read("resolve_fn")
SAVE_GROUP_FN = _read("save_group_fn")

APPEND = APPEND_FN + _read("append")
RESOLVE_SESSION = RESOLVE_FN + _read("resolve_session")
# Standalone Redis only: the session and conversation steps in one script, for one or many
# messages of one session. Redis Cluster cannot run it (the conversation's keys are known only
# inside the script, in another slot), so there the same functions run as two scripts.
SAVE_IN_SESSION = RESOLVE_FN + APPEND_FN + SAVE_GROUP_FN + _read("save_in_session")
# A whole batch, however many sessions it spans, in one script call (standalone Redis): a
# gateway's batch of 500 messages from 500 sessions paid 500 calls' packing, dispatch and
# reply parsing before. Each session's group is what SAVE_IN_SESSION does for it alone.
SAVE_BATCH = RESOLVE_FN + APPEND_FN + SAVE_GROUP_FN + _read("save_batch")
CLOSE_SESSION = _read("close_session")
# Standalone Redis only: a close, its entry for the lost-timer sweep and its second's bucket
# and timer marker in one script (keys of four slots: a cluster runs the steps apart).
CLOSE_INTO_TIMER = _read("close_into_timer")
ARM_CLOSE_TIMER = _read("arm_close_timer")
TAKE_CLOSE_TIMER = _read("take_close_timer")
OPEN_SESSION = _read("open_session")
FINISH_MIGRATION = _read("finish_migration")
SAVE_SUMMARY = _read("save_summary")
ERASE_CONVERSATION = _read("erase_conversation")
FORGET_SESSION = _read("forget_session")
RELEASE_LOCK = _read("release_lock")
RELEASE_SESSION = _read("release_session")

# Every script by name (the pinning test reads them all).
ALL = {
    "append": APPEND,
    "resolve_session": RESOLVE_SESSION,
    "save_in_session": SAVE_IN_SESSION,
    "save_batch": SAVE_BATCH,
    "close_session": CLOSE_SESSION,
    "close_into_timer": CLOSE_INTO_TIMER,
    "arm_close_timer": ARM_CLOSE_TIMER,
    "take_close_timer": TAKE_CLOSE_TIMER,
    "open_session": OPEN_SESSION,
    "finish_migration": FINISH_MIGRATION,
    "save_summary": SAVE_SUMMARY,
    "erase_conversation": ERASE_CONVERSATION,
    "forget_session": FORGET_SESSION,
    "release_lock": RELEASE_LOCK,
    "release_session": RELEASE_SESSION,
}
