"""Moved to the `conversation.adapters.postgres` package; this name stays for the read side's
modules (views, api) until their imports move with issue 16's queries/ layer."""
from __future__ import annotations

from conversation.adapters.postgres import SqlRepository, make_engine  # noqa: F401
