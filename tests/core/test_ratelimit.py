"""core.ratelimit: sliding windows in Redis, checked and taken together, and block keys.

Keys start with "botfleet:" so tests/conftest.py clears them before every test."""

import time
import uuid

import pytest

from core import aio
from core.ratelimit import SlotUnavailable, Window, block_for, slot_acquire


def _key(name: str) -> str:
    return f"botfleet:test-core:{name}:{uuid.uuid4().hex}"


def acquire(windows: list[Window], *, block_key: str | None = None, max_wait: float = 0) -> None:
    aio.run(slot_acquire(windows=windows, block_key=block_key or _key("block"), max_wait=max_wait))


def test_a_window_admits_its_limit_then_says_when_a_slot_frees() -> None:
    window = Window(key=_key("w"), limit=3, window_ms=1_000)
    for _ in range(3):
        acquire([window])

    with pytest.raises(SlotUnavailable) as excinfo:
        acquire([window])

    assert 0 < excinfo.value.wait <= 1.0
    assert "no slot for" in str(excinfo.value)


def test_a_refused_request_takes_a_slot_in_no_window() -> None:
    roomy = Window(key=_key("roomy"), limit=3, window_ms=10_000)
    full = Window(key=_key("full"), limit=1, window_ms=10_000)
    acquire([roomy, full])  # roomy 1 of 3, full 1 of 1

    for _ in range(5):
        with pytest.raises(SlotUnavailable):
            acquire([roomy, full])

    # The refusals spent nothing in the window that had room: two slots are left there.
    acquire([roomy])
    acquire([roomy])
    with pytest.raises(SlotUnavailable):
        acquire([roomy])


def test_it_waits_for_a_slot_within_the_wait_allowed() -> None:
    window = Window(key=_key("w"), limit=1, window_ms=300)
    acquire([window])

    started = time.monotonic()
    acquire([window], max_wait=2)

    assert time.monotonic() - started >= 0.2


def test_a_block_key_refuses_every_window_until_it_passes() -> None:
    block = _key("block")
    aio.run(block_for(block_key=block, seconds=2))

    with pytest.raises(SlotUnavailable) as excinfo:
        acquire([Window(key=_key("w"), limit=100, window_ms=1_000)], block_key=block)
    assert 1.0 < excinfo.value.wait <= 2.0

    # Another block key, same kind of window: not blocked.
    acquire([Window(key=_key("w"), limit=100, window_ms=1_000)])


def test_a_short_block_is_waited_out() -> None:
    block = _key("block")
    aio.run(block_for(block_key=block, seconds=0.3))

    started = time.monotonic()
    acquire([Window(key=_key("w"), limit=1, window_ms=1_000)], block_key=block, max_wait=2)

    assert time.monotonic() - started >= 0.2
