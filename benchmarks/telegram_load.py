"""Load benchmark: Botfleet's real workers against the Telegram emulator on loopback.

    python -m benchmarks.telegram_load [--scenario burst|paced|idle|recovery|all]
        [--bots N] [--messages M] [--rate R] [--duration S] [--workers K]
        [--concurrency C] [--baseline/--no-baseline] [--web/--no-web]
        [--poll-timeout S] [--quick] [--json FILE]

Sets up everything itself (a temporary SQLite database or DATABASE_URL, an embedded
Redis or REDIS_URL, the emulator, K Celery workers and celery-beat; for idle, the web
process too), prints a progress line about every second on stderr and a report on
stdout, and stops every process it started, also on Ctrl-C. Burst and paced run the
PTB peer (benchmarks/ptb_baseline.py) in the same run and print Botfleet/peer ratios.
See benchmarks/README.md for what each figure means.
"""

import argparse
import sys
from typing import Any

from benchmarks import runner
from benchmarks.report import (
    Fig,
    Figures,
    fmt,
    logs_line,
    peer_given,
    peer_ratio_target,
    renderer,
    section,
    stage_lines,
    table,
    target,
)

ORDER = ["burst", "paced", "idle", "recovery"]
TARGET_BURST_RPS = 300
TARGET_BURST_PEER_RATIO = 1.0  # Botfleet replies/s over the PTB peer's
TARGET_PACED_P50_MS = 30
TARGET_PACED_P99_MS = 150
TARGET_IDLE_RSS_MIB = 1024
TARGET_IDLE_CPU_CORES = 0.1
TARGET_RECOVERY_S = 60

# Per scenario: the sizes, and the --quick smoke-test sizes.
FULL: dict[str, dict[str, float]] = {
    "burst": {"bots": 100, "messages": 2000},
    "paced": {"bots": 10, "rate": 50, "duration": 20},
    "idle": {"bots": 1000, "duration": 60},
    "recovery": {"bots": 20, "messages": 20},
}
QUICK: dict[str, dict[str, float]] = {
    "burst": {"bots": 10, "messages": 100},
    "paced": {"bots": 5, "rate": 20, "duration": 5},
    "idle": {"bots": 100, "duration": 20},
    "recovery": {"bots": 5, "messages": 5},
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.telegram_load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", choices=[*ORDER, "all"], default="all")
    parser.add_argument("--bots", type=int, help="bots per scenario (default: the scenario's own)")
    parser.add_argument(
        "--messages", type=int, help="burst: messages; recovery: messages sent during the outage"
    )
    parser.add_argument("--rate", type=float, help="paced: messages per second (default 50)")
    parser.add_argument(
        "--duration", type=float, help="paced: seconds of load (20); idle: idle seconds (60)"
    )
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run burst/paced through plain python-telegram-bot (default on)",
    )
    parser.add_argument(
        "--web",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="idle: run the web process (gunicorn, 3 workers, as in production) as part of "
        "the whole system (default on)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-test sizes (10-bot burst of 100, 5 s paced, 100 idle bots for 20 s or one "
        "poll timeout + 5 s, 5-bot recovery)",
    )
    parser.add_argument(
        "--supervisor",
        choices=["beat", "driver"],
        default="beat",
        help="run the supervisor in a real celery-beat (default) or call it from the driver",
    )
    parser.add_argument(
        "--drain", type=float, help="seconds to wait for the last replies (default 60; --quick 30)"
    )
    parser.add_argument(
        "--outage", type=float, default=5.0, help="recovery: seconds with no worker (default 5)"
    )
    parser.add_argument(
        "--start-threads", type=int, default=16, help="threads pressing Start at once (default 16)"
    )
    runner.worker_options(parser)
    runner.common_options(parser)
    return runner.options_parse(
        parser, argv,
        positive=("bots", "messages", "rate", "duration", "workers", "concurrency", "start_threads"),
    )


