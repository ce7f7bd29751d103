"""Gemini-specific state: fault kinds, recorded-request fields, default models.

The thread-safe machinery (faults queue, latency, keys, scripted replies,
recorded requests and their windows) is ``emulators._common.state``; this
module binds it to Gemini's ``Fault``/``RecordedRequest`` and to the
``models/`` prefix Google accepts on model names.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._common.faults import DEFAULT_RETRY_AFTER_SECONDS as DEFAULT_RETRY_AFTER_SECONDS
from .._common.faults import DEFAULT_SLOW_DELAY_SECONDS as DEFAULT_SLOW_DELAY_SECONDS
from .._common.faults import FaultBase
from .._common.state import EmulatorConfig as _BaseConfig
from .._common.state import EmulatorStateBase
from .._common.state import MediaPart as MediaPart
from .._common.state import max_in_window as max_in_window

DEFAULT_KNOWN_MODELS: tuple[str, ...] = (
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
    "gemini-2.0-flash-lite",
    "gemini-1.5-flash",
    "gemini-1.5-pro",
)


class FaultKind(enum.StrEnum):
    """What the next generateContent answer(s) should look like instead of a normal reply."""

    RATE_LIMIT = "rate_limit"  # 429 RESOURCE_EXHAUSTED + Retry-After + RetryInfo
    INTERNAL = "internal"  # 500 INTERNAL
    UNAVAILABLE = "unavailable"  # 503 UNAVAILABLE, "The model is overloaded"
    DEADLINE_EXCEEDED = "deadline_exceeded"  # 504 DEADLINE_EXCEEDED
    INVALID_ARGUMENT = "invalid_argument"  # 400 INVALID_ARGUMENT
    PERMISSION_DENIED = "permission_denied"  # 403 PERMISSION_DENIED
    PROMPT_BLOCKED = "prompt_blocked"  # 200, no candidates, promptFeedback.blockReason=SAFETY
    SAFETY_FINISH = "safety_finish"  # 200, candidate finishReason=SAFETY, no content
    EMPTY_TEXT = "empty_text"  # 200, candidate with a single empty text part
    EMPTY_CONTENT = "empty_content"  # 200, candidate content without parts (known 2.5 quirk)
    MAX_TOKENS = "max_tokens"  # 200, truncated text, finishReason=MAX_TOKENS
    HTML_BODY = "html_body"  # 200 text/html page, as a proxy or captive portal answers
    INVALID_JSON = "invalid_json"  # 200 application/json whose body is cut off mid-object
    NEGATIVE_USAGE = "negative_usage"  # 200, a normal answer whose usage counts are -1
    SLOW = "slow"  # sleep `delay` seconds, then a normal answer
    DROP_CONNECTION = "drop_connection"  # close the socket without any response
    # streamGenerateContent: after `after_chunks` chunks (default half) the connection
    # closes / an error event (500 INTERNAL) ends the stream. Not streamed: the whole
    # answer fails (dropped connection / 500 INTERNAL).
    STREAM_BREAK = "stream_break"
    STREAM_ERROR = "stream_error"


@dataclass(frozen=True, slots=True)
class Fault(FaultBase):
    _kinds = FaultKind

    kind: FaultKind


@dataclass(frozen=True, slots=True)
class Turn:
    """One entry of ``contents``: its role, the concatenation of its text parts and its
    ``inline_data`` parts as (mime_type, decoded size in bytes)."""

    role: str
    text: str
    media: tuple[MediaPart, ...] = ()


@dataclass(slots=True)
class RecordedRequest:
    """One API request as the emulator saw it. ``requests()`` hands out copies."""

    seq: int
    time: float  # wall clock (epoch seconds), for humans and per-minute buckets
    monotonic: float  # for window arithmetic that must not jump with the clock
    method: str
    path: str
    action: str  # generateContent | streamGenerateContent | countTokens | getModel | listModels | unknown
    api_version: str | None = None
    model: str | None = None
    # repr=False: the key must never leak into assertion messages or logs.
    api_key: str | None = field(default=None, repr=False)
    system_instruction: str | None = None
    contents: tuple[Turn, ...] = ()
    generation_config: dict[str, Any] = field(default_factory=dict)
    safety_settings: list[dict[str, Any]] = field(default_factory=list)
    body: Any = None
    # Filled in once the emulator decided the answer. None = no HTTP response
    # was sent (dropped connection, client went away, or still in flight).
    status: int | None = None
    fault: str | None = None
    # Monotonic time the answer was handed to the server (or the client went away);
    # with ``monotonic`` (arrival) it shows which requests were in flight together.
    finished_monotonic: float | None = None

    @property
    def last_user_text(self) -> str:
        return self._last_user_turn.text

    @property
    def last_user_media(self) -> tuple[MediaPart, ...]:
        return self._last_user_turn.media

    @property
    def _last_user_turn(self) -> Turn:
        return next((t for t in reversed(self.contents) if t.role == "user"), Turn("user", ""))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["contents"] = [
            {"role": t.role, "text": t.text, "media": [list(m) for m in t.media]}
            for t in self.contents
        ]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordedRequest:
        values = dict(data)
        values["contents"] = tuple(
            Turn(c["role"], c["text"], tuple(MediaPart(*m) for m in c.get("media", ())))
            for c in data.get("contents", ())
        )
        return cls(**values)


ReplyFn = Callable[[RecordedRequest], str]


@dataclass(frozen=True, slots=True)
class EmulatorConfig(_BaseConfig):
    """Construction-time settings; Gemini knows a fixed set of models by default."""

    known_models: frozenset[str] | None = frozenset(DEFAULT_KNOWN_MODELS)  # None = accept any


class EmulatorState(EmulatorStateBase[RecordedRequest, Fault]):
    _record_type = RecordedRequest
    _fault_type = Fault
    _config_type = EmulatorConfig

    @staticmethod
    def _normalise_model(name: str) -> str:
        # Google names models "models/gemini-..." in paths and answers and accepts both forms.
        return name.removeprefix("models/")

    def finish(self, rec: RecordedRequest, status: int | None) -> None:
        super().finish(rec, status)
        with self._lock:
            rec.finished_monotonic = time.monotonic()
