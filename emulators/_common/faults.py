"""The fault record both emulators queue: what kind, how often, and its timings.

Each emulator defines its own ``FaultKind`` (the failures its API can show)
and a ``Fault`` subclass bound to it; validation, (de)serialisation and the
defaults for timings are the same for both and live here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self, TypeVar

# Used when a fault does not say otherwise; small so tests stay fast.
DEFAULT_RETRY_AFTER_SECONDS = 3.0
DEFAULT_SLOW_DELAY_SECONDS = 5.0

# Kinds every emulator's FaultKind has, with these values: they act on the
# connection rather than the answer body, so the shared handler applies them.
SLOW = "slow"  # sleep `delay` seconds, then a normal answer
DROP_CONNECTION = "drop_connection"  # close the socket without any response
# A streamed answer (SSE) that fails after `after_chunks` events (default: half of them):
STREAM_BREAK = "stream_break"  # the connection is closed mid-stream
STREAM_ERROR = "stream_error"  # an error event, then the end of the stream
STREAM_FAULTS = frozenset({STREAM_BREAK, STREAM_ERROR})

# The JSON fields of a fault, for the control API and ``from_dict``.
FAULT_FIELDS = frozenset({"kind", "times", "retry_after", "delay", "message", "after_chunks"})


@dataclass(frozen=True, slots=True)
class FaultBase:
    """Base of each emulator's ``Fault``; a subclass sets ``_kinds`` and narrows ``kind``."""

    # The emulator's FaultKind enum: plain strings ("rate_limit") are converted with it.
    _kinds: ClassVar[type[enum.StrEnum]]

    kind: enum.StrEnum
    # None = apply to every request until cleared; otherwise how many requests it affects.
    times: int | None = 1
    retry_after: float | None = None
    delay: float | None = None
    message: str | None = None
    # Stream faults only: how many events arrive before the break.
    after_chunks: int | None = None

    def __post_init__(self) -> None:
        # Normalise so that callers may pass plain strings ("rate_limit").
        object.__setattr__(self, "kind", self._kinds(self.kind))
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 (or None for unlimited)")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if self.delay is not None and self.delay < 0:
            raise ValueError("delay must be >= 0")
        if self.after_chunks is not None:
            if self.kind.value not in STREAM_FAULTS:
                raise ValueError(f"after_chunks only applies to {sorted(STREAM_FAULTS)} faults")
            if self.after_chunks < 0:
                raise ValueError("after_chunks must be >= 0")

    def retry_after_seconds(self) -> float:
        """``retry_after``, or the default a rate-limit answer advertises."""
        return self.retry_after if self.retry_after is not None else DEFAULT_RETRY_AFTER_SECONDS

    def delay_seconds(self) -> float:
        """``delay``, or the default a SLOW fault sleeps."""
        return self.delay if self.delay is not None else DEFAULT_SLOW_DELAY_SECONDS

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "times": self.times,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "message": self.message,
            "after_chunks": self.after_chunks,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        unknown = set(data) - FAULT_FIELDS
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if "kind" not in data:
            raise ValueError("fault needs a 'kind'")
        return cls(
            kind=data["kind"],
            times=data.get("times", 1),
            retry_after=data.get("retry_after"),
            delay=data.get("delay"),
            message=data.get("message"),
            after_chunks=data.get("after_chunks"),
        )


F = TypeVar("F", bound=FaultBase)


@dataclass(slots=True)
class QueuedFault(Generic[F]):
    """A queued fault and how many more requests it answers (None: until cleared)."""

    fault: F
    left: int | None

    def use(self) -> bool:
        """One request answered with it; True when that was its last (dequeue it)."""
        if self.left is None:
            return False
        self.left -= 1
        return self.left <= 0