def params_for(name: str, args: argparse.Namespace) -> Any:
    from benchmarks.scenarios import Params

    sizes = dict((QUICK if args.quick else FULL)[name])
    if args.quick and name == "idle":
        from django.conf import settings

        # Every bot should poll at least once in the window, whatever the poll timeout.
        sizes["duration"] = max(sizes["duration"], settings.TELEGRAM_POLL_TIMEOUT + 5)

    def pick(key: str, default: float) -> float:
        given = getattr(args, key)
        return given if given is not None else sizes.get(key, default)

    return Params(
        bots=int(pick("bots", 10)),
        messages=int(pick("messages", 20)),
        rate=pick("rate", 50),
        duration=pick("duration", 20),
        workers=args.workers,
        concurrency=args.concurrency,
        baseline=args.baseline and name in ("burst", "paced"),
        drain_s=args.drain or (30.0 if args.quick else 60.0),
        outage_s=args.outage,
        recovery_timeout_s=90.0 if args.quick else 120.0,
        start_threads=args.start_threads,
        supervisor=args.supervisor,
        worker_loglevel=args.worker_loglevel,
        profile_workers=args.profile_workers,
        web=args.web,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from benchmarks.scenarios import SCENARIOS, Context
    from benchmarks.traffic import UserIds

    outcome = runner.scenarios_run(
        names=ORDER if args.scenario == "all" else [args.scenario],
        keep_files=args.keep_files,
        context=lambda stack: Context(stack=stack, users=UserIds()),
        scenario=lambda ctx, name: SCENARIOS[name](ctx, params_for(name, args)),
        poll_timeout=args.poll_timeout,
    )
    setup = (
        f"{args.workers} worker(s) x {args.concurrency} threads; supervisor: {args.supervisor}; "
        f"{'--quick smoke sizes' if args.quick else 'full sizes'}"
    )
    return runner.report_finish(outcome, runner.machine_header(outcome, setup), render, args.json)


# --- the report: which figures each scenario shows ------------------------------------------


def load_figs(
    *, rate: str = "", lost: str = "", duplicates: str = "", p50: str = "", p99: str = "", rss: str = ""
) -> list[Fig]:
    """Burst and paced, Botfleet beside the PTB peer; the targets' notes as given."""

    def latency(key: str, note: str = "") -> Fig:
        return Fig(f"latency {key[:-3]} (ms)", lambda f: f["latency"][key], note, ratio=True)

    def cores(group: str) -> Fig:
        return Fig(f"CPU, {group} (cores)", lambda f: f["cpu_cores"].get(group), digits=2)

    return [
        Fig("replies/s (first injection to last reply)", lambda f: f["replies_per_s"], rate, ratio=True),
        Fig("lost replies", lambda f: f"{f['lost']} of {f['messages']}", lost),
        Fig("chats with duplicate replies", lambda f: f["duplicate_chats"], duplicates),
        Fig("replies not echoing the message", lambda f: f["wrong_text"]),
        Fig("latency samples (one per answered message)", lambda f: f["latency"]["samples"]),
        latency("p50_ms", p50),
        latency("p95_ms"),
        latency("p99_ms", p99),
        latency("max_ms"),
        Fig(
            "peak RSS, system under test (MiB)", lambda f: f["rss_peak_mib"].get("workers"),
            rss, peer=lambda f: f["rss_peak_mib"].get("baseline"),
        ),
        Fig(
            "CPU, system under test (cores)", lambda f: f["cpu_cores"].get("workers"), digits=2,
            peer=lambda f: f["cpu_cores"].get("baseline"),
        ),
        cores("emulator"),
        cores("driver"),
        Fig("machine CPU busy (all cores, anyone's)", lambda f: f"{f['machine_cpu_busy']:.0%}"),
        Fig(
            "injection",
            lambda f: f"{f['messages']} in {f['injection_s']} s ({f['injection_rate_per_s']}/s)",
        ),
        Fig("measured window (s)", lambda f: f["window_s"]),
    ]


def load_notes(ours: Figures, theirs: Figures | None) -> list[str]:
    notes = [
        f"  Botfleet: {ours['bots']} bots ({ours['polling_bots']} polling before the load), "
        f"start failures {ours['start_failures']}; beat CPU {fmt(ours['cpu_cores'].get('beat'), digits=3)} cores",
        f"  Botfleet message log (incoming by reply state): {ours['reply_states']}",
        f"  Botfleet tasks: {ours['tasks']}",
        logs_line("Botfleet worker/beat logs", ours["logs"]),
    ]
    if theirs:
        notes.append(f"  PTB baseline (the peer), as given: {peer_given(theirs.get('given'))}")
        notes.append(f"  PTB baseline handler errors: {theirs['errors'] or 'none'}")
    for who, figures in (("Botfleet", ours), ("PTB baseline", theirs)):
        if figures:
            notes += stage_lines(f"{who} latency by stage", figures["stages"])
    return notes


def render_load(kind: str, figures: Figures) -> str:
    """Burst or paced: Botfleet beside the peer, with the kind's targets."""
    ours, theirs, p = figures["botfleet"], figures.get("baseline"), figures["params"]
    notes = {"rss": f"{ours['rss_samples']} samples"}
    if kind == "burst":
        rate = ours["replies_per_s"]
        notes["rate"] = target(f">= {TARGET_BURST_RPS}", rate, TARGET_BURST_RPS, at_most=False) + (
            "; " + peer_ratio_target(rate, theirs["replies_per_s"], TARGET_BURST_PEER_RATIO) if theirs else ""
        )
        notes["lost"] = target("0", ours["lost"], 0, at_most=True)
        notes["duplicates"] = target("0", ours["duplicate_chats"], 0, at_most=True)
        load = f"{p['messages']} messages"
    else:
        p50, p99 = ours["latency"]["p50_ms"], ours["latency"]["p99_ms"]
        notes["p50"] = target(f"<= {TARGET_PACED_P50_MS}", p50, TARGET_PACED_P50_MS, at_most=True)
        notes["p99"] = target(f"<= {TARGET_PACED_P99_MS}", p99, TARGET_PACED_P99_MS, at_most=True)
        load = f"{p['rate']:g} messages/s for {p['duration']:g} s"
    title = (
        f"{kind}: {p['bots']} bots, {load}, {p['workers']} worker(s) x {p['concurrency']} threads, "
        f"poll timeout {p['poll_timeout_s']} s"
    )
    return section(title, [table(load_figs(**notes), ours, theirs), *load_notes(ours, theirs)])


def render_idle(f: Figures) -> str:
    p, floor = f["params"], f.get("floor", {})
    sys_rss, sys_cpu = f["rss_peak_mib"].get("system"), f["cpu_cores"].get("system")
    start, poll = f["task_start_call_s"], f["start_to_first_poll_s"]
    parts = ["workers", "beat", *(["web"] if p.get("web") else []), *(["redis"] if f.get("redis_measured") else [])]
    groups = ("workers", "beat", "web", "redis")

    def median_max(s: Figures) -> str:
        return f"{fmt(s['median'], digits=3)} / {fmt(s['max'], digits=3)}"

    figs = [
        Fig("starting all tasks (s, wall)", lambda f: f["start_wall_s"], f"{f['start_failures']} failed"),
        Fig("task_start call (s) median / max", lambda f: median_max(start), f"n={start['samples']}"),
        Fig("Start to first getUpdates (s) median / max", lambda f: median_max(poll), f"n={poll['samples']}"),
        Fig("bots never polled after Start", lambda f: f["never_polled"]),
        Fig("idle window (s)", lambda f: f["idle_window_s"]),
        Fig(
            "WHOLE SYSTEM CPU in window (cores)", lambda f: sys_cpu,
            target(f"<= {TARGET_IDLE_CPU_CORES}", sys_cpu, TARGET_IDLE_CPU_CORES, at_most=True)
            + f"; {' + '.join(parts)}", digits=3,
        ),
        Fig(
            "WHOLE SYSTEM RSS, peak in window (MiB)", lambda f: sys_rss,
            target(f"<= {TARGET_IDLE_RSS_MIB}", sys_rss, TARGET_IDLE_RSS_MIB, at_most=True)
            + f"; summed per sample, {f['rss_samples']} samples",
        ),
        Fig(
            "  whole system PSS, end of window (MiB)", lambda f: f.get("system_pss_end_mib"),
            "shared pages split between processes (summed RSS counts them per process)",
        ),
        Fig(
            "  CPU (cores): workers / beat / web / Redis",
            lambda f: " / ".join(fmt(f["cpu_cores"].get(k), digits=3) for k in groups),
        ),
        Fig(
            "  RSS peak (MiB): workers / beat / web / Redis",
            lambda f: " / ".join(fmt(f["rss_peak_mib"].get(k)) for k in groups),
        ),
        Fig("workers RSS, peak in window (MiB)", lambda f: f["rss_peak_mib"].get("workers")),
        Fig("workers RSS, end of window (MiB)", lambda f: f["rss_end_mib"].get("workers")),
        Fig("workers CPU in window (cores)", lambda f: f["cpu_cores"].get("workers"), digits=3),
        Fig(
            "bots polled in window", lambda f: f"{f['bots_polled_in_window']} of {f['bots']}",
            f"each bot polls once per poll timeout ({p['poll_timeout_s']} s)",
        ),
        Fig(
            "no bot running: workers CPU (cores) / RSS (MiB)",
            lambda f: f"{fmt(floor.get('workers_cpu_cores'), digits=3)} / {fmt(floor.get('workers_rss_mib'))}",
            f"over {fmt(floor.get('window_s'))} s",
        ),
        Fig(
            "no bot running: whole system CPU (cores) / RSS (MiB)",
            lambda f: f"{fmt(floor.get('system_cpu_cores'), digits=3)} / {fmt(floor.get('system_rss_mib'))}",
        ),
        Fig("workers CPU per getUpdates cycle, above that (ms)", lambda f: _per_cycle_ms(f, floor), "derived"),
        Fig("getUpdates calls in window", lambda f: f["get_updates_in_window"]),
        Fig(
            "not the system: emulator / driver CPU (cores)",
            lambda f: " / ".join(fmt(f["cpu_cores"].get(k), digits=3) for k in ("emulator", "driver")),
        ),
        Fig("emulator RSS peak (MiB)", lambda f: f["rss_peak_mib"].get("emulator")),
        Fig("machine CPU busy (all cores, anyone's)", lambda f: f"{f['machine_cpu_busy']:.0%}"),
    ]
    title = (
        f"idle: {p['bots']} bots, {p['duration']:g} s idle, poll timeout {p['poll_timeout_s']} s "
        f"({p['poll_timeout_source']}), {p['workers']} worker(s) x {p['concurrency']} threads"
    )
    notes = [f"  tasks: {f['tasks']}", logs_line("worker/beat logs", f["logs"])]
    if not f.get("redis_measured"):
        notes.append("  Redis: REDIS_URL given, not ours: not in the whole-system figures")
    notes.append(
        "  the database: SQLite lives inside the processes above; a PostgreSQL server "
        "(DATABASE_URL) is not measured"
    )
    if f["start_failure_examples"]:
        notes.append(f"  start failures, e.g.: {f['start_failure_examples']}")
    return section(title, [table(figs, f), *notes])


def _per_cycle_ms(f: Figures, floor: Figures) -> float | None:
    """Workers' CPU per poll cycle in the idle window, above the no-bot floor: what
    scales with the number of bots (times bots / poll timeout = cycles per second)."""
    cycles, cpu_s = f["get_updates_in_window"], f["cpu_s"].get("workers")
    if not cycles or cpu_s is None or floor.get("workers_cpu_cores") is None:
        return None
    return round((cpu_s - floor["workers_cpu_cores"] * f["idle_window_s"]) * 1000 / cycles, 1)


def render_recovery(f: Figures) -> str:
    spread, latency, p = f["kill_to_poll_s"], f["latency"], f["params"]

    def s(ms: float | None) -> str:
        return fmt(None if ms is None else round(ms / 1000, 1))

    figs = [
        Fig(
            "kill to every bot polling again (s)", lambda f: f["kill_to_all_polling_s"],
            target(f"<= {TARGET_RECOVERY_S}", f["kill_to_all_polling_s"], TARGET_RECOVERY_S, at_most=True),
        ),
        Fig(
            "kill to first poll per bot (s) median / max",
            lambda f: f"{fmt(spread['median'])} / {fmt(spread['max'])}", f"n={spread['samples']}",
        ),
        Fig("bots polled again", lambda f: f"{f['bots_polled_again']} of {f['bots']}"),
        Fig(
            "outage (kill to restart) / workers ready (s)",
            lambda f: f"{f['outage_s']} / {f['workers_ready_after_kill_s']}",
        ),
        Fig(
            "outage messages answered", lambda f: f"{f['answered']} of {f['outage_messages']}",
            target("all", f["lost"], 0, at_most=True),
        ),
        Fig(
            "chats with duplicate replies", lambda f: f["duplicate_chats"],
            target("0", f["duplicate_chats"], 0, at_most=True),
        ),
        Fig("replies not echoing the message", lambda f: f["wrong_text"]),
        Fig(
            "message to reply (s) median / max",
            lambda f: f"{s(latency['p50_ms'])} / {s(latency['max_ms'])}", f"n={latency['samples']}",
        ),
    ]
    title = (
        f"recovery: {p['bots']} bots, {p['workers']} worker(s) SIGKILLed, supervisor via {p['supervisor']}, "
        f"poll timeout {p['poll_timeout_s']} s, lease grace {p['lease_grace_s']} s"
    )
    notes = [
        f"  message log: {f['reply_states']}",
        f"  tasks: {f['tasks']}",
        logs_line("worker/beat logs (both generations)", f["logs"]),
    ]
    return section(title, [table(figs, f), *notes])


render = renderer(
    "Botfleet load benchmark",
    {
        "burst": lambda f: render_load("burst", f),
        "paced": lambda f: render_load("paced", f),
        "idle": render_idle,
        "recovery": render_recovery,
    },
)


if __name__ == "__main__":
    sys.exit(main())
