"""OpenAI-compatible specifics of the emulator state: fault kinds, recorded-request fields.

The thread-safe machinery (faults queue, latency, keys, scripted replies,
recorded requests and their windows) is ``emulators._common.state``, shared
with the Gemini emulator; this module binds it to this API's ``Fault`` and
``RecordedRequest`` and adds the model list ``GET /v1/models`` falls back to.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._common.faults import DEFAULT_RETRY_AFTER_SECONDS as DEFAULT_RETRY_AFTER_SECONDS
from .._common.faults import DEFAULT_SLOW_DELAY_SECONDS as DEFAULT_SLOW_DELAY_SECONDS
from .._common.faults import FaultBase
from .._common.state import EmulatorConfig as EmulatorConfig
from .._common.state import EmulatorStateBase
from .._common.state import MediaPart as MediaPart
from .._common.state import max_in_window as max_in_window

# Returned by GET /v1/models when no explicit model list is configured.
DEFAULT_LISTED_MODELS: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1")


class FaultKind(enum.StrEnum):
    AUTH_ERROR = "auth_error"  # 401 invalid_api_key, whatever key was sent
    RATE_LIMIT = "rate_limit"  # 429 rate_limit_exceeded + Retry-After (retryable)
    QUOTA_EXCEEDED = "quota_exceeded"  # 429 insufficient_quota, no Retry-After (not worth retrying)
    BAD_REQUEST = "bad_request"  # 400 invalid_request_error
    INTERNAL = "internal"  # 500 server_error
    UNAVAILABLE = "unavailable"  # 503 "engine is currently overloaded"
    LENGTH = "length"  # 200, truncated content, finish_reason=length
    CONTENT_FILTER = "content_filter"  # 200, content null, finish_reason=content_filter
    EMPTY = "empty"  # 200, content "" with finish_reason=stop
    HTML_BODY = "html_body"  # 200 text/html page, as a proxy or captive portal answers
    INVALID_JSON = "invalid_json"  # 200 application/json whose body is cut off mid-object
    NEGATIVE_USAGE = "negative_usage"  # 200, a normal answer whose usage counts are -1
    SLOW = "slow"  # sleep `delay` seconds, then a normal answer
    DROP_CONNECTION = "drop_connection"  # close the socket without any response
    # stream=true: after `after_chunks` chunks (default half) the connection closes / an
    # error event (server_error) ends the stream. Not streamed: the whole answer fails
    # (dropped connection / 500 server_error).
    STREAM_BREAK = "stream_break"
    STREAM_ERROR = "stream_error"


@dataclass(frozen=True, slots=True)
class Fault(FaultBase):
    _kinds = FaultKind

    kind: FaultKind


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One entry of ``messages``: list-of-parts content is flattened to its text parts, its
    ``image_url`` (data: URL) and ``input_audio`` parts are kept as (mime_type, size)."""

    role: str
    content: str
    media: tuple[MediaPart, ...] = ()


@dataclass(slots=True)
class RecordedRequest:
    seq: int
    time: float  # wall clock (epoch seconds)
    monotonic: float  # for window arithmetic
    method: str
    path: str
    action: str  # chatCompletions | listModels | getModel | unknown
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never in reprs/logs
    messages: tuple[ChatMessage, ...] = ()
    temperature: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stream: bool = False
    # The openai package counts its own retries in this header; handy to assert retry behaviour.
    retry_count: int | None = None
    body: Any = None
    status: int | None = None  # None = nothing was sent (dropped, client gone, in flight)
    fault: str | None = None

    @property
    def last_user_text(self) -> str:
        return self._last_user_message.content

    @property
    def last_user_media(self) -> tuple[MediaPart, ...]:
        return self._last_user_message.media

    @property
    def _last_user_message(self) -> ChatMessage:
        return next(
            (m for m in reversed(self.messages) if m.role == "user"), ChatMessage("user", "")
        )

    @property
    def system_prompt(self) -> str | None:
        texts = [m.content for m in self.messages if m.role in ("system", "developer")]
        return "\n".join(texts) if texts else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordedRequest:
        values = dict(data)
        values["messages"] = tuple(
            ChatMessage(m["role"], m["content"], tuple(MediaPart(*p) for p in m.get("media", ())))
            for m in data.get("messages", ())
        )
        return cls(**values)


ReplyFn = Callable[[RecordedRequest], str]


class EmulatorState(EmulatorStateBase[RecordedRequest, Fault]):
    # Models are accepted as named: compat providers use all kinds of ids.
    _record_type = RecordedRequest
    _fault_type = Fault

    def listed_models(self) -> list[str]:
        known = self.known_models()
        return list(DEFAULT_LISTED_MODELS) if known is None else known
