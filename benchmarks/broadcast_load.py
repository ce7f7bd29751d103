"""Broadcast benchmark: one bot sends a scheduled message to N chats while another
bot answers live messages, on Botfleet's real workers, beat and the Telegram emulator.

    python -m benchmarks.broadcast_load [--chats N] [--quick] [--live-rate R]
        [--idle S] [--workers K] [--concurrency C] [--lanes L] [--json FILE] [--keep-files]

The broadcast is a one-off ScheduledMessage to "every active chat of the bot", fired
by a real celery-beat (DatabaseScheduler) a couple of seconds after it is saved, and
sent by the workers on the "scheduled" queue. Meanwhile people write to a second bot
at a steady rate; their reply latency is compared with the same traffic measured
before the broadcast (idle). Targets (issue 5), for 10,000 chats: done within 370 s
(Telegram's 30 messages/s per bot make 333 s the floor), no chat missed or sent twice,
live p99 at most twice the idle p99. Other sizes scale the 370 s as N/30 x 370/333.

Progress goes to stderr about once a second; the report to stdout. Set-up (temporary
SQLite or DATABASE_URL, embedded Redis or REDIS_URL, the emulator, workers, beat) and
tear-down come from benchmarks.stack, shared with benchmarks.telegram_load.
"""

import argparse
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import runner
from emulators._common.state import max_in_window

FULL_CHATS = 10_000
QUICK_CHATS = 200
PER_BOT_PER_S = 30  # Telegram's limit, and bots.ratelimit.PER_BOT
TARGET_S_AT_10K = 370.0
FLOOR_S_AT_10K = FULL_CHATS / PER_BOT_PER_S
FIRST_CHAT_ID = 3_000_000_000  # the broadcast's users; live users come from traffic.UserIds
FIRE_IN_S = 3.0  # the one-off is due this long after it is saved
WARM_UP_S = 3.0  # live traffic before the idle measurement, not counted


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.broadcast_load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, help=f"broadcast size (default {FULL_CHATS:,}; --quick {QUICK_CHATS})")
    parser.add_argument("--quick", action="store_true", help=f"smoke-test size: {QUICK_CHATS} chats, 8 s idle")
    parser.add_argument("--live-rate", type=float, default=2.0, help="live messages per second (default 2)")
    parser.add_argument("--idle", type=float, help="seconds of live traffic measured before (default 20; --quick 8)")
    runner.worker_options(parser)
    parser.add_argument("--lanes", type=int, default=2, help="sending tasks per broadcast (default 2)")
    parser.add_argument("--json", type=Path, help="also save the figures to this JSON file")
    parser.add_argument("--keep-files", action="store_true", help="keep the logs and database (path printed)")
    args = parser.parse_args(argv)
    args.chats = args.chats or (QUICK_CHATS if args.quick else FULL_CHATS)
    args.idle = args.idle or (8.0 if args.quick else 20.0)
    for name in ("chats", "live_rate", "idle", "workers", "concurrency", "lanes"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


# --- set-up ---------------------------------------------------------------------------------


def chats_create(emulator: Any, bot_pk: int, count: int) -> list[int]:
    """`count` users on the emulator (each a private chat) and the bot's Chat rows."""
    from benchmarks.report import progress
    from conversations.models import Chat

    ids = list(range(FIRST_CHAT_ID, FIRST_CHAT_ID + count))
    with ThreadPoolExecutor(8, thread_name_prefix="users") as pool:
        for done, _ in enumerate(pool.map(lambda i: emulator.add_user(user_id=i), ids), start=1):
            progress(f"set-up: {done}/{count} users on the emulator")
    Chat.objects.bulk_create(
        [Chat(bot_id=bot_pk, telegram_id=i, type=Chat.Type.PRIVATE, title=f"User {i}") for i in ids],
        batch_size=2000,
    )
    return ids


def broadcast_schedule(bot_pk: int) -> int:
    from datetime import timedelta

    from django.utils import timezone

    from conversations.models import ScheduledMessage
    from conversations.scheduling import schedule_sync

    scheduled = ScheduledMessage.objects.create(
        name="benchmark broadcast", bot_id=bot_pk, audience=ScheduledMessage.Audience.ALL,
        text="Scheduled **announcement**: the benchmark says hello.",
        kind=ScheduledMessage.Kind.ONCE, run_at=timezone.now() + timedelta(seconds=FIRE_IN_S),
    )
    schedule_sync(scheduled=scheduled)  # beat picks the PeriodicTask up from here
    return scheduled.pk


# --- the two phases ---------------------------------------------------------------------------


def live_traffic(emulator: Any, token: str, *, rate: float, users: Any, label: str,
                 keep_going: Any, status: Any, injected: list[Any]) -> list[Any]:
    """One live message every 1/rate s while keep_going() says so, with progress;
    appended to `injected` as they go (the progress line counts them)."""
    from benchmarks import traffic
    from benchmarks.report import progress

    began, n = time.monotonic(), 0
    while keep_going():
        delay = began + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, 0.25))
            progress(status)
            continue
        injected.append(traffic.inject_one(emulator, token, users.take(), f"{label} message {n}"))
        n += 1
        progress(status)
    return injected


