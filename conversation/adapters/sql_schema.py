"""Moved to `conversation.adapters.postgres.schema`; this name stays for the read side's
modules (views, export) until their imports move with issue 16's queries/ layer."""
from __future__ import annotations

from conversation.adapters.postgres.schema import *  # noqa: F401,F403
from conversation.adapters.postgres.schema import ALL  # noqa: F401
