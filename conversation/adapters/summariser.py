"""Summaries by a LangChain chat model chosen by configuration.

`SUMMARY_MODEL` names any model `langchain.chat_models.init_chat_model` knows
("openai:gpt-4o-mini", "anthropic:claude-3-5-haiku-latest", ...). The default, `extractive`,
works with no network: LexRank (sumy) over the sentences of the conversation, keeping the most
central ones, in their order, within the token limit. It is a LangChain chat model too, so the
service calls every summariser the same way.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from conversation.domain.messages import Message, storable_text

EXTRACTIVE = "extractive"
INSTRUCTIONS = (
    "You keep the running summary of a support conversation. You are given the previous "
    "summary (if any) and the messages that followed it. Write an updated summary in plain "
    "sentences: facts the user gave, what they asked, what was answered or promised, what is "
    "still open. At most {max_words} words."
)
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
_WORD = re.compile(r"\w+", re.UNICODE)


class _RegexTokenizer:
    """sumy's tokenizer interface without nltk's downloadable data: regex sentences and words."""

    def __init__(self, language: str) -> None:
        self.language = language

    def to_sentences(self, paragraph: str) -> list[str]:
        return [s.strip() for s in _SENTENCE_END.split(paragraph) if s and s.strip()]

    def to_words(self, sentence: str) -> list[str]:
        return _WORD.findall(sentence)


def lexrank_select(
    sentences: Sequence[str], language: str, fits: Callable[[list[str]], bool]
) -> list[str]:
    """The most central sentences, in their original order, as many as `fits` allows."""
    from sumy.models.dom import ObjectDocumentModel, Paragraph, Sentence
    from sumy.nlp.stemmers import Stemmer
    from sumy.summarizers.lex_rank import LexRankSummarizer
    from sumy.utils import get_stop_words

    if not sentences:
        return []
    tokenizer = _RegexTokenizer(language)
    document = ObjectDocumentModel(
        [Paragraph([Sentence(text, tokenizer) for text in sentences])]
    )
    try:
        summarizer = LexRankSummarizer(Stemmer(language))
        summarizer.stop_words = get_stop_words(language)
    except LookupError:
        summarizer = LexRankSummarizer()
    # LexRank's own scoring (sumy), computed once; then best-first while the summary fits.
    words = [summarizer._to_words_set(s) for s in document.sentences]  # noqa: SLF001
    tf = summarizer._compute_tf(words)  # noqa: SLF001
    idf = summarizer._compute_idf(words)  # noqa: SLF001
    matrix = summarizer._create_matrix(words, summarizer.threshold, tf, idf)  # noqa: SLF001
    scores = summarizer.power_method(matrix, summarizer.epsilon)
    best_first = sorted(range(len(document.sentences)), key=lambda i: (-scores[i], i))
    chosen: list[int] = []
    for index in best_first:
        candidate = sorted([*chosen, index])
        if fits([str(document.sentences[i]) for i in candidate]):
            chosen = candidate
    return [str(document.sentences[i]) for i in chosen]


class ExtractiveSummaryModel(BaseChatModel):
    """A real, offline summariser behind LangChain's chat-model interface (LexRank)."""

    language: str = "english"
    max_words: int = 400

    @property
    def _llm_type(self) -> str:
        return "extractive-lexrank"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = str(messages[-1].content) if messages else ""
        sentences = _RegexTokenizer(self.language).to_sentences(text)
        limit = int(kwargs.get("max_words") or self.max_words)
        chosen = lexrank_select(
            sentences,
            self.language,
            lambda picked: sum(len(_WORD.findall(s)) for s in picked) <= limit,
        )
        summary = " ".join(chosen)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=summary))])


def load_chat_model(spec: str, language: str = "english") -> BaseChatModel:
    if spec in ("", EXTRACTIVE):
        return ExtractiveSummaryModel(language=language)
    from langchain.chat_models import init_chat_model

    return init_chat_model(spec)


def transcript(messages: Sequence[Message]) -> str:
    """One line per sentence-bearing message, the speaker first. Tool traffic is folded: a
    call and the result answering it make one line ("assistant called lookup_order(order=4521)
    → shipped"), never a JSON dump. A result answers the latest unanswered call with its id
    before it: some models reuse ids across turns ("0", "1", ...), and a result paired with
    another turn's call would put a false fact in the summary."""
    lines: list[str] = []
    open_calls: dict[str, int] = {}  # call id -> index in `lines` of its unanswered call
    for m in messages:
        if m.role.value == "tool" and m.tool_call_id in open_calls:
            lines[open_calls.pop(m.tool_call_id)] += f" → {_short(m.content)}"
            continue
        if m.content.strip():
            lines.append(f"{m.role}: {m.content.strip()}")
        for call in m.tool_calls or ():
            function = call["function"]
            open_calls[call["id"]] = len(lines)
            lines.append(
                f"{m.role} called {function['name']}({_call_arguments(function['arguments'])})"
            )
    return "\n".join(lines)


def _call_arguments(arguments: str) -> str:
    """`order=4521, city=Zürich` for a JSON object of plain values; compact otherwise."""
    try:
        parsed = json.loads(arguments)
    except (ValueError, RecursionError):
        # RecursionError: nesting too deep to parse, saved before the schema capped it.
        return _short(arguments)
    if not isinstance(parsed, dict):
        return _short(json.dumps(parsed, ensure_ascii=False))
    return _short(", ".join(
        f"{key}={value}" if isinstance(value, str | int | float | bool) or value is None
        else f"{key}={json.dumps(value, ensure_ascii=False, separators=(',', ':'))}"
        for key, value in parsed.items()
    ))


def _short(text: str, limit: int = 160) -> str:
    """One line, at most `limit` characters: a tool's output can be a page long."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class ChatModelSummariser:
    """Folds messages into a running summary with a LangChain chat model."""

    def __init__(self, model: BaseChatModel, count_tokens: Callable[[str], int]) -> None:
        self.model = model
        self.count_tokens = count_tokens

    def summarise(
        self, previous: str | None, messages: Sequence[Message], max_tokens: int
    ) -> str:
        # About 0.75 words a token in English prose: the instruction in words, then a hard cap.
        max_words = max(20, int(max_tokens * 0.7))
        body = (f"{previous}\n" if previous else "") + transcript(messages)
        prompt = [
            SystemMessage(INSTRUCTIONS.format(max_words=max_words)),
            HumanMessage(body),
        ]
        if isinstance(self.model, ExtractiveSummaryModel):
            reply = self.model.invoke(prompt, max_words=max_words)
        else:
            reply = self.model.invoke(prompt)
        # Model output, not validated input: a NUL in it would fail the migration (PostgreSQL's
        # text holds none) and quarantine the conversation.
        return self._cap(storable_text(str(reply.content)).strip(), max_tokens)

    def _cap(self, text: str, max_tokens: int) -> str:
        """A model may overrun the requested length: cut at sentence ends until it fits."""
        while text and self.count_tokens(text) > max_tokens:
            sentences = _SENTENCE_END.split(text)
            text = " ".join(sentences[:-1]) if len(sentences) > 1 else text[: len(text) // 2]
        return text
