"""Traffic for the AI benchmark (`benchmarks.ai_load`) and what came back.

Two kinds of load on the Telegram emulator:

- `ClosedLoop`: N users, each in a private chat of their own, each writing their next
  message as soon as the previous one was answered (a thread and an HTTP connection
  per user, blocking in the emulator's `wait_for_sent`), until a deadline;
- paced messages from distinct users (`benchmarks.traffic.inject_paced`).

`analyse` then matches every message to its reply with the emulator's own records
(the update's `injected_at`/`delivered_at`, the `sendChatAction` and the reply's
`time`: one clock) and sorts the replies into AI answers (the Gemini emulator echoes
"You said: <text>"), the persona's fallback, and anything else.
"""

import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from benchmarks.report import latency_summary, progress
from emulators.gemini import GeminiEmulatorClient
from emulators.telegram import EmulatorClient

AI, FALLBACK, OTHER = "ai", "fallback", "other"


@dataclass(frozen=True)
class Sent:
    """One message a user wrote, and which of its chat's replies should answer it."""

    token: str
    chat_id: int
    update_id: int
    text: str
    nth: int = 0  # index of its reply among the chat's replies (0: the first)


def kind_of(reply_text: str, message_text: str, fallback: str) -> str:
    if f"You said: {message_text}" in reply_text:
        return AI
    if reply_text.strip() == fallback.strip():
        return FALLBACK
    return OTHER


# --- closed loop ---------------------------------------------------------------------------


