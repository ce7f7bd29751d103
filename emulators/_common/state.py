"""Thread-safe emulator state: configuration, queued faults, scripted replies, recorded requests.

The aiohttp handlers run on the emulator's own event-loop thread while tests
call the control methods from the main thread, so every read/write goes through
one ``threading.Lock``. The lock is held only for tiny in-memory operations,
never across an ``await``, so it cannot stall the event loop.

``EmulatorStateBase`` is the single implementation of every control operation:
the in-process emulators delegate to it directly and the HTTP control API
(``/_emulator/...``) parses JSON and calls the very same methods. Each emulator
subclasses it to name its ``RecordedRequest`` and ``Fault`` types and, where
its API has one, a model-name normalisation.
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
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, Self, TypeVar

from .faults import FaultBase, QueuedFault


class MediaPart(NamedTuple):
    """A non-text part of a request (image, audio...): its MIME type and decoded size in bytes."""

    mime_type: str
    size: int


# Default pacing of streamed answers: small, so tests stay fast but chunks stay apart.
DEFAULT_FIRST_CHUNK_DELAY = 0.01
DEFAULT_CHUNK_DELAY = 0.01
DEFAULT_STREAM_CHUNKS = 4


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """How streamed (SSE) answers are paced; ``set_stream_timing`` changes it, ``reset`` restores it."""

    first_chunk_delay: float = DEFAULT_FIRST_CHUNK_DELAY  # seconds from the headers to event 1
    chunk_delay: float = DEFAULT_CHUNK_DELAY  # seconds between events
    chunks: int = DEFAULT_STREAM_CHUNKS  # pieces of the reply text (fewer if it has fewer words)


class Recorded(Protocol):
    """What the shared code needs of an emulator's ``RecordedRequest``."""

    # ``EmulatorStateBase.record`` makes one from the numbering and clocks it adds and
    # the emulator's own fields. (A protocol's ``__init__`` only types calls through
    # ``type[RecT]``: mypy leaves it out when matching a class against the protocol.)
    def __init__(self, *, seq: int, time: float, monotonic: float, **fields: Any) -> None: ...

    time: float
    monotonic: float
    model: str | None
    status: int | None
    fault: str | None

    @property
    def last_user_text(self) -> str: ...

    @property
    def last_user_media(self) -> tuple[MediaPart, ...]: ...

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self: ...


