"""Load on the emulator (people writing to bots) and what came back.

Every message comes from a user of its own, so each is a private chat of its own (or,
with `inject_in_group`, a group of its own): Telegram's per-chat limit (about 1
message/s) never applies, and a reply is matched to its message by (bot, chat). Times
are the emulator's `time.time()` stamps (the update's `injected_at`, the sent message's
`time`), so both ends of a latency come from one clock.
"""

import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from benchmarks.report import progress
from emulators.telegram import EmulatorClient

DUPLICATE_GRACE_S = 2.0  # after the last expected reply: room for a duplicate to show up
RECHECK_EVERY_S = 2.0


class UserIds:
    """Distinct Telegram users (hence distinct private chats) for the whole run."""

    def __init__(self, start: int = 1_000_000_000) -> None:
        self._ids = itertools.count(start)
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            return next(self._ids)


@dataclass(frozen=True)
class Injected:
    token: str
    chat_id: int
    update_id: int
    text: str


def inject_one(emulator: EmulatorClient, token: str, user_id: int, text: str) -> Injected:
    update = emulator.send_private_message(token, text, user_id=user_id)
    return Injected(token, update["message"]["chat"]["id"], update["update_id"], text)


Inject = Callable[[EmulatorClient, str, int, str], Injected]


def inject_in_group(emulator: EmulatorClient, token: str, user_id: int, text: str) -> Injected:
    """The message in a new group of its own (the emulator makes one, the bot in it),
    mentioning the bot (`@username ` before `text`: the Injected text is the whole
    message, mention included)."""
    update = emulator.send_group_message(token, text, user_id=user_id, mention_bot="username")
    message = update["message"]
    return Injected(token, message["chat"]["id"], update["update_id"], message["text"])


class ReplyCounter:
    """Messages sent by all bots since creation (the emulator's cheap global counter)."""

    def __init__(self, emulator: EmulatorClient) -> None:
        self._emulator = emulator
        self._before = emulator.stats()["sent_messages"]
        self._last = (time.monotonic(), 0)

    def count(self) -> int:
        return int(self._emulator.stats()["sent_messages"]) - self._before

    def rate_line(self, label: str, expected: int) -> str:
        """'label: 123/2000 replies, 310/s' with the rate since the previous line."""
        now, sent = time.monotonic(), self.count()
        then, before = self._last
        self._last = (now, sent)
        rate = (sent - before) / (now - then) if now > then else 0.0
        return f"{label}: {sent}/{expected} replies, {rate:.0f}/s"


# --- injecting ---------------------------------------------------------------------------


def inject_burst(
    emulator: EmulatorClient,
    tokens: list[str],
    count: int,
    *,
    users: UserIds,
    counter: ReplyCounter,
    label: str,
    threads: int = 8,
    text: Callable[[int], str] | None = None,
) -> tuple[list[Injected], float]:
    """`count` messages spread round-robin over the bots, as fast as the emulator takes
    them (several threads: one HTTP round trip at a time would pace the burst). `text`:
    the n-th message's text (default "<label> message <n>")."""
    wording = text or (lambda n: f"{label} message {n}")
    plan = [(tokens[n % len(tokens)], users.take(), wording(n)) for n in range(count)]
    began = time.monotonic()
    with ThreadPoolExecutor(threads, thread_name_prefix="inject") as pool:
        futures = [pool.submit(inject_one, emulator, *args) for args in plan]
        injected = []
        for done, future in enumerate(futures, start=1):
            injected.append(future.result())
            progress(
                lambda done=done: f"injected {done}/{count}; " + counter.rate_line(label, count)
            )
    return injected, time.monotonic() - began


def inject_paced(
    emulator: EmulatorClient,
    tokens: list[str],
    *,
    rate: float,
    duration: float,
    users: UserIds,
    counter: ReplyCounter,
    label: str,
    text: Callable[[int], str] | None = None,
    inject: Inject = inject_one,
) -> tuple[list[Injected], float]:
    """One message every 1/rate seconds on a fixed schedule (a late one does not push
    the later ones back), round-robin over the bots. `text` as in `inject_burst`; `inject`
    sends one (`inject_one`: in a private chat; `inject_in_group`)."""
    wording = text or (lambda n: f"{label} message {n}")
    total = max(1, int(rate * duration))
    began = time.monotonic()
    injected = []
    for n in range(total):
        delay = began + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        injected.append(inject(emulator, tokens[n % len(tokens)], users.take(), wording(n)))
        progress(lambda n=n: f"injected {n + 1}/{total}; " + counter.rate_line(label, total))
    return injected, time.monotonic() - began


# --- waiting for replies -------------------------------------------------------------------


@dataclass
class Outcome:
    """What the emulator saw for a list of injected messages."""

    injected: int = 0
    answered: int = 0  # chats with at least one reply
    duplicate_chats: int = 0  # chats with more than one reply
    extra_replies: int = 0  # replies beyond the first, summed
    wrong_text: int = 0  # first reply does not echo the message ("You said: <text>")
    latencies_ms: list[float] = field(default_factory=list)
    # Where the time goes, per answered message, from the emulator's own stamps:
    # written -> handed to the bot by getUpdates -> "typing" (if any) -> reply.
    stages_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    first_injected_at: float | None = None
    last_reply_at: float | None = None

    @property
    def lost(self) -> int:
        return self.injected - self.answered

    @property
    def replies_per_s(self) -> float | None:
        if not self.answered or self.first_injected_at is None or self.last_reply_at is None:
            return None
        span = self.last_reply_at - self.first_injected_at
        return self.answered / span if span > 0 else None


