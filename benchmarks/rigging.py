"""What every scenario shares: its parameters, a fresh `Rig` (emulator, workers, beat)
that is always torn down, starting a fleet, and reading the database and logs at the end.
"""

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import fleet as fleets
from benchmarks import traffic
from benchmarks.logscan import log_summary
from benchmarks.report import progress
from benchmarks.sampler import cpu_snapshot, cpu_used
from benchmarks.stack import Rig, Stack
from emulators.telegram import EmulatorClient

Figures = dict[str, Any]


@dataclass(frozen=True)
class Params:
    bots: int
    messages: int
    rate: float
    duration: float
    workers: int
    concurrency: int
    baseline: bool
    drain_s: float
    outage_s: float
    recovery_timeout_s: float
    start_threads: int
    supervisor: str  # "beat": a real celery-beat process; "driver": call it from here
    worker_loglevel: str = "WARNING"  # INFO logs every task with its run time (diagnosis)
    profile_workers: bool = False  # py-spy on every worker (diagnosis)
    web: bool = True  # idle: run the web process (gunicorn) too, as the whole system


@dataclass
class Context:
    stack: Stack
    users: traffic.UserIds


def fleet_label(ctx: Context, scenario: str) -> str:
    return f"{scenario} {ctx.stack.run_id}"


def rig_for(ctx: Context, p: Params, scenario: str) -> Rig:
    return Rig(
        ctx.stack,
        scenario,
        workers=p.workers,
        concurrency=p.concurrency,
        loglevel=p.worker_loglevel,
        profile=p.profile_workers,
    )


def with_rig(ctx: Context, rig: Rig, body: Callable[[EmulatorClient], Figures]) -> Figures:
    """Run `body` against a fresh emulator; stop every process of the rig afterwards."""
    emulator = None
    try:
        emulator = EmulatorClient(rig.emulator_start(), timeout=60)
        emulator.wait_until_up()
        return body(emulator)
    finally:
        fleets.tasks_stop_labelled(fleet_label(ctx, rig.scenario))
        rig.close()
        if emulator is not None:
            emulator.close()
        ctx.stack.redis_reset()


def cpu_by_group(rig: Rig, *, system: bool = False) -> dict[str, dict[int, float]]:
    """CPU snapshot per process group; with `system`, also "redis" and "system" (see
    Rig.system_pids)."""
    found = rig.system_pids() if system else rig.pids()
    groups = {name: cpu_snapshot(pids) for name, pids in found.items() if pids}
    # Only this process: every other process of the benchmark is its child.
    groups["driver"] = cpu_snapshot([os.getpid()], children=False)
    return groups


def cpu_delta(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds per group between two cpu_by_group() snapshots."""
    return {
        name: round(cpu_used(before[name], now), 2) for name, now in after.items() if name in before
    }


def fleet_up(
    ctx: Context,
    rig: Rig,
    emulator: EmulatorClient,
    p: Params,
    count: int,
    label: str,
    before_start: Callable[[], None] | None = None,
) -> tuple[list[fleets.FleetBot], fleets.StartReport, dict[int, float]]:
    """Bots and tasks in the database, workers (and beat) up, every task started and
    polling. Returns the fleet, how the start went and each bot's first poll time.
    `before_start` runs once the workers are up and before any task starts."""
    fleet = fleets.fleet_create(
        emulator=emulator, count=count, label=fleet_label(ctx, rig.scenario)
    )
    progress(f"{label}: starting {p.workers} worker(s)", force=True)
    if p.supervisor == "beat":
        rig.beat_start()  # first: its start-up is over before anything is measured
    rig.workers_start()
    if before_start is not None:
        before_start()
    start = fleets.fleet_start(fleet, threads=p.start_threads, label=label)
    since = min(start.started_at.values())
    first = traffic.wait_polled(
        emulator, [b.telegram_id for b in fleet], since=since, timeout=60 + count / 10, label=label
    )
    return fleet, start, first


def finish(rig: Rig, fleet: list[fleets.FleetBot], figures: Figures) -> Figures:
    """The database's view, then tasks stopped, workers and beat stopped, their logs read."""
    figures["reply_states"] = fleets.reply_states(fleet)
    figures["tasks"] = fleets.task_health(fleet)
    fleets.fleet_stop(fleet)
    rig.workers_stop()
    rig.beat_stop()
    figures["logs"] = log_summary(rig.worker_logs())
    return figures


def spread(values: list[float]) -> dict[str, float | int | None]:
    return {
        "samples": len(values),
        "median": round(statistics.median(values), 3) if values else None,
        "max": round(max(values), 3) if values else None,
    }