def live_outcome(emulator: Any, injected: list[Any], label: str, timeout: float = 60) -> Any:
    """Wait for every live message's reply (per chat: the emulator's global counter
    would count the broadcast too), then a moment more for duplicates to show."""
    from benchmarks import traffic
    from benchmarks.report import progress

    deadline = time.monotonic() + timeout
    result = traffic.outcome(emulator, injected)
    while result.lost and time.monotonic() < deadline:
        progress(f"{label}: {result.answered}/{len(injected)} live messages answered")
        time.sleep(0.5)
        result = traffic.outcome(emulator, injected)
    time.sleep(traffic.DUPLICATE_GRACE_S)
    return traffic.outcome(emulator, injected)


class BroadcastWatch:
    """Progress of the broadcast from the emulator's cheap counter and the run row."""

    def __init__(self, emulator: Any, token: str, scheduled_pk: int, chats: int) -> None:
        self.emulator, self.token, self.scheduled_pk, self.chats = emulator, token, scheduled_pk, chats
        self.began = time.monotonic()
        self._last = (self.began, 0)
        self.live_written = 0

    def sent(self) -> int:
        return int(self.emulator.bot_status(self.token)["sent_count"])

    def run_state(self) -> str:
        from conversations.models import ScheduledRun

        return ScheduledRun.objects.filter(scheduled_id=self.scheduled_pk).values_list("state", flat=True).first() or "not fired"

    def line(self) -> str:
        now, sent = time.monotonic(), self.sent()
        then, before = self._last
        self._last = (now, sent)
        rate = (sent - before) / (now - then) if now > then else 0.0
        return (f"broadcast: {sent:,}/{self.chats:,} sent, {rate:.1f}/s, run {self.run_state()}, "
                f"{now - self.began:.0f} s; live messages written: {self.live_written}")


