"""Waiting for what a test expects, and reading overlap from an emulator's own clock."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 20, interval: float = 0.05) -> T:
    """The first truthy value of `condition()`, or AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def most_in_flight(spans: list[tuple[float, float]]) -> int:
    """The most (start, end) spans open at one instant. An end sorts before a start at
    the same instant: touching is not overlapping."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    in_flight = most = 0
    for _, change in events:
        in_flight += change
        most = max(most, in_flight)
    return most
