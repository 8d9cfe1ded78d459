"""ConversationMemory: LangChain's agent hooks, and what is saved and read when (the package's
docstring says how it is used)."""
from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ToolMessage,
    convert_to_openai_messages,
)
from langgraph.config import get_config

from conversation.client import ConversationClient
from conversation.langchain_middleware.context import _up_to, context_messages
from conversation.langchain_middleware.ids import (
    _NAMESPACE,
    _iso,
    _keys,
    _session_id,
    _wait_id,
)
from conversation.langchain_middleware.service import ServiceFailure, _InProcess, _Remote

# The package's name, as before it was one: operators filter its warnings by it.
log = logging.getLogger("conversation.langchain_middleware")

# Ids already saved by this process, so an input is not sent again on the next model call
# (a re-send would be harmless: the service stores an id once).
_REMEMBERED_IDS = 4096
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


class ConversationMemory(AgentMiddleware):  # type: ignore[type-arg]
    """An agent's conversation kept by the service: its context in, every message out.

    `service`: a `Container` (in-process), a `ConversationClient` or a Celery app (remote).
    `session_id`: fixed, or (None) the run's `thread_id` (`config["configurable"]`).
    `model` / `window`: which window to ask for; by default the chat model's own name.
    """

    def __init__(
        self,
        service: Any,
        *,
        tenant_id: str,
        agent_id: str,
        session_id: str | None = None,
        model: str | None = None,
        window: str | None = None,
        max_tokens: int | None = None,
        context_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        if isinstance(service, ConversationClient):
            self.service: _InProcess | _Remote = _Remote(service, context_timeout)
        elif hasattr(service, "send_task"):
            self.service = _Remote(ConversationClient(service), context_timeout)
        else:
            self.service = _InProcess(service)
        self.tenant_id = tenant_id
        self.agent_id = agent_id
        self.session_id = session_id
        self.model = model
        self.window = window
        self.max_tokens = max_tokens
        self._lock = threading.Lock()
        self._saved: OrderedDict[str, None] = OrderedDict()
        self._down: set[str] = set()  # sessions whose run has met a failure of the service
        self._told_no_session = False
        self._last_stamp = datetime.min.replace(tzinfo=UTC)
        # created_at of each tool call's result, reserved when the call is saved: results of
        # parallel calls finish in any order, and are stored in the order of the calls.
        self._result_stamps: OrderedDict[str, datetime] = OrderedDict()
        # Remote: what was sent as tasks of their own since the session's last context read,
        # sent again (same ids and created_at) in the batch the next read waits for.
        self._unconfirmed: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    # -- LangChain's hooks --------------------------------------------------------------

    def before_agent(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        """A new run tries the service again, whatever the last one met."""
        session = self._session()
        if session is not None:
            with self._lock:
                self._down.discard(session)
        return None

    async def abefore_agent(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return self.before_agent(state, runtime)

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Any],
    ) -> Any:
        session = self._session()
        replaced = self._before_model(session, request)
        response = handler(replaced)
        self._after_model(session, request, response)
        return response

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[Any]],
    ) -> Any:
        session = self._session()
        replaced = await asyncio.to_thread(self._before_model, session, request)
        response = await handler(replaced)
        await asyncio.to_thread(self._after_model, session, request, response)
        return response

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        result = handler(request)
        self._after_tool(self._session(), request, result)
        return result

    async def awrap_tool_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        session = self._session()
        result = await handler(request)
        await asyncio.to_thread(self._after_tool, session, request, result)
        return result

    # -- the work -----------------------------------------------------------------------

    def _before_model(self, session: str | None, request: ModelRequest) -> ModelRequest:
        """Save what the model is about to answer (the user's message, the tools' results),
        then read the context for its window; on a failure, the request as it was."""
        if session is None or self._is_down(session):
            return request
        try:
            keys = _keys(request.messages)
            inputs = _since_last_answer(request.messages)
            start = len(request.messages) - len(inputs)
            payloads = [self._payload(session, m, keys[start + i]) for i, m in enumerate(inputs)]
            wait_for = None
            if self.service.remote:
                # One task for the lot: what was sent as tasks of their own (the model's last
                # answer, the results sent as their tools returned), which other workers may
                # still be storing, is sent again with the new inputs.
                to_send, sent_alone = self._take_unconfirmed(session, payloads)
                wait_for = _wait_id(to_send, sent_alone)
            else:
                to_send = self._unsaved(payloads)
            if to_send:
                self.service.save(to_send)
                self._remember(to_send)
            context = self.service.context(
                tenant_id=self.tenant_id, session_id=session, **self._window(request),
                wait_for=wait_for)
            if context.get("error"):
                raise ServiceFailure(f"the context failed: {context['error']}")
            if context.get("waited_for") == "missing":
                raise ServiceFailure("the context came without the message just saved")
            messages = context_messages(context)
            if payloads:
                messages = _up_to(messages, inputs)
        except Exception as exc:  # noqa: BLE001 -- a context failure never fails the caller
            self._failed(session, exc)
            return request
        return request.override(messages=messages)

    def _after_model(self, session: str | None, request: ModelRequest, response: Any) -> None:
        if session is None or self._is_down(session):
            return
        answered = _keys(request.messages)[-1] if request.messages else "start"
        model_name = self._model_name(request)
        payloads = []
        try:
            for i, message in enumerate(_response_messages(response)):
                payload = self._payload(session, message, f"answer/{answered}/{i}")
                name = message.response_metadata.get("model_name") or model_name
                if name:
                    payload["metadata"] = {"model": str(name)}
                payloads.append(payload)
        except Exception as exc:  # noqa: BLE001 -- a message the service cannot take
            self._failed(session, exc)
            return
        self._save(session, payloads)

    def _after_tool(self, session: str | None, request: Any, result: Any) -> None:
        # A Command's messages are saved with the next model call's inputs. An error the
        # agent's ToolNode turns into a ToolMessage (status "error") is saved like any result.
        if session is None or self._is_down(session) or not isinstance(result, ToolMessage):
            return
        try:
            state = getattr(request, "state", None)
            history = list(state.get("messages", []) if isinstance(state, dict)
                           else getattr(state, "messages", None) or [])
            payload = self._payload(session, result, _keys([*history, result])[-1])
        except Exception as exc:  # noqa: BLE001 -- a message the service cannot take
            self._failed(session, exc)
            return
        self._save(session, [payload])

    def _save(self, session: str, payloads: list[dict[str, Any]]) -> None:
        payloads = self._unsaved(payloads)
        if not payloads:
            return
        try:
            self.service.save(payloads)
        except Exception as exc:  # noqa: BLE001 -- a failed save never fails the agent
            self._failed(session, exc)
        else:
            self._remember(payloads)
            if self.service.remote:
                with self._lock:
                    self._unconfirmed.setdefault(session, []).extend(payloads)
                    self._unconfirmed.move_to_end(session)
                    while len(self._unconfirmed) > _REMEMBERED_IDS:
                        self._unconfirmed.popitem(last=False)

    def _take_unconfirmed(
        self, session: str, payloads: list[dict[str, Any]],
    ) -> tuple[list[dict[str, Any]], set[str]]:
        """The session's unconfirmed payloads, then `payloads` (each id once, in order), and
        the ids of those already sent as tasks of their own."""
        with self._lock:
            earlier = self._unconfirmed.pop(session, [])
        batch: dict[str, dict[str, Any]] = {}
        for payload in [*earlier, *payloads]:
            batch.setdefault(payload["message_id"], payload)
        return list(batch.values()), {p["message_id"] for p in earlier}

    def _payload(self, session: str, message: BaseMessage, key: str) -> dict[str, Any]:
        """save_message's kwargs for a LangChain message, in Chat Completions' shape
        (LangChain's own conversion writes the calls' arguments)."""
        role = _ROLES.get(message.type)
        if role is None:
            raise ValueError(f"a {message.type!r} message has no role in the service")
        entry = convert_to_openai_messages(message)
        content = message.content if isinstance(message.content, str) else message.text
        tool_call_id = message.tool_call_id if isinstance(message, ToolMessage) else None
        calls = len(message.tool_calls) if isinstance(message, AIMessage) else 0
        payload: dict[str, Any] = {
            "tenant_id": self.tenant_id, "session_id": session, "agent_id": self.agent_id,
            "role": role, "content": content, "message_id": self._message_id(session, key),
            "created_at": self._stamp(tool_call_id, calls),
        }
        if isinstance(message, AIMessage) and message.tool_calls:
            self._reserve(payload["created_at"], [c["id"] for c in message.tool_calls])
        for field in ("name", "tool_calls", "tool_call_id"):
            if entry.get(field):
                payload[field] = entry[field]
        return payload

    def _message_id(self, session: str, key: str) -> str:
        return uuid.uuid5(_NAMESPACE, f"{self.tenant_id}/{session}/{key}").hex

    def _stamp(self, tool_call_id: str | None = None, calls: int = 0) -> str:
        """created_at, strictly increasing: saves sent as separate tasks may be stored by
        different workers in any order, and the service orders by created_at (contract).
        A message with `calls` tool calls leaves room after it for their results; a result
        takes the time reserved for its call."""
        with self._lock:
            reserved = self._result_stamps.get(tool_call_id) if tool_call_id else None
            if reserved is not None:
                return _iso(reserved)
            now = max(datetime.now(UTC), self._last_stamp + timedelta(microseconds=1))
            self._last_stamp = now + timedelta(microseconds=calls)
        return _iso(now)

    def _reserve(self, stamp: str, call_ids: list[str | None]) -> None:
        start = datetime.fromisoformat(stamp)
        with self._lock:
            for index, call_id in enumerate(call_ids, start=1):
                if call_id:
                    self._result_stamps[call_id] = start + timedelta(microseconds=index)
            while len(self._result_stamps) > _REMEMBERED_IDS:
                self._result_stamps.popitem(last=False)

    def _unsaved(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._lock:
            return [p for p in payloads if p["message_id"] not in self._saved]

    def _remember(self, payloads: list[dict[str, Any]]) -> None:
        with self._lock:
            for payload in payloads:
                self._saved[payload["message_id"]] = None
            while len(self._saved) > _REMEMBERED_IDS:
                self._saved.popitem(last=False)

    def _window(self, request: ModelRequest) -> dict[str, Any]:
        if self.window is not None:
            chosen: dict[str, Any] = {"window": self.window}
        else:
            chosen = {"model": self._model_name(request) or None}
        if self.max_tokens is not None:
            chosen["max_tokens"] = self.max_tokens
        return chosen

    def _model_name(self, request: ModelRequest) -> str | None:
        if self.model is not None:
            return self.model
        for attribute in ("model_name", "model"):
            value = getattr(request.model, attribute, None)
            if isinstance(value, str) and value:
                return value
        return None

    def _session(self) -> str | None:
        if self.session_id is not None:
            return _session_id(self.session_id)
        try:
            thread = get_config().get("configurable", {}).get("thread_id")
        except RuntimeError:  # outside a runnable context
            thread = None
        if thread is None:
            if not self._told_no_session:  # a mistake in the code: said once, not per call
                self._told_no_session = True
                log.warning("ConversationMemory has no session: give it session_id, or run "
                            "the agent with config={'configurable': {'thread_id': ...}}")
            return None
        return _session_id(str(thread))

    def _is_down(self, session: str) -> bool:
        with self._lock:
            return session in self._down

    def _failed(self, session: str, exc: BaseException) -> None:
        """One warning for the run; the service is left alone until the run ends."""
        with self._lock:
            first = session not in self._down
            self._down.add(session)
        if first:
            log.warning(
                "conversation service failed, the agent goes on with its own messages: %s: %s",
                type(exc).__name__, exc,
                extra={"tenant_id": self.tenant_id, "session_id": session},
            )


def _since_last_answer(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The messages after the model's last answer: what this call answers."""
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], AIMessage):
            return list(messages[index + 1 :])
    return list(messages)


def _response_messages(response: Any) -> list[BaseMessage]:
    if isinstance(response, BaseMessage):
        return [response]
    if isinstance(response, ModelResponse):
        return list(response.result)
    inner = getattr(response, "model_response", None)  # ExtendedModelResponse
    return list(inner.result) if isinstance(inner, ModelResponse) else []