class ClosedLoop:
    """`users` = [(bot token, user id)], one thread each. Every wait is bounded: a user
    stops at `until` (monotonic) or when a reply does not come within `reply_timeout`
    (it is then counted in `timeouts` and the user writes no more, so a late reply
    cannot be taken for the answer to a later message)."""

    def __init__(
        self,
        url: str,
        users: list[tuple[str, int]],
        *,
        until: float,
        reply_timeout: float,
        label: str,
        fallback: str,
    ) -> None:
        self.url, self.users, self.until = url, users, until
        self.reply_timeout, self.label, self.fallback = reply_timeout, label, fallback
        self.sent: list[Sent] = []
        self.kinds: Counter[str] = Counter()  # first replies as the users saw them
        self.timeouts = 0
        self.errors: Counter[str] = Counter()
        self.waiting = 0  # users with a message out and no reply yet
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for n, (token, user_id) in enumerate(self.users):
            thread = threading.Thread(
                target=self._user, args=(token, user_id), name=f"user-{n}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def alive(self) -> int:
        return sum(1 for t in self._threads if t.is_alive())

    def stop(self, timeout: float = 5.0) -> None:
        """Ask every user to stop, wait up to `timeout` s in all (they are daemons: one
        still blocked in a long poll ends with the emulator)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _user(self, token: str, user_id: int) -> None:
        client = EmulatorClient(self.url, timeout=30)
        try:
            seen, n = 0, 0
            while not self._stop.is_set() and time.monotonic() < self.until:
                text = f"{self.label} u{user_id} m{n}"
                update = client.send_private_message(token, text, user_id=user_id)
                chat_id = update["message"]["chat"]["id"]
                with self._lock:
                    self.sent.append(Sent(token, chat_id, update["update_id"], text, nth=seen))
                    self.waiting += 1
                n += 1
                try:
                    got = client.wait_for_sent(
                        token, count=seen + 1, chat_id=chat_id, timeout=self.reply_timeout
                    )
                except TimeoutError:
                    with self._lock:
                        self.timeouts += 1
                        self.waiting -= 1
                    return
                with self._lock:
                    self.waiting -= 1
                    self.kinds[kind_of(got[seen].get("text") or "", text, self.fallback)] += 1
                seen = len(got)
        except Exception as error:  # counted and reported; the other users go on
            with self._lock:
                self.errors[f"{type(error).__name__}: {str(error)[:120]}"] += 1
        finally:
            client.close()

    def status(self, began: float) -> str:
        with self._lock:
            kinds, sent, waiting = dict(self.kinds), len(self.sent), self.waiting
        elapsed = time.monotonic() - began
        replies = sum(kinds.values())
        return (
            f"{self.label}: {elapsed:.0f} s, {sent} messages, {replies} replies "
            f"(AI {kinds.get(AI, 0)}, fallback {kinds.get(FALLBACK, 0)}), "
            f"{replies / elapsed if elapsed > 0 else 0:.1f}/s, {waiting} waiting, "
            f"{self.timeouts} timed out"
        )


def run_closed_loop(loop: ClosedLoop, *, grace: float) -> float:
    """Start the users, show progress until they are done (at most until + reply
    timeout + grace), stop them; returns the time.time() the load began."""
    began_wall, began = time.time(), time.monotonic()
    loop.start()
    hard_stop = loop.until + loop.reply_timeout + grace
    try:
        while loop.alive() and time.monotonic() < hard_stop:
            progress(lambda: loop.status(began))
            time.sleep(0.25)
    finally:
        loop.stop()
    progress(loop.status(began), force=True)
    return began_wall


# --- matching messages and replies ---------------------------------------------------------


@dataclass
class AiOutcome:
    messages: int = 0
    answered: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    reply_times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    injected_at: list[float] = field(default_factory=list)
    stages_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    duplicate_chats: int = 0  # chats with more replies than messages
    extra_replies: int = 0
    other_examples: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.messages - self.answered

    def all_latencies(self) -> list[float]:
        return [v for values in self.latencies_ms.values() for v in values]

    def within(self, seconds: float) -> int:
        return sum(1 for v in self.all_latencies() if v <= seconds * 1000)

    def figures(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "answered": self.answered,
            "lost": self.lost,
            "ai": self.kinds.get(AI, 0),
            "fallback": self.kinds.get(FALLBACK, 0),
            "other": self.kinds.get(OTHER, 0),
            "other_examples": self.other_examples,
            "duplicate_chats": self.duplicate_chats,
            "extra_replies": self.extra_replies,
            "latency": latency_summary(self.all_latencies()),
            "latency_ai": latency_summary(self.latencies_ms.get(AI, [])),
            "latency_fallback": latency_summary(self.latencies_ms.get(FALLBACK, [])),
            "stages": {name: latency_summary(v) for name, v in self.stages_ms.items()},
        }


def analyse(emulator: EmulatorClient, messages: list[Sent], fallback: str) -> AiOutcome:
    result = AiOutcome(messages=len(messages))
    by_token: dict[str, list[Sent]] = defaultdict(list)
    for message in messages:
        by_token[message.token].append(message)
    for token, items in by_token.items():
        _bot(emulator, token, items, fallback, result)
    return result


def _bot(
    emulator: EmulatorClient, token: str, items: list[Sent], fallback: str, result: AiOutcome
) -> None:
    records = {record["update_id"]: record for record in emulator.updates(token)}
    replies: dict[int, list[dict]] = defaultdict(list)
    for sent in emulator.sent_messages(token):
        if sent.get("method", "sendMessage") == "sendMessage":
            replies[sent["chat_id"]].append(sent)
    typing: dict[int, list[float]] = defaultdict(list)
    for action in emulator.chat_actions(token):
        typing[action["chat_id"]].append(action["time"])
    per_chat = Counter(item.chat_id for item in items)
    for chat_id, count in per_chat.items():
        extra = len(replies.get(chat_id, [])) - count
        if extra > 0:
            result.duplicate_chats += 1
            result.extra_replies += extra
    for item in items:
        record = records.get(item.update_id, {})
        at = record.get("injected_at")
        if at is not None:
            result.injected_at.append(at)
        chat_replies = replies.get(item.chat_id, [])
        if len(chat_replies) <= item.nth:
            continue
        reply = chat_replies[item.nth]
        kind = kind_of(reply.get("text") or "", item.text, fallback)
        result.answered += 1
        result.kinds[kind] += 1
        result.reply_times[kind].append(reply["time"])
        if kind == OTHER and len(result.other_examples) < 3:
            result.other_examples.append((reply.get("text") or "")[:120])
        if at is None:
            continue
        result.latencies_ms[kind].append((reply["time"] - at) * 1000)
        delivered = record.get("delivered_at")
        if delivered is None:
            continue
        result.stages_ms["written -> delivered by getUpdates"].append((delivered - at) * 1000)
        typed = next(
            (t for t in typing.get(item.chat_id, []) if delivered <= t <= reply["time"]), None
        )
        if typed is not None:
            result.stages_ms["delivered -> sendChatAction"].append((typed - delivered) * 1000)
            result.stages_ms["sendChatAction -> sendMessage (AI call)"].append(
                (reply["time"] - typed) * 1000
            )
        else:
            result.stages_ms["delivered -> sendMessage (no typing)"].append(
                (reply["time"] - delivered) * 1000
            )


def rate_in(times: list[float], start: float, end: float) -> float | None:
    """Events per second with a time in [start, end]."""
    if end <= start:
        return None
    return sum(1 for t in times if start <= t <= end) / (end - start)


# --- the Gemini emulator's and the database's view -------------------------------------------


def gemini_figures(gemini: GeminiEmulatorClient) -> dict[str, object]:
    """What the Gemini emulator saw: requests, their statuses (None: no answer sent,
    e.g. still in flight), the busiest 60 s and 1 s windows, counts per minute."""
    records = gemini.requests()
    times = sorted(r.time for r in records)
    return {
        "requests": len(records),
        "statuses": dict(Counter(str(r.status) for r in records)),
        "actions": dict(Counter(r.action for r in records)),
        "max_in_60s": gemini.max_requests_in_window(60.0),
        "max_in_1s": gemini.max_requests_in_window(1.0),
        "per_minute": gemini.requests_per_minute(),
        "first_at": times[0] if times else None,
        "last_at": times[-1] if times else None,
    }


def reply_errors(bot_pks: list[int], top: int = 5) -> dict[str, int]:
    """Why replies were not the AI's: the `error` stored on the bots' outgoing messages
    (digits masked so one cause counts once)."""
    from conversations.models import Message

    rows = Message.objects.filter(bot_id__in=bot_pks, direction="out").exclude(error="")
    counts = Counter(
        re.sub(r"\d+", "#", error)[:140] for error in rows.values_list("error", flat=True)
    )
    return dict(counts.most_common(top))


def credential_figures(credential_pk: int) -> dict[str, object]:
    from credentials.models import AICredential

    c = AICredential.objects.get(pk=credential_pk)
    return {
        "requests_total": c.requests_total,
        "failures_total": c.failures_total,
        "last_error": c.last_error,
    }
