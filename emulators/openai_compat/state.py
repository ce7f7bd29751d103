"""Thread-safe state of the OpenAI-compatible emulator.

Same design as ``emulators.gemini.state`` (deliberately duplicated so each
emulator package stays self-contained): aiohttp handlers on the emulator's loop
thread and test code on the main thread share it through one lock that is never
held across an ``await``. Both control paths (in-process ``OpenAICompatEmulator``
and the HTTP ``/_emulator`` API) call these methods, so they cannot diverge.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import enum
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Returned by GET /v1/models when no explicit model list is configured.
DEFAULT_LISTED_MODELS: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1")

DEFAULT_RETRY_AFTER_SECONDS = 3.0
DEFAULT_SLOW_DELAY_SECONDS = 5.0


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
    SLOW = "slow"  # sleep `delay` seconds, then a normal answer
    DROP_CONNECTION = "drop_connection"  # close the socket without any response


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    times: int | None = 1  # None = every request until cleared
    retry_after: float | None = None
    delay: float | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 (or None for unlimited)")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if self.delay is not None and self.delay < 0:
            raise ValueError("delay must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "times": self.times,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        unknown = set(data) - {"kind", "times", "retry_after", "delay", "message"}
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if "kind" not in data:
            raise ValueError("fault needs a 'kind'")
        return cls(
            kind=FaultKind(data["kind"]),
            times=data.get("times", 1),
            retry_after=data.get("retry_after"),
            delay=data.get("delay"),
            message=data.get("message"),
        )


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One entry of ``messages``; list-of-parts content is flattened to its text parts."""

    role: str
    content: str


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
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""

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
            ChatMessage(role=m["role"], content=m["content"]) for m in data.get("messages", ())
        )
        return cls(**values)


ReplyFn = Callable[[RecordedRequest], str]


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    valid_keys: frozenset[str] | None = None  # None = accept any non-empty key
    known_models: frozenset[str] | None = None  # None = accept any model (compat providers vary)
    latency: float = 0.0
    reply: ReplyFn | None = None


def max_in_window(times: Iterable[float], seconds: float) -> int:
    """Largest number of timestamps inside any half-open window ``[t, t + seconds)``."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, start + seconds, lo=i) - i)
    return best


class EmulatorState:
    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self._config = config or EmulatorConfig()
        self._lock = threading.Lock()
        self._recorded = threading.Condition(self._lock)
        self._seq = 0
        self._requests: list[RecordedRequest] = []
        self._faults: deque[list[Any]] = deque()  # [Fault, remaining or None]
        self._replies: deque[str] = deque()
        self._apply_config(self._config)

    def _apply_config(self, config: EmulatorConfig) -> None:
        self._valid_keys = config.valid_keys
        self._known_models = config.known_models
        self._latency = config.latency
        self._reply = config.reply

    # ---- control operations ----

    def add_fault(
        self,
        kind: FaultKind | str,
        times: int | None = 1,
        retry_after: float | None = None,
        delay: float | None = None,
        message: str | None = None,
    ) -> Fault:
        fault = Fault(
            kind=FaultKind(kind), times=times, retry_after=retry_after, delay=delay, message=message
        )
        with self._lock:
            self._faults.append([fault, fault.times])
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return [dataclasses.replace(f, times=remaining) for f, remaining in self._faults]

    def set_latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            self._latency = float(seconds)

    def set_valid_keys(self, keys: Iterable[str] | None) -> None:
        with self._lock:
            self._valid_keys = None if keys is None else frozenset(keys)

    def set_known_models(self, models: Iterable[str] | None) -> None:
        with self._lock:
            self._known_models = None if models is None else frozenset(models)

    def script_replies(self, replies: Iterable[str]) -> None:
        items = list(replies)
        if not all(isinstance(r, str) for r in items):
            raise ValueError("scripted replies must be strings")
        with self._lock:
            self._replies.extend(items)

    def set_reply(self, fn: ReplyFn | None) -> None:
        """Runs on the emulator's loop thread: keep it quick and non-blocking."""
        with self._lock:
            self._reply = fn

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [copy.deepcopy(r) for r in self._requests]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        with self._recorded:
            if not self._recorded.wait_for(lambda: len(self._requests) >= count, timeout=timeout):
                raise TimeoutError(
                    f"saw {len(self._requests)} requests, expected {count} within {timeout}s"
                )
            return [copy.deepcopy(r) for r in self._requests]

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._replies.clear()
            self._apply_config(self._config)

    def max_requests_in_window(self, seconds: float = 60.0, model: str | None = None) -> int:
        with self._lock:
            times = [r.monotonic for r in self._requests if model is None or r.model == model]
        return max_in_window(times, seconds)

    def requests_per_minute(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            for r in self._requests:
                bucket = time.strftime("%Y-%m-%dT%H:%M", time.localtime(r.time))
                counts[bucket] = counts.get(bucket, 0) + 1
        return counts

    # ---- used by the server ----

    @property
    def latency(self) -> float:
        with self._lock:
            return self._latency

    def key_allowed(self, key: str) -> bool:
        with self._lock:
            return self._valid_keys is None or key in self._valid_keys

    def model_known(self, model: str) -> bool:
        with self._lock:
            return self._known_models is None or model in self._known_models

    def listed_models(self) -> list[str]:
        with self._lock:
            return (
                sorted(self._known_models)
                if self._known_models is not None
                else list(DEFAULT_LISTED_MODELS)
            )

    def record(self, **fields: Any) -> RecordedRequest:
        with self._recorded:
            self._seq += 1
            rec = RecordedRequest(
                seq=self._seq, time=time.time(), monotonic=time.monotonic(), **fields
            )
            self._requests.append(rec)
            self._recorded.notify_all()
            return rec

    def finish(self, rec: RecordedRequest, status: int | None) -> None:
        with self._lock:
            rec.status = status

    def take_fault(self, rec: RecordedRequest | None = None) -> Fault | None:
        """Consume one use of the head fault and note it on ``rec`` (visible even if the client gives up)."""
        with self._lock:
            if not self._faults:
                return None
            entry = self._faults[0]
            fault, remaining = entry
            if remaining is not None:
                remaining -= 1
                if remaining <= 0:
                    self._faults.popleft()
                else:
                    entry[1] = remaining
            if rec is not None:
                rec.fault = fault.kind.value
            return fault

    def take_reply(self) -> tuple[str | None, ReplyFn | None]:
        with self._lock:
            if self._replies:
                return self._replies.popleft(), None
            return None, self._reply