def broadcast_figures(emulator: Any, token: str, scheduled_pk: int, chat_ids: list[int]) -> dict[str, Any]:
    from benchmarks.report import percentile
    from conversations.models import ScheduledMessage, ScheduledRun

    sent = [m for m in emulator.sent_messages(token) if m.get("method", "sendMessage") == "sendMessage"]
    per_chat = Counter(m["chat_id"] for m in sent)
    times = sorted(m["time"] for m in sent)
    run = ScheduledRun.objects.filter(scheduled_id=scheduled_pk).first()
    scheduled = ScheduledMessage.objects.get(pk=scheduled_pk)
    slot = run.slot.timestamp() if run else None
    seconds = (times[-1] - slot) if (times and slot) else None
    n = len(chat_ids)
    return {
        "chats": n,
        "received": len(per_chat),
        "lost": sum(1 for i in chat_ids if per_chat[i] == 0),
        "duplicates": sum(1 for count in per_chat.values() if count > 1),
        "run_state": run.state if run else "never fired",
        "run_counts": {"sent": run.sent, "failed": run.failed, "skipped": run.skipped} if run else {},
        "lanes": run.lanes if run else None,
        "fired_after_s": round(run.created_at.timestamp() - slot, 2) if run and slot else None,
        "scheduled_to_last_send_s": round(seconds, 1) if seconds is not None else None,
        "first_to_last_send_s": round(times[-1] - times[0], 1) if len(times) > 1 else None,
        "sends_per_s": round((len(times) - 1) / (times[-1] - times[0]), 1) if len(times) > 1 else None,
        "max_sends_in_1s": max_in_window(times, 1.0),
        "send_gap_p99_ms": round(1000 * (percentile(list(_gaps(times)), 99) or 0), 1),
        "floor_s": round(n / PER_BOT_PER_S, 1),
        "target_s": round(n / PER_BOT_PER_S * TARGET_S_AT_10K / FLOOR_S_AT_10K, 1),
        "last_result": scheduled.last_result,
    }


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


# --- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    from benchmarks import fleet as fleets
    from benchmarks import traffic
    from benchmarks.report import latency_summary, progress
    from benchmarks.stack import Rig, Stack
    from emulators.telegram import EmulatorClient

    os.environ["SCHEDULED_BROADCAST_LANES"] = str(args.lanes)  # read by the workers' settings
    stack, rig, figures, interrupted = Stack(keep_files=args.keep_files), None, {}, False
    began = time.monotonic()
    try:
        progress("set-up: database, Redis, migrations", force=True)
        stack.open()
        rig = Rig(stack, "broadcast", workers=args.workers,
                  concurrency=args.concurrency)
        emulator = EmulatorClient(rig.emulator_start())
        [live] = fleets.fleet_create(emulator=emulator, count=1, label=f"live {stack.run_id}")
        [caster] = fleets.fleet_create(emulator=emulator, count=1, label=f"broadcaster {stack.run_id}")
        chat_ids = chats_create(emulator, caster.bot_pk, args.chats)
        progress(f"set-up: {args.workers} worker(s), beat", force=True)
        rig.workers_start()
        rig.beat_start()
        fleets.fleet_start([live], threads=1, label="live bot")
        traffic.wait_polled(emulator, [live.telegram_id], since=time.time() - 60, timeout=60, label="live bot")
        users = traffic.UserIds()

        # Warm-up, not measured: the first replies pay for connections and imports.
        warm_until = time.monotonic() + WARM_UP_S
        live_outcome(emulator, live_traffic(
            emulator, live.token, rate=args.live_rate, users=users, label="warm-up", injected=[],
            keep_going=lambda: time.monotonic() < warm_until, status="warm-up"), "warm-up")
        progress(f"idle: {args.idle:g} s of live messages at {args.live_rate:g}/s, no broadcast", force=True)
        idle_until = time.monotonic() + args.idle
        injected = live_traffic(emulator, live.token, rate=args.live_rate, users=users, label="idle",
                                keep_going=lambda: time.monotonic() < idle_until, injected=[],
                                status=lambda: f"idle: {time.monotonic() - idle_until + args.idle:.0f}/{args.idle:g} s")
        idle = live_outcome(emulator, injected, "idle")

        progress(f"broadcast: {args.chats:,} chats, due in {FIRE_IN_S:g} s (beat fires it)", force=True)
        scheduled_pk = broadcast_schedule(caster.bot_pk)
        watch = BroadcastWatch(emulator, caster.token, scheduled_pk, args.chats)
        deadline = time.monotonic() + max(120.0, 3 * args.chats / PER_BOT_PER_S + 60)

        def broadcasting() -> bool:
            watch.live_written = len(loaded)
            return watch.run_state() not in ("done", "failed") and time.monotonic() < deadline

        loaded: list[Any] = []
        live_traffic(emulator, live.token, rate=args.live_rate, users=users, label="load",
                     keep_going=broadcasting, status=watch.line, injected=loaded)
        under_load = live_outcome(emulator, loaded, "under load")
        figures = {
            "broadcast": broadcast_figures(emulator, caster.token, scheduled_pk, chat_ids),
            "live_idle": {**latency_summary(idle.latencies_ms), "lost": idle.lost, "duplicates": idle.duplicate_chats},
            "live_under_load": {**latency_summary(under_load.latencies_ms), "lost": under_load.lost,
                                "duplicates": under_load.duplicate_chats},
            "setup": {"chats": args.chats, "workers": args.workers, "concurrency": args.concurrency,
                      "lanes": args.lanes, "live_rate": args.live_rate, "run_s": round(time.monotonic() - began)},
        }
    except (KeyboardInterrupt, runner.Interrupted):
        interrupted = True
        progress("interrupted: stopping everything", force=True)
    finally:
        if rig is not None:
            rig.close()
        stack.close()
    return figures, interrupted


