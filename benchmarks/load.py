"""Load scenarios: `burst` (every message at once) and `paced` (a steady rate), each
measured on Botfleet and then, in the same run and on bots of its own, on the plain
PTB peer (`benchmarks.ptb_baseline`: concurrent updates on, PTB's default pools)."""

import json
import time
from collections.abc import Callable
from dataclasses import asdict

from benchmarks import fleet as fleets
from benchmarks import traffic
from benchmarks.report import latency_summary, progress
from benchmarks.rigging import (
    Context,
    Figures,
    Params,
    cpu_by_group,
    cpu_delta,
    finish,
    fleet_up,
    rig_for,
    with_rig,
)
from benchmarks.sampler import MachineCpu, RssSampler, mib
from benchmarks.stack import Rig
from emulators.telegram import EmulatorClient

Injector = Callable[[list[str], traffic.ReplyCounter], tuple[list[traffic.Injected], float]]


def measure(
    rig: Rig,
    emulator: EmulatorClient,
    tokens: list[str],
    inject: Injector,
    *,
    drain_s: float,
    label: str,
    system: bool = False,
) -> Figures:
    """Inject, wait for the replies, and report them with the CPU and memory it took.
    `system`: also Redis and the whole system (see Rig.system_pids)."""
    counter = traffic.ReplyCounter(emulator)
    machine, cpu_before = MachineCpu(), cpu_by_group(rig, system=system)
    began = time.monotonic()
    with RssSampler(rig.system_pids if system else rig.pids) as rss:
        injected, inject_s = inject(tokens, counter)
        result = traffic.drain(emulator, injected, counter=counter, timeout=drain_s, label=label)
    window_s = time.monotonic() - began
    cpu_s = cpu_delta(cpu_before, cpu_by_group(rig, system=system))
    progress(f"{label}: {result.answered}/{result.injected} answered", force=True)
    return {
        "messages": result.injected,
        "injection_s": round(inject_s, 2),
        "injection_rate_per_s": round(result.injected / inject_s, 1) if inject_s else None,
        "answered": result.answered,
        "lost": result.lost,
        "duplicate_chats": result.duplicate_chats,
        "extra_replies": result.extra_replies,
        "wrong_text": result.wrong_text,
        "replies_per_s": round(result.replies_per_s, 1) if result.replies_per_s else None,
        "latency": latency_summary(result.latencies_ms),
        "stages": {stage: latency_summary(values) for stage, values in result.stages_ms.items()},
        "window_s": round(window_s, 2),
        "cpu_s": cpu_s,
        "cpu_cores": {name: round(sec / window_s, 3) for name, sec in cpu_s.items()},
        "rss_peak_mib": {name: mib(size) for name, size in rss.peak.items()},
        "rss_samples": rss.samples,
        "machine_cpu_busy": round(machine.busy_fraction(), 3),
    }


def botfleet_load(
    ctx: Context, rig: Rig, emulator: EmulatorClient, p: Params, inject: Injector, label: str
) -> Figures:
    fleet, start, first = fleet_up(ctx, rig, emulator, p, p.bots, label)
    figures = measure(
        rig, emulator, [b.token for b in fleet], inject, drain_s=p.drain_s, label=label
    )
    figures.update(bots=len(fleet), start_failures=len(start.failures), polling_bots=len(first))
    return finish(rig, fleet, figures)


def baseline_load(
    rig: Rig, emulator: EmulatorClient, p: Params, inject: Injector, label: str
) -> Figures:
    """The same load through plain python-telegram-bot, on bots of its own, with the
    same long-poll timeout as Botfleet's workers."""
    infos = fleets.register_bots(emulator, p.bots, "Baseline")
    since = time.time()
    progress(f"{label}: starting the PTB baseline ({p.bots} bots)", force=True)
    given = rig.baseline_start(
        [info["token"] for info in infos], poll_timeout=int(rig.stack.polling()["poll_timeout_s"])
    )
    first = traffic.wait_polled(
        emulator, [info["id"] for info in infos], since=since, timeout=60, label=label
    )
    figures = measure(
        rig, emulator, [info["token"] for info in infos], inject, drain_s=p.drain_s, label=label
    )
    figures.update(
        bots=len(infos),
        polling_bots=len(first),
        errors=baseline_errors(rig.baseline_stop()),
        given=given,
    )
    return figures


def baseline_errors(log: str) -> dict[str, int]:
    for line in reversed(log.splitlines()):
        if line.startswith('{"errors"'):
            return json.loads(line)["errors"]
    return {"(no summary: the baseline did not stop cleanly)": 1}


def _load_scenario(
    ctx: Context, p: Params, name: str, make_inject: Callable[[EmulatorClient, str], Injector]
) -> Figures:
    rig = rig_for(ctx, p, name)

    def body(emulator: EmulatorClient) -> Figures:
        inject = make_inject(emulator, name)
        result: Figures = {
            "params": asdict(p) | ctx.stack.polling(),
            "botfleet": botfleet_load(ctx, rig, emulator, p, inject, name),
        }
        if p.baseline:
            label = f"{name} baseline"
            result["baseline"] = baseline_load(
                rig, emulator, p, make_inject(emulator, label), label
            )
        return result

    return with_rig(ctx, rig, body)


def burst(ctx: Context, p: Params) -> Figures:
    """All messages at once, spread over the bots, each from its own user."""

    def make_inject(emulator: EmulatorClient, label: str) -> Injector:
        def inject(
            tokens: list[str], counter: traffic.ReplyCounter
        ) -> tuple[list[traffic.Injected], float]:
            return traffic.inject_burst(
                emulator, tokens, p.messages, users=ctx.users, counter=counter, label=label
            )

        return inject

    return _load_scenario(ctx, p, "burst", make_inject)


def paced(ctx: Context, p: Params) -> Figures:
    """A steady `rate` messages/s for `duration` s: latency when nothing queues up."""

    def make_inject(emulator: EmulatorClient, label: str) -> Injector:
        def inject(
            tokens: list[str], counter: traffic.ReplyCounter
        ) -> tuple[list[traffic.Injected], float]:
            return traffic.inject_paced(
                emulator,
                tokens,
                rate=p.rate,
                duration=p.duration,
                users=ctx.users,
                counter=counter,
                label=label,
            )

        return inject

    return _load_scenario(ctx, p, "paced", make_inject)
