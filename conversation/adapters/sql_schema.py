"""The table definitions for the read side (`conversation.queries`): the one adapter path
setup.cfg's queries contract allows them (they live in `conversation.adapters.postgres.schema`)."""
from __future__ import annotations

from conversation.adapters.postgres.schema import *  # noqa: F401,F403
from conversation.adapters.postgres.schema import ALL  # noqa: F401
