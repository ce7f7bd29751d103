"""Send limits shared through Redis: every worker thread sees the same windows."""

import threading
import time

import pytest

from bots import ratelimit
from core import aio
from emulators._common.state import max_in_window


def acquire(**where: object) -> None:
    """One send slot, from a plain thread (as the outbox waits for one on the I/O loop)."""
    aio.run(ratelimit.send_slot_acquire(broadcast=False, **where))  # type: ignore[arg-type]


def test_it_holds_the_per_bot_limit_across_threads() -> None:
    stamps: list[float] = []

    def sender(thread: int) -> None:
        for n in range(20):
            acquire(bot_id=1, chat_id=thread * 100 + n, is_group=False, max_wait=5)
            stamps.append(time.monotonic())

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(stamps) == 40
    # A stamp is read after its slot was granted, up to a thread switch later, and the
    # limiter grants the 31st slot exactly a second after the 1st. So stamps inside any
    # 0.7 s had their slots inside one second for delays up to 0.3 s: at most 30 of them
    # (without the limit, all 40 would fall inside 0.7 s).
    assert max_in_window(stamps, seconds=0.7) <= 30
    assert max(stamps) - min(stamps) >= 0.9  # the last 10 waited for the next second


def test_it_refuses_to_wait_longer_than_asked() -> None:
    acquire(bot_id=2, chat_id=5, is_group=False, max_wait=0)

    with pytest.raises(ratelimit.SlotUnavailable) as excinfo:
        acquire(bot_id=2, chat_id=5, is_group=False, max_wait=0.1)

    assert 0.5 < excinfo.value.wait <= 1.0  # the chat's next slot, about a second away


def test_it_blocks_every_chat_of_a_flooded_bot_but_not_other_bots() -> None:
    aio.run(ratelimit.bot_flood_block(bot_id=3, seconds=5))

    with pytest.raises(ratelimit.SlotUnavailable):
        acquire(bot_id=3, chat_id=77, is_group=False, max_wait=1)
    acquire(bot_id=4, chat_id=77, is_group=False, max_wait=0)


def test_it_allows_twenty_messages_a_minute_in_a_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "PER_CHAT", (100, 1_000))  # isolate the group window
    for _ in range(20):
        acquire(bot_id=5, chat_id=-100, is_group=True, max_wait=0)

    with pytest.raises(ratelimit.SlotUnavailable) as excinfo:
        acquire(bot_id=5, chat_id=-100, is_group=True, max_wait=1)
    assert excinfo.value.wait > 30


def test_a_group_preview_takes_only_the_first_half_of_the_groups_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streaming by editing stops asking once the group has used half its 20 a minute;
    the answers themselves still have the other half."""
    monkeypatch.setattr(ratelimit, "PER_CHAT", (100, 1_000))  # isolate the group window
    for _ in range(4):
        acquire(bot_id=6, chat_id=-200, is_group=True, max_wait=0)  # answers already sent
    previews = [aio.run(ratelimit.preview_slot_try(bot_id=6, chat_id=-200)) for _ in range(8)]

    assert previews == [True] * (ratelimit.PREVIEW_GROUP_SHARE - 4) + [False] * 2
    for _ in range(20 - ratelimit.PREVIEW_GROUP_SHARE):
        acquire(bot_id=6, chat_id=-200, is_group=True, max_wait=0)  # room left for answers
