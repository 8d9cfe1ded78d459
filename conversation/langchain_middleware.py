"""The service as the memory of a LangChain agent (`langchain.agents.create_agent`).

    from langchain.agents import create_agent
    from conversation.langchain_middleware import ConversationMemory

    agent = create_agent(model, tools=[lookup_order], system_prompt="You are ACME's support.",
                         middleware=[ConversationMemory(Container(), tenant_id="acme",
                                                        agent_id="support-bot")])
    agent.invoke({"messages": [HumanMessage("Where is order 4521?")]},
                 {"configurable": {"thread_id": "session-1"}})

Before each model call the conversation part of the model's input is replaced by the service's
context for the model's window (`get_context`: the token counts cached at save, the summary
built by a worker); the agent's system prompt and tools stay the agent's, and so does its own
state. What the model answers, and what each tool returns, is saved through the service's save
path, with ids derived from the run, so a retried step is stored once.

Two modes: in-process, with a `Container` (the saver and context builder called directly), or
remote, with a `ConversationClient` (or a bare Celery app): `send_task` by name, and
`get_context(wait_for_message_id=...)` so the context holds what was just sent. The remote
mode needs only `celery` and langchain: nothing of the project is imported for it.

The context is given to the model as the chat APIs accept it (`_tool_rule`: results without
their call, calls without their result dropped), and it must end with the messages the model
is about to answer; otherwise the agent goes on with its own messages.

A failure of the service never fails the agent: it goes on with its own messages, and one
warning is logged for the run (the service is then left alone until the run ends).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolMessage,
    convert_to_openai_messages,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call
from langgraph.config import get_config

from conversation.client import ConversationClient

log = logging.getLogger(__name__)

# Derived message ids live in their own namespace: the same run step gives the same id.
_NAMESPACE = uuid.UUID("6f1d6c8e-3c1b-5d0e-9a57-1f0c2b7e4a19")
# Ids already saved by this process, so an input is not sent again on the next model call
# (a re-send would be harmless: the service stores an id once).
_REMEMBERED_IDS = 4096
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
# The service's identifier rule (CONTRACT; conversation.domain.messages.IDENTIFIER_PATTERN,
# not imported: the remote mode imports nothing of the service but its client).
_IDENTIFIER = re.compile(r"\A[A-Za-z0-9_.\-]{1,128}\Z")


class ServiceFailure(Exception):
    """The service did not answer as it should (unreachable, a refusal, an empty context)."""


class _InProcess:
    """The service's own objects, called directly (a `Container`)."""

    remote = False

    def __init__(self, container: Any) -> None:
        from conversation.domain.messages import NewMessage, Role
        from conversation.langchain import _save_schema

        self.container = container
        self._new_message = NewMessage
        self._role = Role
        self._schema = _save_schema

    def save(self, payloads: list[dict[str, Any]]) -> None:
        from marshmallow import ValidationError

        schema = self._schema(self.container.settings.max_message_chars)
        commands = []
        for payload in payloads:
            try:
                item = schema.load(payload)  # the save task's own validation
            except ValidationError as exc:
                raise ServiceFailure(f"the service refuses a message: {exc.messages}") from None
            commands.append(self._new_message(
                tenant_id=item["tenant_id"], session_id=item["session_id"],
                agent_id=item["agent_id"], role=self._role(item["role"]),
                content=item["content"], message_id=item["message_id"],
                conversation_id=item["conversation_id"], created_at=item["created_at"],
                metadata=item["metadata"] or {}, name=item["name"],
                tool_calls=item["tool_calls"], tool_call_id=item["tool_call_id"]))
        for outcome in self.container.saver.save_many(commands):
            if isinstance(outcome, Exception):
                raise ServiceFailure(f"the service refused a message: {outcome}")

    def context(self, *, wait_for: str | None, **kwargs: Any) -> dict[str, Any]:
        # A save here is done when it returns: nothing to wait for.
        return dict(self.container.context_builder.get_context(**kwargs))