RecT = TypeVar("RecT", bound=Recorded)
FaultT = TypeVar("FaultT", bound=FaultBase)


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Construction-time settings; ``reset()`` returns the state to exactly these."""

    valid_keys: frozenset[str] | None = None  # None = accept any non-empty key
    known_models: frozenset[str] | None = None  # None = accept any model
    latency: float = 0.0
    # Called with the emulator's RecordedRequest; returns the reply text.
    reply: Callable[[Any], str] | None = None


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


class EmulatorStateBase(Generic[RecT, FaultT]):
    # Set by each emulator's subclass.
    _record_type: type[RecT]
    _fault_type: type[FaultT]
    # Instantiated with its defaults when no config is given (Gemini's has a model list).
    _config_type: type[EmulatorConfig] = EmulatorConfig

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self._config = config or self._config_type()
        self._lock = threading.Lock()
        # Notified whenever a request is recorded, for wait_for_requests().
        self._recorded = threading.Condition(self._lock)
        self._seq = 0
        self._requests: list[RecT] = []
        self._faults: deque[QueuedFault[FaultT]] = deque()
        self._replies: deque[str] = deque()
        self._apply_config(self._config)

    @classmethod
    def configured(
        cls,
        *,
        valid_keys: Iterable[str] | None,
        known_models: Iterable[str] | None,
        latency: float,
        reply: Callable[[RecT], str] | None,
    ) -> Self:
        """A state from the in-process emulators' constructor arguments (any iterables)."""
        return cls(
            cls._config_type(
                valid_keys=None if valid_keys is None else frozenset(valid_keys),
                known_models=None
                if known_models is None
                else frozenset(cls._normalise_model(m) for m in known_models),
                latency=latency,
                reply=reply,
            )
        )

    def _apply_config(self, config: EmulatorConfig) -> None:
        self._valid_keys = config.valid_keys
        self._known_models = config.known_models
        self._latency = config.latency
        self._reply = config.reply
        self._stream_timing = StreamTiming()

    @staticmethod
    def _normalise_model(name: str) -> str:
        """How a model name is compared with the known ones; an API with aliases overrides it."""
        return name

    # ---- control operations (shared by in-process and HTTP control) ----

    def add_fault(
        self,
        kind: enum.StrEnum | str,
        times: int | None = 1,
        retry_after: float | None = None,
        delay: float | None = None,
        message: str | None = None,
        after_chunks: int | None = None,
    ) -> FaultT:
        # The emulator's FaultKind converts ``kind`` (ValueError if it names none); the
        # Fault validates the rest.
        fault = self._fault_type(
            kind=self._fault_type._kinds(kind),
            times=times,
            retry_after=retry_after,
            delay=delay,
            message=message,
            after_chunks=after_chunks,
        )
        with self._lock:
            self._faults.append(QueuedFault(fault, fault.times))
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> list[FaultT]:
        with self._lock:
            return [dataclasses.replace(queued.fault, times=queued.left) for queued in self._faults]

    def set_latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            self._latency = float(seconds)

    def set_stream_timing(
        self,
        first_chunk_delay: float = DEFAULT_FIRST_CHUNK_DELAY,
        chunk_delay: float = DEFAULT_CHUNK_DELAY,
        chunks: int | None = None,
    ) -> None:
        """Pace streamed answers: seconds before the first event and between events, and
        how many pieces the reply text is split into (None: the default, 4)."""
        if first_chunk_delay < 0 or chunk_delay < 0:
            raise ValueError("stream delays must be >= 0")
        if chunks is not None and chunks < 1:
            raise ValueError("chunks must be >= 1")
        timing = StreamTiming(
            float(first_chunk_delay), float(chunk_delay), chunks or DEFAULT_STREAM_CHUNKS
        )
        with self._lock:
            self._stream_timing = timing

    def set_valid_keys(self, keys: Iterable[str] | None) -> None:
        with self._lock:
            self._valid_keys = None if keys is None else frozenset(keys)

    def set_known_models(self, models: Iterable[str] | None) -> None:
        with self._lock:
            self._known_models = (
                None if models is None else frozenset(self._normalise_model(m) for m in models)
            )

    def script_replies(self, replies: Iterable[str]) -> None:
        """Queue replies; each successful text answer consumes one, then the reply fn/default applies."""
        items = list(replies)
        if not all(isinstance(r, str) for r in items):
            raise ValueError("scripted replies must be strings")
        with self._lock:
            self._replies.extend(items)

    def set_reply(self, fn: Callable[[RecT], str] | None) -> None:
        """Runs on the emulator's loop thread: keep it quick and non-blocking."""
        with self._lock:
            self._reply = fn

    def requests(self) -> list[RecT]:
        with self._lock:
            return [copy.deepcopy(r) for r in self._requests]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecT]:
        """Block until at least ``count`` requests were recorded; TimeoutError otherwise."""
        with self._recorded:
            if not self._recorded.wait_for(lambda: len(self._requests) >= count, timeout=timeout):
                raise TimeoutError(
                    f"saw {len(self._requests)} requests, expected {count} within {timeout}s"
                )
            return [copy.deepcopy(r) for r in self._requests]

    def reset(self) -> None:
        """Forget requests, faults and scripted replies; restore the construction-time config
        and the default stream timing."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._replies.clear()
            self._apply_config(self._config)

    def max_requests_in_window(self, seconds: float = 60.0, model: str | None = None) -> int:
        wanted = None if model is None else self._normalise_model(model)
        with self._lock:
            times = [r.monotonic for r in self._requests if wanted is None or r.model == wanted]
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

    @property
    def stream_timing(self) -> StreamTiming:
        with self._lock:
            return self._stream_timing

    def key_allowed(self, key: str) -> bool:
        with self._lock:
            return self._valid_keys is None or key in self._valid_keys

    def model_known(self, model: str) -> bool:
        with self._lock:
            return self._known_models is None or self._normalise_model(model) in self._known_models

    def known_models(self) -> list[str] | None:
        """The configured models, sorted; None when any model is accepted."""
        with self._lock:
            return None if self._known_models is None else sorted(self._known_models)

    def record(self, **fields: Any) -> RecT:
        with self._recorded:
            self._seq += 1
            rec = self._record_type(
                seq=self._seq, time=time.time(), monotonic=time.monotonic(), **fields
            )
            self._requests.append(rec)
            self._recorded.notify_all()
            return rec

    def finish(self, rec: RecT, status: int | None) -> None:
        # Mutates the stored object; readers only ever see copies taken under the lock.
        with self._lock:
            rec.status = status

    def take_fault(self, rec: RecT | None = None) -> FaultT | None:
        """Consume one use of the fault at the head of the queue and note it on ``rec``.

        Noting it here (not when the answer is sent) keeps the fault visible on
        requests whose client gave up before the answer, e.g. a timed-out SLOW.
        """
        with self._lock:
            if not self._faults:
                return None
            queued = self._faults[0]
            if queued.use():
                self._faults.popleft()
            fault = queued.fault
            if rec is not None:
                rec.fault = fault.kind.value
            return fault

    def take_reply(self) -> tuple[str | None, Callable[[RecT], str] | None]:
        """Next scripted reply if any, else the reply function (may be None = default text)."""
        with self._lock:
            if self._replies:
                return self._replies.popleft(), None
            return None, self._reply
