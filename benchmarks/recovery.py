"""The recovery scenario: SIGKILL every worker mid-poll, write to the bots while none
runs, start fresh workers. How long until every bot polls again, and is every message
answered exactly once?"""

import time
from dataclasses import asdict

from benchmarks import fleet as fleets
from benchmarks import traffic
from benchmarks.report import latency_summary, progress
from benchmarks.rigging import Context, Figures, Params, finish, fleet_up, rig_for, spread, with_rig
from benchmarks.stack import Rig
from emulators.telegram import EmulatorClient

SUPERVISOR_EVERY_S = 10.0  # what beat does (SUPERVISOR_INTERVAL), for --supervisor driver


def recovery(ctx: Context, p: Params) -> Figures:
    """SIGKILL every worker mid-poll, write to the bots while none runs, start fresh
    workers: how long until every bot polls again, and is every message answered once?"""
    rig = rig_for(ctx, p, "recovery")

    def body(emulator: EmulatorClient) -> Figures:
        fleet, start, _ = fleet_up(ctx, rig, emulator, p, p.bots, "recovery")
        time.sleep(2)  # every bot is now inside a long poll
        figures = _outage(ctx, rig, emulator, fleet, p)
        figures["params"] = asdict(p) | ctx.stack.polling()
        figures["start_failures"] = len(start.failures)
        return finish(rig, fleet, figures)

    return with_rig(ctx, rig, body)


def _outage(
    ctx: Context, rig: Rig, emulator: EmulatorClient, fleet: list[fleets.FleetBot], p: Params
) -> Figures:
    counter = traffic.ReplyCounter(emulator)
    killed_at = time.time()
    rig.workers_kill()
    progress(
        f"recovery: killed all workers; writing {p.messages} messages while none runs", force=True
    )
    tokens = [b.token for b in fleet]
    injected = [
        traffic.inject_one(
            emulator, tokens[n % len(tokens)], ctx.users.take(), f"outage message {n}"
        )
        for n in range(p.messages)
    ]
    time.sleep(max(0.0, killed_at + p.outage_s - time.time()))
    restart_at = time.time()
    rig.workers_start()
    ready_at = time.time()
    first = _wait_recovered(emulator, fleet, counter, killed_at, p)
    result = traffic.drain(
        emulator, injected, counter=counter, timeout=max(5.0, p.drain_s), label="recovery"
    )
    recovered = [at - killed_at for at in first.values()]
    return {
        "bots": len(fleet),
        "outage_s": round(restart_at - killed_at, 1),
        "workers_ready_after_kill_s": round(ready_at - killed_at, 1),
        "bots_polled_again": len(first),
        "kill_to_all_polling_s": round(max(recovered), 1) if len(first) == len(fleet) else None,
        "kill_to_poll_s": spread(recovered),
        "outage_messages": result.injected,
        "answered": result.answered,
        "lost": result.lost,
        "duplicate_chats": result.duplicate_chats,
        "wrong_text": result.wrong_text,
        "latency": latency_summary(result.latencies_ms),
    }


def _wait_recovered(
    emulator: EmulatorClient,
    fleet: list[fleets.FleetBot],
    counter: traffic.ReplyCounter,
    killed_at: float,
    p: Params,
) -> dict[int, float]:
    """Until every bot polled again after the kill (bounded), running the supervisor
    from here every 10 s when no beat process does it. The bound leaves room for a
    killed poller's lease (poll timeout + grace) to expire and the supervisor to run."""
    from django.conf import settings

    lease_s = settings.TELEGRAM_POLL_TIMEOUT + settings.POLL_LEASE_GRACE
    timeout = max(p.recovery_timeout_s, lease_s + 2 * SUPERVISOR_EVERY_S + 30)
    ids, began, revived_at = {b.telegram_id for b in fleet}, time.monotonic(), 0.0
    while True:
        if p.supervisor == "driver" and time.monotonic() - revived_at >= SUPERVISOR_EVERY_S:
            _supervise()
            revived_at = time.monotonic()
        first = {k: v for k, v in traffic.first_polls(emulator, killed_at).items() if k in ids}
        replies = counter.count()
        progress(
            f"recovery: {time.time() - killed_at:.0f} s since the kill, {len(first)}/{len(ids)} "
            f"bots polled again, {replies}/{p.messages} replies"
        )
        if (
            len(first) == len(ids) and replies >= p.messages
        ) or time.monotonic() - began > timeout:
            return first
        time.sleep(0.5)


def _supervise() -> None:
    from django.db import close_old_connections

    from bots import supervisor
    from conversations.tasks import claims_reap

    supervisor.pollers_revive()
    claims_reap.delay()  # the reaper's work runs in a worker, as under beat
    close_old_connections()