class _Remote:
    """The service through Celery, by task name (CONTRACT section 1)."""

    remote = True

    def __init__(self, client: ConversationClient, timeout: float) -> None:
        self.client = client
        self.timeout = timeout

    def save(self, payloads: list[dict[str, Any]]) -> None:
        # One task: a batch is stored in order, in one round trip, so waiting for its last
        # message is waiting for all of them.
        if len(payloads) == 1:
            self.client.save_message(**payloads[0])
        else:
            self.client.save_messages(payloads)

    def context(self, *, wait_for: str | None, **kwargs: Any) -> dict[str, Any]:
        return self.client.get_context(**kwargs, wait_for_message_id=wait_for,
                                       timeout=self.timeout)


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
            keys = self._keys(request.messages)
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
        answered = self._keys(request.messages)[-1] if request.messages else "start"
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
            payload = self._payload(session, result, self._keys([*history, result])[-1])
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

    def _keys(self, messages: Sequence[BaseMessage]) -> list[str]:
        """What names each message across a replay. A model's answer: the message it answered
        (`answer/{key}/{i}`, the i-th message of the response), so a retried step gets the same
        id. A tool result: the answer that made the call, and the call's id (models reuse call
        ids such as "call_0" from turn to turn). Anything else: its LangChain id (the agent's
        state gives every message one)."""
        keys: list[str] = []
        answered, position = "start", 0
        calls: dict[str, str] = {}  # call id -> the key of the answer that made it
        for message in messages:
            if isinstance(message, AIMessage):
                key = f"answer/{answered}/{position}"
                position += 1
                for call in [*message.tool_calls, *message.invalid_tool_calls]:
                    if call.get("id"):
                        calls[str(call["id"])] = key
            else:
                if isinstance(message, ToolMessage) and message.tool_call_id:
                    maker = calls.get(message.tool_call_id)
                    # The answer's key as a digest: keys chained through a long tool loop
                    # stay short.
                    key = (f"tool/{uuid.uuid5(_NAMESPACE, maker).hex}/{message.tool_call_id}"
                           if maker else f"tool/{message.tool_call_id}")
                else:
                    key = f"message/{message.id or uuid.uuid4().hex}"
                answered, position = key, 0
            keys.append(key)
        return keys

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


def context_messages(context: dict[str, Any]) -> list[AnyMessage]:
    """The context object as the model's messages: the summary (if any) as a system message,
    then the kept messages (calls as `AIMessage.tool_calls`, results as `ToolMessage`s),
    repaired to the tool rule of the chat APIs (`_tool_rule`)."""
    messages: list[AnyMessage] = []
    if context.get("summary"):
        messages.append(SystemMessage(
            f"Summary of the earlier conversation:\n{context['summary']}"))
    return messages + _tool_rule([_message(entry) for entry in context["messages"]])


def _message(entry: dict[str, Any]) -> AnyMessage:
    """A context entry (Chat Completions' shape) as a LangChain message; calls whose arguments
    are not a JSON object become `InvalidToolCall`s, as in `conversation.langchain`."""
    name = entry.get("name") or None
    role, content = entry["role"], entry.get("content") or ""
    if role == "user":
        return HumanMessage(content, name=name)
    if role == "system":
        return SystemMessage(content, name=name)
    if role == "tool":
        return ToolMessage(content, tool_call_id=entry.get("tool_call_id") or "", name=name)
    calls, invalid = _tool_calls(entry.get("tool_calls") or [])
    return AIMessage(content, name=name, tool_calls=calls, invalid_tool_calls=invalid)


def _tool_calls(stored: list[dict[str, Any]]) -> tuple[list[ToolCall], list[InvalidToolCall]]:
    # conversation.langchain._langchain_tool_calls, which the remote mode cannot import.
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for call in stored:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else arguments
        except (ValueError, RecursionError):  # not JSON, or nested past any sane depth
            args = None
        if isinstance(args, dict):
            calls.append(tool_call(name=function.get("name") or "", args=args, id=call.get("id")))
        else:
            invalid.append(invalid_tool_call(name=function.get("name"), id=call.get("id"),
                                             args=None if arguments is None else str(arguments),
                                             error=None))
    return calls, invalid


