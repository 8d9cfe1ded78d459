"""The integer statuses the Lua scripts (scripts/*.lua) return, named once, per script family.

Lua can only hand back numbers; the same number means different things in different scripts
(-2 is another tenant's *conversation* from `append`, another tenant's *session* from
`resolve`, which `save_group` therefore re-codes as -4). Every Python reader compares against
these names, never a bare number, and tests/unit/test_redis_scripts.py checks that each number
a script returns has its name here. The numbers are the scripts' (their SHA1s are pinned):
change one only together with its script.
"""
from __future__ import annotations

from enum import IntEnum


class SaveStatus(IntEnum):
    """One message's status from a save: append_fn.lua's `append` (append.lua), and each
    message's from save_group_fn.lua (save_in_session.lua, save_batch.lua)."""

    SAVED = 1
    DUPLICATE = 0  # the message id was saved before
    MOVED = -1  # the conversation was migrated to PostgreSQL
    FOREIGN_CONVERSATION = -2  # the conversation is another tenant's
    NOT_ACTIVE = -3  # not in Redis, and creating it was not asked for
    # save_group_fn.lua only, as the first element of a session's reply (then nothing was
    # written for any of its messages).
    FOREIGN_SESSION = -4
    # save_group_fn.lua only, for every message: the session has no conversation yet, and a
    # new one must be confirmed (the caller looks in PostgreSQL first).
    UNCONFIRMED = -5


class ResolveStatus(IntEnum):
    """resolve_fn.lua's `resolve` (resolve_session.lua): the first element of its reply."""

    SET = 1  # the candidate became the session's conversation
    FOUND = 0  # the session's conversation as it was (none, without a candidate)
    FOREIGN_SESSION = -2  # the session is another tenant's
    UNCONFIRMED = -5  # a new session or conversation: nothing written until confirmed


class CloseStatus(IntEnum):
    """close_session.lua and close_into_timer.lua: the first element of their reply."""

    CLOSED = 1
    NO_CONVERSATION = 0  # an unknown session, or one without a conversation: nothing to close
    FOREIGN_SESSION = -2


class OpenStatus(IntEnum):
    """open_session.lua (a reconnect)."""

    REOPENED = 1  # it was closed: the pending migration is cancelled (generation + 1)
    UNCHANGED = 0  # unknown, or not closed
    FOREIGN_SESSION = -2


class EraseStatus(IntEnum):
    """erase_conversation.lua: -1, or else the number of keys it deleted (0 or more)."""

    OWNER_CHANGED = -1  # the owner is not the one the keys were named for: read again


class Applied(IntEnum):
    """The scripts that write only if a condition still holds: finish_migration.lua (the
    message count is unchanged), save_summary.lua (the conversation is still active),
    release_session.lua (the session is still at that conversation and generation),
    arm_close_timer.lua (this second's timer was not armed yet)."""

    APPLIED = 1
    SKIPPED = 0