def render(figures: dict[str, Any], args: argparse.Namespace) -> str:
    from benchmarks.report import Fig, section, table, target

    b, idle, load = figures["broadcast"], figures["live_idle"], figures["live_under_load"]
    p99_ratio = (load["p99_ms"] / idle["p99_ms"]) if load.get("p99_ms") and idle.get("p99_ms") else None
    size = "smoke size, not the issue's 10,000" if b["chats"] < FULL_CHATS else "the issue's size"
    figs = [
        Fig("run: state and counts", lambda f: f"{f['run_state']} {f['run_counts']}"),
        Fig("lanes", lambda f: f["lanes"]),
        Fig("beat fired it, after its time (s)", lambda f: f["fired_after_s"], digits=2),
        Fig(
            "scheduled time -> last send (s)", lambda f: f["scheduled_to_last_send_s"],
            target(f"<= {b['target_s']}", b["scheduled_to_last_send_s"], b["target_s"], at_most=True)
            + f" (floor {b['floor_s']} s at 30/s)",
        ),
        Fig("first -> last send (s)", lambda f: f["first_to_last_send_s"]),
        Fig("sends/s", lambda f: f["sends_per_s"]),
        Fig("most sends in any 1 s", lambda f: f["max_sends_in_1s"], f"limit {PER_BOT_PER_S}"),
        Fig("gap between sends p99 (ms)", lambda f: f["send_gap_p99_ms"]),
        Fig("chats reached", lambda f: f["received"]),
        Fig("lost", lambda f: f["lost"], target("0", b["lost"], 0, at_most=True)),
        Fig("sent twice", lambda f: f["duplicates"], target("0", b["duplicates"], 0, at_most=True)),
    ]
    live = [
        Fig("latency p50 (ms)", lambda f: f["p50_ms"]),
        Fig("latency p95 (ms)", lambda f: f["p95_ms"]),
        Fig(
            "latency p99 (ms)", lambda f: f["p99_ms"],
            target("at most 2x", p99_ratio, 2.0, at_most=True), ratio=True,
        ),
        Fig("latency max (ms)", lambda f: f["max_ms"]),
        Fig("replies", lambda f: f["samples"]),
        Fig("lost", lambda f: f["lost"]),
    ]
    header = ("figure", "idle", "during the broadcast", "broadcast / idle", "target")
    return "\n".join([
        section(f"broadcast of {b['chats']:,} chats ({size})", [table(figs, b)]),
        section(
            f"live replies of another bot, {args.live_rate:g} message(s)/s",
            [
                table(live, idle, load, header=header, flip=True),
                "  With few samples p99 is close to the maximum: one slow reply moves it.",
            ],
        ),
    ])


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    runner.sigterm_as_interrupt()
    figures, interrupted = run(args)
    if not figures:
        print("no figures: the run was interrupted or failed during set-up", file=sys.stderr)
        return 130 if interrupted else 1
    print(render(figures, args))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    b = figures["broadcast"]
    return 0 if b["run_state"] == "done" and not b["lost"] and not b["duplicates"] else 1


if __name__ == "__main__":
    sys.exit(main())