def _tool_rule(messages: list[AnyMessage]) -> list[AnyMessage]:
    """The messages as OpenAI (and the other chat APIs) accept them: every tool result answers
    a call of the assistant message before it (only results between them), once; every call
    is answered before the next other message. The service keeps what it was given (a tool
    that raised leaves its call unanswered, another producer may store an orphan result), and
    one such turn would otherwise make every later model call fail. So: a result that answers
    no pending call is dropped; a call left unanswered is dropped from its assistant message,
    which keeps its text (what the model said is still part of the conversation), and an
    assistant message left with neither text nor calls is dropped (an empty message says
    nothing and some APIs refuse it)."""
    kept: list[AnyMessage] = []
    pending: set[str] = set()
    owner = -1  # index in `kept` of the assistant message whose calls are pending
    answered: set[str] = set()

    def close() -> None:
        nonlocal owner
        if owner >= 0:
            message = kept[owner]
            assert isinstance(message, AIMessage)
            if pending:
                calls = [c for c in message.tool_calls if c.get("id") in answered]
                invalid = [c for c in message.invalid_tool_calls if c.get("id") in answered]
                message = message.model_copy(update={"tool_calls": calls,
                                                     "invalid_tool_calls": invalid})
                kept[owner] = message
                if not (calls or invalid or message.text.strip()):
                    del kept[owner]
        owner = -1
        pending.clear()
        answered.clear()

    for message in messages:
        if isinstance(message, ToolMessage):
            if message.tool_call_id in pending:
                pending.discard(message.tool_call_id)
                answered.add(message.tool_call_id)
                kept.append(message)
            continue  # an orphan, a second result, or a result after another message
        close()
        kept.append(message)
        if isinstance(message, AIMessage):
            ids = [c.get("id") for c in [*message.tool_calls, *message.invalid_tool_calls]]
            if ids:
                owner = len(kept) - 1
                pending.update(str(i) for i in ids if i)
    close()
    return kept


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _session_id(thread: str) -> str:
    """A thread id the service takes as a session id as it is; any other (an e-mail address,
    a path) mapped to the same valid id every time (uuid5, as hex)."""
    if _IDENTIFIER.match(thread):
        return thread
    return uuid.uuid5(_NAMESPACE, f"thread/{thread}").hex


def _wait_id(to_send: list[dict[str, Any]], sent_alone: set[str]) -> str | None:
    """The id a remote context read waits for: the batch's last message not already sent as a
    task of its own (the batch is stored in one transaction, so its last message found means
    all found); if every one was sent alone, the first (the oldest, which the others follow).
    Either way the context is checked afterwards (`_up_to`, `_tool_rule`)."""
    fresh = [p["message_id"] for p in to_send if p["message_id"] not in sent_alone]
    if fresh:
        return fresh[-1]
    return to_send[0]["message_id"] if to_send else None


def _same(kept: BaseMessage, given: BaseMessage) -> bool:
    return (kept.type == given.type and kept.text == given.text
            and getattr(kept, "tool_call_id", None) == getattr(given, "tool_call_id", None))


def _has_blocks(message: BaseMessage) -> bool:
    """Whether the message holds more than text (LangChain's content blocks)."""
    return isinstance(message.content, list) and any(
        not isinstance(block, str) and block.get("type") != "text" for block in message.content)


def _up_to(messages: list[AnyMessage], inputs: list[BaseMessage]) -> list[AnyMessage]:
    """The context up to the messages this call answers, which must all be in it, last: a
    retried step finds the answer of the attempt that failed already stored after them, and
    must not be shown it; a context without one of them (not yet stored, or dropped by
    `_tool_rule` because what it answers is not stored) is no use to the model. The agent's
    own message object is given for an input with blocks beyond text (an image, a file): the
    service stores its text, and the model must see it whole."""
    for end in range(len(messages), len(inputs) - 1, -1):
        tail = messages[end - len(inputs): end]
        if all(_same(kept, given) for kept, given in zip(tail, inputs, strict=True)):
            return [*messages[: end - len(inputs)],
                    *(given if _has_blocks(given) else kept  # type: ignore[misc,list-item]
                      for kept, given in zip(tail, inputs, strict=True))]
    raise ServiceFailure("the context lacks the messages just saved (larger than the window?)")


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