def outcome(emulator: EmulatorClient, injected: list[Injected]) -> Outcome:
    result = Outcome(injected=len(injected))
    by_token: dict[str, list[Injected]] = defaultdict(list)
    for item in injected:
        by_token[item.token].append(item)
    for token, items in by_token.items():
        _bot_outcome(emulator, token, items, result)
    return result


def _bot_outcome(
    emulator: EmulatorClient, token: str, items: list[Injected], result: Outcome
) -> None:
    records = {record["update_id"]: record for record in emulator.updates(token)}
    replies: dict[int, list[dict]] = defaultdict(list)
    for sent in emulator.sent_messages(token):
        if sent.get("method", "sendMessage") == "sendMessage":
            replies[sent["chat_id"]].append(sent)
    typing: dict[int, float] = {}
    for action in emulator.chat_actions(token):
        typing.setdefault(action["chat_id"], action["time"])
    for item in items:
        record = records.get(item.update_id, {})
        at = record.get("injected_at")
        if at is not None:
            result.first_injected_at = min(at, result.first_injected_at or at)
        chat_replies = replies.get(item.chat_id, [])
        if not chat_replies:
            continue
        first = chat_replies[0]
        result.answered += 1
        if len(chat_replies) > 1:
            result.duplicate_chats += 1
            result.extra_replies += len(chat_replies) - 1
        if f"You said: {item.text}" not in (first.get("text") or ""):
            result.wrong_text += 1
        result.last_reply_at = max(first["time"], result.last_reply_at or first["time"])
        if at is not None:
            result.latencies_ms.append((first["time"] - at) * 1000)
            _stages(
                result.stages_ms,
                at,
                record.get("delivered_at"),
                typing.get(item.chat_id),
                first["time"],
            )


def _stages(
    stages: dict[str, list[float]],
    injected: float,
    delivered: float | None,
    typed: float | None,
    replied: float,
) -> None:
    if delivered is None:
        return
    stages["written -> delivered by getUpdates"].append((delivered - injected) * 1000)
    if typed is not None and delivered <= typed <= replied:
        stages["delivered -> sendChatAction"].append((typed - delivered) * 1000)
        stages["sendChatAction -> sendMessage"].append((replied - typed) * 1000)
    else:
        stages["delivered -> sendMessage"].append((replied - delivered) * 1000)


def drain(
    emulator: EmulatorClient,
    injected: list[Injected],
    *,
    counter: ReplyCounter,
    timeout: float,
    label: str,
) -> Outcome:
    """Wait (at most `timeout` s) until every message has a reply, then a little longer
    for duplicates to show, and return the outcome. `counter` was created before the
    first injection. It is cheap but counts duplicates too, so the final word is a
    per-chat check."""
    expected, deadline = len(injected), time.monotonic() + timeout
    while time.monotonic() < deadline and counter.count() < expected:
        progress(lambda: counter.rate_line(label, expected))
        time.sleep(0.25)
    result = outcome(emulator, injected)
    while result.lost and time.monotonic() < deadline:
        progress(
            f"{label}: {result.answered}/{expected} chats answered, waiting", every=RECHECK_EVERY_S
        )
        time.sleep(RECHECK_EVERY_S)
        result = outcome(emulator, injected)
    time.sleep(DUPLICATE_GRACE_S)
    return outcome(emulator, injected)


# --- polls -----------------------------------------------------------------------------------


def first_polls(emulator: EmulatorClient, since: float) -> dict[int, float]:
    """For each bot id: the time of its first getUpdates call at or after `since`."""
    first: dict[int, float] = {}
    for call in emulator.calls(method="getUpdates"):
        if call["time"] >= since and call["bot_id"] not in first:
            first[call["bot_id"]] = call["time"]
    return first


def polls_between(emulator: EmulatorClient, start: float, end: float) -> dict[int, int]:
    """getUpdates calls per bot id received in [start, end]."""
    counts: dict[int, int] = defaultdict(int)
    for call in emulator.calls(method="getUpdates"):
        if start <= call["time"] <= end:
            counts[call["bot_id"]] += 1
    return dict(counts)


def wait_polled(
    emulator: EmulatorClient,
    bot_ids: Iterable[int],
    *,
    since: float,
    timeout: float,
    label: str,
) -> dict[int, float]:
    """Wait until every bot called getUpdates after `since`; returns first poll times."""
    wanted = set(bot_ids)
    deadline = time.monotonic() + timeout
    while True:
        first = first_polls(emulator, since)
        polled = wanted & first.keys()
        if polled == wanted or time.monotonic() >= deadline:
            return {bot_id: first[bot_id] for bot_id in polled}
        progress(f"{label}: {len(polled)}/{len(wanted)} bots polling")
        time.sleep(0.5)
