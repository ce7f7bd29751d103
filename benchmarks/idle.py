"""The idle scenario: many bots started at once, then nothing to do. What does
starting cost, and what does waiting cost in memory and CPU, for the workers and for
the whole system (workers, beat, web, Redis)? The poll timeout is the product's own."""

import time
from dataclasses import asdict

from benchmarks import fleet as fleets
from benchmarks import traffic
from benchmarks.report import progress
from benchmarks.rigging import (
    Context,
    Figures,
    Params,
    cpu_by_group,
    cpu_delta,
    finish,
    fleet_up,
    rig_for,
    spread,
    with_rig,
)
from benchmarks.sampler import (
    MachineCpu,
    RssSampler,
    cpu_snapshot,
    cpu_used,
    mib,
    tree_pss,
    tree_rss,
)
from benchmarks.stack import Rig
from emulators.telegram import EmulatorClient

FLOOR_S = 5.0  # how long the workers are measured before any bot starts
SETTLE_S = 3.0  # first: beat (started just before the workers) finishes its start-up


def idle(ctx: Context, p: Params) -> Figures:
    """Many bots started at once, then nothing to do: what does waiting cost?"""
    rig = rig_for(ctx, p, "idle")

    def body(emulator: EmulatorClient) -> Figures:
        floor: Figures = {}
        if p.web:
            progress("idle: starting the web process (gunicorn)", force=True)
            rig.web_start()
        with RssSampler(rig.system_pids) as rss:
            fleet, start, first = fleet_up(
                ctx,
                rig,
                emulator,
                p,
                p.bots,
                "idle",
                before_start=lambda: floor.update(_floor(rig)),
            )
            figures = _start_figures(fleet, start, first)
            rss.reset()
            figures.update(_idle_window(rig, emulator, rss, p.duration, len(fleet)))
        figures["floor"] = floor
        figures["params"] = asdict(p) | ctx.stack.polling()
        figures["redis_measured"] = bool(rig.system_pids()["redis"])
        return finish(rig, fleet, figures)

    return with_rig(ctx, rig, body)


def _floor(rig: Rig, seconds: float = FLOOR_S) -> Figures:
    """The workers (and the whole system) with no bot running yet: what the rest of the
    idle figures sit on."""
    progress(f"idle: measuring the workers with no bot running ({seconds:g} s)", force=True)
    time.sleep(SETTLE_S)
    groups = rig.system_pids()
    before = {name: cpu_snapshot(groups[name]) for name in ("workers", "system")}
    began = time.monotonic()
    time.sleep(seconds)
    after = {name: cpu_snapshot(groups[name]) for name in ("workers", "system")}
    wall = time.monotonic() - began
    return {
        "window_s": round(wall, 1),
        "workers_cpu_cores": round(cpu_used(before["workers"], after["workers"]) / wall, 4),
        "workers_rss_mib": mib(tree_rss(groups["workers"])),
        "system_cpu_cores": round(cpu_used(before["system"], after["system"]) / wall, 4),
        "system_rss_mib": mib(tree_rss(groups["system"])),
    }


def _start_figures(
    fleet: list[fleets.FleetBot], start: fleets.StartReport, first: dict[int, float]
) -> Figures:
    to_poll = [
        first[b.telegram_id] - start.started_at[b.telegram_id]
        for b in fleet
        if b.telegram_id in first
    ]
    return {
        "bots": len(fleet),
        "start_wall_s": round(start.wall_s, 2),
        "start_failures": len(start.failures),
        "start_failure_examples": start.failures[:3],
        "task_start_call_s": spread(start.call_s),
        "start_to_first_poll_s": spread(to_poll),
        "never_polled": len(fleet) - len(first),
    }


def _idle_window(
    rig: Rig, emulator: EmulatorClient, rss: RssSampler, duration: float, bots: int
) -> Figures:
    machine, cpu_before = MachineCpu(), cpu_by_group(rig, system=True)
    window_start, began = time.time(), time.monotonic()
    while (elapsed := time.monotonic() - began) < duration:
        progress(
            lambda elapsed=elapsed: (
                f"idle: {elapsed:.0f}/{duration:.0f} s, {emulator.stats()['active_polls']} long polls open, "
                f"workers RSS {mib(rss.last.get('workers', 0))} MiB, "
                f"system RSS {mib(rss.last.get('system', 0))} MiB"
            )
        )
        time.sleep(min(0.5, max(0.0, duration - elapsed)))
    window_s, window_end = time.monotonic() - began, time.time()
    cpu_after = cpu_by_group(rig, system=True)
    pss = tree_pss(rig.system_pids()["system"])
    polls = traffic.polls_between(emulator, window_start, window_end)
    cpu_s = cpu_delta(cpu_before, cpu_after)
    return {
        "idle_window_s": round(window_s, 1),
        "rss_peak_mib": {name: mib(size) for name, size in rss.peak.items()},
        "rss_end_mib": {name: mib(size) for name, size in rss.last.items()},
        "rss_samples": rss.samples,
        "system_pss_end_mib": mib(pss) if pss is not None else None,
        "cpu_s": cpu_s,
        "cpu_cores": {name: round(sec / window_s, 3) for name, sec in cpu_s.items()},
        "bots_polled_in_window": len(polls),
        "get_updates_in_window": sum(polls.values()),
        "machine_cpu_busy": round(machine.busy_fraction(), 3),
    }
