"""Thread-safe emulator state: configuration, queued faults, scripted replies, recorded requests.

The aiohttp handlers run on the emulator's own event-loop thread while tests
call the control methods from the main thread, so every read/write goes through
one ``threading.Lock``. The lock is held only for tiny in-memory operations,
never across an ``await``, so it cannot stall the event loop.

This module is the single implementation of every control operation: the
in-process ``GeminiEmulator`` delegates to it directly and the HTTP control API
(``/_emulator/...``) parses JSON and calls the very same methods.
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

DEFAULT_KNOWN_MODELS: tuple[str, ...] = (
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
    "gemini-2.0-flash-lite",
    "gemini-1.5-flash",
    "gemini-1.5-pro",
)

# Used when a fault does not say otherwise; small so tests stay fast.
DEFAULT_RETRY_AFTER_SECONDS = 3.0
DEFAULT_SLOW_DELAY_SECONDS = 5.0


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
    SLOW = "slow"  # sleep `delay` seconds, then a normal answer
    DROP_CONNECTION = "drop_connection"  # close the socket without any response


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    # None = apply to every request until cleared; otherwise how many requests it affects.
    times: int | None = 1
    retry_after: float | None = None
    delay: float | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        # Normalise so that callers may pass plain strings ("rate_limit").
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
class Turn:
    """One entry of ``contents``: its role and the concatenation of its text parts."""

    role: str
    text: str


@dataclass(slots=True)
class RecordedRequest:
    """One API request as the emulator saw it. ``requests()`` hands out copies."""

    seq: int
    time: float  # wall clock (epoch seconds), for humans and per-minute buckets
    monotonic: float  # for window arithmetic that must not jump with the clock
    method: str
    path: str
    action: str  # generateContent | countTokens | getModel | listModels | unknown
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

    @property
    def last_user_text(self) -> str:
        for turn in reversed(self.contents):
            if turn.role == "user":
                return turn.text
        return ""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["contents"] = [{"role": t.role, "text": t.text} for t in self.contents]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordedRequest:
        values = dict(data)
        values["contents"] = tuple(
            Turn(role=c["role"], text=c["text"]) for c in data.get("contents", ())
        )
        return cls(**values)


ReplyFn = Callable[[RecordedRequest], str]


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Construction-time settings; ``reset()`` returns the state to exactly these."""

    valid_keys: frozenset[str] | None = None  # None = accept any non-empty key
    known_models: frozenset[str] | None = frozenset(DEFAULT_KNOWN_MODELS)  # None = accept any
    latency: float = 0.0
    reply: ReplyFn | None = None


def _normalise_model(name: str) -> str:
    return name.removeprefix("models/")


def max_in_window(times: Iterable[float], seconds: float) -> int:
    """Largest number of timestamps inside any half-open window ``[t, t + seconds)``.

    Checking windows that start at each recorded time is sufficient: any window
    can be slid right until its left edge touches a request without losing one.
    """
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        end = bisect.bisect_left(ordered, start + seconds, lo=i)
        best = max(best, end - i)
    return best


class EmulatorState:
    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self._config = config or EmulatorConfig()
        self._lock = threading.Lock()
        # Notified whenever a request is recorded, for wait_for_requests().
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

    # ---- control operations (shared by in-process and HTTP control) ----

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
            self._known_models = (
                None if models is None else frozenset(_normalise_model(m) for m in models)
            )

    def script_replies(self, replies: Iterable[str]) -> None:
        """Queue replies; each successful text answer consumes one, then the reply fn/default applies."""
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
        """Block until at least ``count`` requests were recorded; TimeoutError otherwise."""
        with self._recorded:
            if not self._recorded.wait_for(lambda: len(self._requests) >= count, timeout=timeout):
                raise TimeoutError(
                    f"saw {len(self._requests)} requests, expected {count} within {timeout}s"
                )
            return [copy.deepcopy(r) for r in self._requests]

    def reset(self) -> None:
        """Forget requests, faults and scripted replies; restore the construction-time config."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._replies.clear()
            self._apply_config(self._config)

    def max_requests_in_window(self, seconds: float = 60.0, model: str | None = None) -> int:
        with self._lock:
            times = [
                r.monotonic
                for r in self._requests
                if model is None or (r.model is not None and r.model == _normalise_model(model))
            ]
        return max_in_window(times, seconds)

    def requests_per_minute(self) -> dict[str, int]:
        """Request counts per wall-clock minute (local time, ``YYYY-MM-DDTHH:MM``)."""
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
            return self._known_models is None or _normalise_model(model) in self._known_models

    def known_models(self) -> list[str] | None:
        with self._lock:
            return None if self._known_models is None else sorted(self._known_models)

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
        # Mutates the stored object; readers only ever see copies taken under the lock.
        with self._lock:
            rec.status = status

    def take_fault(self, rec: RecordedRequest | None = None) -> Fault | None:
        """Consume one use of the fault at the head of the queue and note it on ``rec``.

        Noting it here (not when the answer is sent) keeps the fault visible on
        requests whose client gave up before the answer, e.g. a timed-out SLOW.
        """
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
        """Next scripted reply if any, else the reply function (may be None = default text)."""
        with self._lock:
            if self._replies:
                return self._replies.popleft(), None
            return None, self._reply
