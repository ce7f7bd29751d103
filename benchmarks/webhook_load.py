"""Webhook benchmark: what a pushed update costs Botfleet's web process, end to end
through the workers, and what 10,000 idle webhook bots cost the whole system.

    python -m benchmarks.webhook_load [--scenario ingest|e2e|idle|all] [--quick]
        [--json FILE] [--database-url URL | --postgres] [--worker-class sync|gthread]

ingest: 100 webhook bots (running tasks, started with task_start against the Telegram
    emulator), gunicorn (`config.wsgi:application`, 2 workers) and NO Celery worker: a
    load generator in a process of its own (benchmarks/webhook_client.py, aiohttp, 40
    connections) POSTs private-message updates with each bot's secret straight at
    gunicorn. A closed loop for 20 s gives the accepted updates/s (target >= 500); an
    open loop at 500 updates/s for 20 s gives the latency of the 200 answer (target p99
    <= 50 ms). Both gunicorn worker classes (sync; gthread with 4 threads) are run, and
    the PTB peer (benchmarks/ptb_webhook.py: PTB's own tornado webhook server, a no-op
    handler) gets the same load. py-spy profiles the web workers when a target is missed.
e2e: 100 webhook bots; the emulator pushes every update to gunicorn (its webhook
    delivery, up to 40 connections per bot) and 2 Celery workers (threads pool) answer
    through the emulator: a burst of 2,000 messages (replies/s, lost, duplicates,
    latency from the user's message to the reply), then 50 messages/s for 20 s
    (latency); the same on the PTB peer (PTB's webhook server, echo handler).
idle: the whole system (gunicorn 2 workers, 2 Celery workers, beat, Redis) with 10,000
    running webhook tasks and no traffic, three 60 s windows: just after Start (every
    task's getWebhookInfo check due), nothing due, and the steady state (checks spread
    over WEBHOOK_INFO_INTERVAL); beside it, in the same run, the existing polling idle
    scenario with 1,000 bots (benchmarks/idle.py).

Sets up everything itself (a temporary SQLite database, DATABASE_URL, --database-url or
a fresh PostgreSQL database with --postgres; embedded Redis or REDIS_URL; production
settings: DEBUG off, fresh SECRET_KEY and FIELD_ENCRYPTION_KEYS, SECURE_COOKIES=false,
ALLOWED_HOSTS=127.0.0.1, WEBHOOK_BASE_URL = the gunicorn address), prints progress on
stderr and the report on stdout, and stops every process it started. See
benchmarks/README.md ("Webhooks").
"""

import argparse
import os
import socket
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from benchmarks import runner
from benchmarks.report import (
    Fig,
    failed,
    fmt,
    layout,
    logs_line,
    peer_given,
    percentiles,
    profile_lines,
    renderer,
    section,
    stage_lines,
    table,
    target,
)
from benchmarks.telegram_load import render_idle

ORDER = ["ingest", "e2e", "idle"]
WORKER_CLASSES = ("sync", "gthread")
# gunicorn.conf.py's, what production runs (measured on the 2-core machine, README
# "Webhooks": gthread x 4 accepted about 1.6x the pushes sync workers did).
DEFAULT_WORKER_CLASS = "gthread"
TARGET_INGEST_PER_S = 500.0
TARGET_INGEST_P99_MS = 50.0
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"

FULL: dict[str, dict[str, float]] = {
    "ingest": {"bots": 100, "connections": 40, "duration": 20, "rate": 500, "warmup": 3, "profile": 15},
    "e2e": {"bots": 100, "messages": 2000, "rate": 50, "duration": 20},
    "idle": {"bots": 10_000, "duration": 60, "polling_bots": 1000},
}
QUICK: dict[str, dict[str, float]] = {
    "ingest": {"bots": 10, "connections": 40, "duration": 2, "rate": 500, "warmup": 1, "profile": 5},
    "e2e": {"bots": 5, "messages": 60, "rate": 20, "duration": 2},
    "idle": {"bots": 100, "duration": 3, "polling_bots": 0},
}

Figures = dict[str, Any]


@dataclass(frozen=True)
class WebParams:
    scenario: str
    bots: int
    connections: int
    duration: float  # ingest: each measured phase; e2e: the paced phase; idle: each window
    rate: float  # ingest: the paced phase's updates/s; e2e: messages/s
    messages: int  # e2e: the burst
    warmup_s: float
    profile_s: float
    profile: str  # auto (when a target is missed), on, off
    polling_bots: int  # idle: the polling comparison (0: skip)
    web_workers: int
    worker_class: str
    threads: int
    compare: bool  # ingest: the other worker class too
    baseline: bool
    botfleet: bool  # off: the peer only (diagnosis)
    workers: int
    concurrency: int
    drain_s: float
    start_threads: int
    quick: bool
    worker_loglevel: str = "WARNING"
    profile_workers: bool = False

    def gunicorn_args(self, worker_class: str | None = None) -> tuple[str, ...]:
        chosen = worker_class or self.worker_class
        if chosen == "gthread":
            return ("--worker-class", "gthread", "--threads", str(self.threads))
        return ("--worker-class", "sync")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.webhook_load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", choices=[*ORDER, "all"], default="all")
    parser.add_argument("--bots", type=int, help="bots (default: the scenario's own: 100, 100, 10,000)")
    parser.add_argument("--connections", type=int, help="ingest: load generator connections (40)")
    parser.add_argument(
        "--duration", type=float,
        help="ingest: seconds of each measured phase (20); e2e: paced seconds (20); idle: each window (60)",
    )
    parser.add_argument("--rate", type=float, help="ingest: paced updates/s (500); e2e: paced messages/s (50)")
    parser.add_argument("--messages", type=int, help="e2e: the burst's messages (2,000)")
    parser.add_argument(
        "--polling-bots", type=int,
        help="idle: bots of the polling idle scenario run beside it (1,000; 0 skips it)",
    )
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument(
        "--worker-class", choices=WORKER_CLASSES, default=DEFAULT_WORKER_CLASS,
        help=f"gunicorn worker class for every scenario (default {DEFAULT_WORKER_CLASS})",
    )
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads with gthread (4)")
    parser.add_argument(
        "--compare", action=argparse.BooleanOptionalAction, default=True,
        help="ingest: also measure the other worker class (default on; off with --quick)",
    )
    parser.add_argument(
        "--baseline", action=argparse.BooleanOptionalAction, default=True,
        help="ingest, e2e: also run the PTB webhook peer (default on)",
    )
    parser.add_argument(
        "--botfleet", action=argparse.BooleanOptionalAction, default=True,
        help="ingest, e2e: measure Botfleet (default on; --no-botfleet runs the peer alone)",
    )
    parser.add_argument(
        "--profile-web", choices=["auto", "on", "off"], default="auto",
        help="ingest: py-spy the web workers under load (auto: when a target is missed)",
    )
    database = parser.add_mutually_exclusive_group()
    database.add_argument("--database-url", help="use this (empty) database instead of a temporary SQLite file")
    database.add_argument(
        "--postgres", action="store_true",
        help=f"create a fresh PostgreSQL database on --postgres-server ({POSTGRES_SERVER}) "
        "and drop it afterwards",
    )
    parser.add_argument("--postgres-server", default=POSTGRES_SERVER)
    parser.add_argument(
        "--drain", type=float,
        help="e2e: seconds to wait for the last replies after the last message (180; --quick 30)",
    )
    parser.add_argument("--start-threads", type=int, default=16, help="threads pressing Start at once (16)")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (under 2 minutes)")
    runner.worker_options(parser)
    runner.common_options(parser)
    args = runner.options_parse(
        parser, argv,
        positive=("bots", "connections", "duration", "rate", "messages", "web_workers", "threads",
                  "workers", "concurrency", "start_threads"),
    )
    if args.quick:
        args.compare = False
    return args


def params_for(name: str, args: argparse.Namespace) -> WebParams:
    sizes = dict((QUICK if args.quick else FULL)[name])

    def pick(key: str, default: float) -> float:
        given = getattr(args, key, None)
        return given if given is not None else sizes.get(key, default)

    return WebParams(
        scenario=name,
        bots=int(pick("bots", 10)),
        connections=int(pick("connections", 40)),
        duration=pick("duration", 20),
        rate=pick("rate", 500),
        messages=int(pick("messages", 100)),
        warmup_s=sizes.get("warmup", 2),
        profile_s=sizes.get("profile", 10),
        profile=args.profile_web,
        polling_bots=int(pick("polling_bots", 0)),
        web_workers=args.web_workers,
        worker_class=args.worker_class,
        threads=args.threads,
        compare=args.compare,
        baseline=args.baseline,
        botfleet=args.botfleet,
        workers=args.workers,
        concurrency=args.concurrency,
        drain_s=args.drain or (30.0 if args.quick else 180.0),
        start_threads=args.start_threads,
        quick=args.quick,
        worker_loglevel=args.worker_loglevel,
        profile_workers=args.profile_workers,
    )


# --- the database and the environment every process gets --------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def environment_prepare(args: argparse.Namespace) -> tuple[int, str, str]:
    """Set what every process of the run reads (the Stack copies os.environ): the web
    address webhooks point at, plain-http production settings, the database. Returns
    (web port, database description, a fresh PostgreSQL database to drop or "")."""
    port = free_port()
    os.environ.update(
        WEBHOOK_BASE_URL=f"http://127.0.0.1:{port}",
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_COOKIES="false",
    )
    fresh = ""
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
        described = "the database given with --database-url; "
    elif args.postgres:
        fresh = f"botfleet_bench_{uuid.uuid4().hex[:8]}"
        _postgres_admin(args.postgres_server, f'CREATE DATABASE "{fresh}"')
        os.environ["DATABASE_URL"] = f"{args.postgres_server}/{fresh}"
        described = f"PostgreSQL: a fresh database {fresh} on {args.postgres_server}; "
    else:
        described = ""  # the Stack's description says which
    return port, described, fresh


def _postgres_admin(server: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(statement)  # type: ignore[arg-type]


def postgres_drop(server: str, name: str) -> None:
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # Django never set up: nothing to close
        pass
    try:
        _postgres_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as error:  # reported, never hides the figures
        print(f"[bench] could not drop database {name}: {error}", file=sys.stderr)


# --- the command ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    port, database, fresh = environment_prepare(args)
    from benchmarks.rigging import Context
    from benchmarks.traffic import UserIds
    from benchmarks.webhook_scenarios import SCENARIOS

    try:
        outcome = runner.scenarios_run(
            names=ORDER if args.scenario == "all" else [args.scenario],
            keep_files=args.keep_files,
            context=lambda stack: Context(stack=stack, users=UserIds()),
            scenario=lambda ctx, name: SCENARIOS[name](ctx, params_for(name, args), port),
            poll_timeout=args.poll_timeout,
        )
    finally:
        if fresh:
            postgres_drop(args.postgres_server, fresh)
    setup = (
        f"{database}web: gunicorn config.wsgi:application, {args.web_workers} workers, "
        f"worker class {args.worker_class}"
        + (f" x {args.threads} threads" if args.worker_class == "gthread" else "")
        + f" on 127.0.0.1:{port}; Celery: {args.workers} worker(s) x {args.concurrency} threads; "
        f"{'--quick smoke sizes' if args.quick else 'full sizes'}"
    )
    return runner.report_finish(outcome, runner.machine_header(outcome, setup), render, args.json)


# --- the report: which figures each scenario shows ------------------------------------------


def _ingest_figs(ours: Figures, server: str) -> list[Fig]:
    """Botfleet's web (`server` "web"; "baseline" for the peer alone) beside the peer."""
    closed, paced = ours["closed"], ours["paced"]
    rate, p99 = closed["accepted_per_s"], paced["latency"]["p99_ms"]

    def both(f: Figures, get: Any, digits: int = 1) -> str:
        return f"{fmt(get(f['closed']), digits=digits)} / {fmt(get(f['paced']), digits=digits)}"

    def paced_latency(key: str, note: str = "") -> Fig:
        return Fig(f"paced: latency of the 200 {key[:3]} (ms)", lambda f: f["paced"]["latency"][key], note, ratio=True)

    def rss(f: Figures, group: str) -> float:
        return max(f["closed"]["rss_peak_mib"].get(group, 0), f["paced"]["rss_peak_mib"].get(group, 0))

    light = ours.get("light")
    return [
        Fig(
            f"accepted updates/s, closed loop ({closed['connections']} connections)",
            lambda f: f["closed"]["accepted_per_s"],
            target(f">= {TARGET_INGEST_PER_S:g}", rate, TARGET_INGEST_PER_S, at_most=False), ratio=True,
        ),
        Fig(
            "  latency of the 200 p50 / p99 (ms), closed loop",
            lambda f: f"{fmt(f['closed']['latency']['p50_ms'])} / {fmt(f['closed']['latency']['p99_ms'])}",
            "queueing: connections / rate (Little's law)",
        ),
        *([] if not light else [Fig(
            f"paced at {fmt(light['offered_per_s'], digits=0)}/s (half the closed loop's): p50 / p99 (ms)",
            lambda f: f"{fmt(f['light']['latency']['p50_ms'])} / {fmt(f['light']['latency']['p99_ms'])}",
            f"achieved {fmt(light['accepted_per_s'])}/s; n={light['latency']['samples']}", peer=False,
        )]),
        Fig(
            f"paced at {fmt(paced['offered_per_s'], digits=0)}/s: achieved updates/s",
            lambda f: f["paced"]["accepted_per_s"],
            f"{paced['not_sent']} not sent (fell behind)" if paced.get("not_sent") else "",
        ),
        paced_latency("p50_ms"),
        paced_latency("p95_ms"),
        paced_latency("p99_ms", target(f"<= {TARGET_INGEST_P99_MS:g}", p99, TARGET_INGEST_P99_MS, at_most=True)),
        Fig(
            "paced: latency max (ms); samples",
            lambda f: f"{fmt(f['paced']['latency']['max_ms'])}; n={f['paced']['latency']['samples']}",
            "from the scheduled send time",
        ),
        Fig(
            "non-2xx answers / client errors (closed + paced)",
            lambda f: f"{sum(f['closed']['not_2xx'].values()) + sum(f['paced']['not_2xx'].values())} / "
            f"{sum(f['closed']['errors'].values()) + sum(f['paced']['errors'].values())}",
            "0",
        ),
        Fig(
            "server CPU (cores), closed loop", lambda f: f["closed"]["cpu_cores"].get(server),
            "gunicorn master + workers" if server == "web" else "", digits=2,
            peer=lambda f: f["closed"]["cpu_cores"].get("baseline"),
        ),
        Fig(
            "server CPU per accepted update (ms), closed loop",
            lambda f: f["closed"]["server_cpu_ms_per_update"], digits=2, ratio=True,
        ),
        Fig("Redis CPU (cores), closed loop", lambda f: f["closed"]["cpu_cores"].get("redis"), digits=2),
        Fig(
            "load generator CPU (cores), closed loop", lambda f: f["closed"]["client_cpu_cores"],
            "Telegram's side, same machine", digits=2,
        ),
        Fig("peak RSS of the server (MiB)", lambda f: rss(f, server), peer=lambda f: rss(f, "baseline")),
        Fig(
            "machine CPU busy, closed / paced",
            lambda f: f"{f['closed']['machine_cpu_busy']:.0%} / {f['paced']['machine_cpu_busy']:.0%}",
        ),
        Fig(
            "  of which not the benchmark's (cores), closed / paced",
            lambda f: both(f, lambda phase: phase.get("others_cpu_cores"), digits=2),
            "other people's processes on the machine",
        ),
    ]


def render_ingest(f: Figures) -> str:
    p, theirs = f["params"], f.get("baseline")
    parts = []
    for n, (worker_class, ours) in enumerate(f["botfleet"].items()):
        peer = theirs if n == 0 else None
        title = (
            f"ingest ({worker_class}"
            + (f" x {p['threads']} threads" if worker_class == "gthread" else "")
            + f"): {p['bots']} webhook bots, gunicorn {p['web_workers']} workers, no Celery worker; "
            f"{p['duration']:g} s closed loop, then {p['rate']:g}/s for {p['duration']:g} s"
        )
        closed, paced = ours["closed"], ours["paced"]
        notes = [
            f"  2xx answers in every run (warm-up, measured, profiled): {ours['accepted_all_runs']}; "
            f"pushes kept for the workers meanwhile: {ours['stored_all_runs']} (the two should be equal); "
            f"drains asked for (the replies queue): {fmt(ours['queued_for_workers'])} "
            f"(at most one due per bot at a time)",
            f"  not 2xx: closed {closed['not_2xx'] or 'none'}, paced {paced['not_2xx'] or 'none'}; "
            f"client errors: closed {closed['errors'] or 'none'}, paced {paced['errors'] or 'none'}",
            f"  paced, latency from the request's own start (no wait for a connection) p50 / p99: "
            f"{fmt(paced['service']['p50_ms'])} / {fmt(paced['service']['p99_ms'])} ms",
            logs_line("gunicorn log", ours["web_log"])
            + "\n      (32 of the Forbidden are the warm-up's POSTs to a webhook of no bot, by design)",
        ]
        if peer:
            notes.append(f"  PTB webhook peer, as given: {peer_given(peer.get('given'))}")
            notes.append(f"  PTB peer handler errors: {peer.get('errors_logged') or 'none'}")
        while_profiled = (ours.get("profile") or {}).get("accepted_per_s_while_profiled")
        heading = "py-spy on gunicorn under load" + (
            f", {fmt(while_profiled)} updates/s while profiled" if while_profiled is not None else ""
        )
        notes += profile_lines(ours.get("profile"), heading)
        parts.append(section(title, [table(_ingest_figs(ours, "web"), ours, peer), *notes]))
    if len(f["botfleet"]) > 1:
        parts.append(_class_comparison(f["botfleet"], p))
    if not f["botfleet"] and theirs:  # --no-botfleet: the peer alone
        title = f"ingest: the PTB webhook peer alone, {p['bots']} bots"
        body = [table(_ingest_figs(theirs, "baseline"), theirs), f"  as given: {peer_given(theirs.get('given'))}"]
        parts.append(section(title, body))
    if f.get("baseline_error"):
        parts.append(f"  the PTB webhook peer did not run: {f['baseline_error']}\n")
    fleet = f["fleet"]
    parts.append(
        f"  fleet: {fleet['running']} of {fleet['bots']} tasks running after Start ({fleet['start_wall_s']} s, "
        f"{fleet['start_failures']} failures); tasks: {f.get('tasks')}\n"
    )
    return "\n".join(parts)


def _class_comparison(by_class: dict[str, Figures], p: Figures) -> str:
    rows = []
    for worker_class, ours in by_class.items():
        light, paced = ours.get("light"), ours["paced"]["latency"]
        rows.append((
            worker_class + (f" x {p['threads']}" if worker_class == "gthread" else ""),
            f"{fmt(ours['closed']['accepted_per_s'])}/s",
            f"p50 {fmt(light['latency']['p50_ms'])} / p99 {fmt(light['latency']['p99_ms'])} ms at "
            f"{fmt(light['offered_per_s'])}/s" if light else "n/a",
            f"p99 {fmt(paced['p99_ms'])} ms (p50 {fmt(paced['p50_ms'])})",
            f"{fmt(ours['closed']['server_cpu_ms_per_update'], digits=2)} ms CPU/update",
        ))
    header = ("worker class", "closed loop", "half load", f"paced {p['rate']:g}/s", "web CPU")
    return section("ingest: gunicorn worker classes side by side", [layout(rows, header)])


def _settles(f: Figures) -> str:
    return "; ".join(
        f"{key.replace('_settle', '')}: {f[key]['pending_updates']} pending after {f[key]['waited_s']} s"
        for key in ("paced_settle", "burst_settle", "after_settle") if key in f
    )


def _e2e_figs(ours: Figures, server: str = "web") -> list[Fig]:
    """Both phases; `server` "web" (Botfleet) or "baseline" (the peer alone)."""
    return [fig for phase in ("paced", "burst") for fig in _e2e_phase_figs(ours[phase], phase, server)]


def _e2e_phase_figs(o: Figures, phase: str, server: str) -> list[Fig]:
    web = server == "web"
    groups = ("web", "workers", "beat", "redis") if web else ("baseline",)

    def get(key: str) -> Any:
        return lambda f: f[phase][key]

    def cores(f: Figures, *keys: str) -> str:
        return " / ".join(fmt(f[phase]["cpu_cores"].get(k), digits=2) for k in keys)

    return [
        Fig(f"{phase}: replies/s (first message to last reply)", get("replies_per_s"), ratio=True),
        Fig(
            f"{phase}: lost replies", lambda f: f"{f[phase]['lost']} of {f[phase]['messages']}",
            target("0", o["lost"], 0, at_most=True),
        ),
        Fig(
            f"{phase}: chats with duplicate replies", get("duplicate_chats"),
            target("0", o["duplicate_chats"], 0, at_most=True),
        ),
        Fig(f"{phase}: replies not echoing the message", get("wrong_text")),
        Fig(
            f"{phase}: message to reply p50 / p95 / p99 (ms)",
            lambda f: percentiles(f[phase]["latency"], ("p50_ms", "p95_ms", "p99_ms")),
            f"n={o['latency']['samples']}", ratio=lambda f: f[phase]["latency"]["p99_ms"],
        ),
        Fig(
            f"{phase}: CPU (cores) web / workers / beat / Redis" if web else f"{phase}: CPU (cores) the peer",
            lambda f: cores(f, *groups), "peer: its one process", peer=lambda f: cores(f, "baseline"),
        ),
        Fig(
            f"{phase}: CPU (cores) emulator / driver; machine busy",
            lambda f: f"{cores(f, 'emulator', 'driver')}; {f[phase]['machine_cpu_busy']:.0%}",
        ),
        Fig(
            f"{phase}: peak RSS web + workers (MiB)" if web else f"{phase}: peak RSS the peer (MiB)",
            lambda f: sum(f[phase]["rss_peak_mib"].get(k, 0) for k in ("web", "workers", "baseline")),
            peer=lambda f: f[phase]["rss_peak_mib"].get("baseline"),
        ),
    ]


def render_e2e(f: Figures) -> str:
    p, ours, theirs = f["params"], f.get("botfleet"), f.get("baseline")
    if ours is None:  # --no-botfleet: the peer alone
        title = f"e2e: the PTB webhook peer alone, {p['bots']} bots"
        notes = [f"  as given: {peer_given(theirs.get('given'))}", f"  deliveries: {theirs['deliveries']}; "
                 f"handler errors: {theirs.get('errors_logged') or 'none'}; settling: {_settles(theirs)}"]
        return section(title, [table(_e2e_figs(theirs, "baseline"), theirs), *notes])
    title = (
        f"e2e: {p['bots']} webhook bots, the emulator pushing to gunicorn ({p['web_workers']} x "
        f"{p['worker_class']}), {p['workers']} Celery worker(s) x {p['concurrency']} threads; "
        f"{p['rate']:g} messages/s for {p['duration']:g} s, then a burst of {p['messages']}"
    )
    notes = [
        f"  Botfleet: fleet {ours['fleet']}",
        f"  Botfleet webhook deliveries (emulator's attempts): {ours['deliveries']}",
        f"  Botfleet, the emulator's pushes left before each phase and once every reply was in: {_settles(ours)}",
        f"  TIME_WAIT sockets before the peer started: {ours.get('time_wait_after')}",
        f"  Botfleet message log (incoming by reply state): {ours['reply_states']}",
        f"  Botfleet tasks: {ours['tasks']}",
        logs_line("Botfleet worker/beat logs", ours["logs"]),
        logs_line("gunicorn log", ours["web_log"]),
    ]
    if f.get("baseline_error"):
        notes.append(f"  the PTB webhook peer did not run: {f['baseline_error']}")
    if theirs:
        notes.append(f"  PTB webhook peer, as given: {peer_given(theirs.get('given'))}")
        notes.append(f"  PTB peer webhook deliveries: {theirs['deliveries']}; handler errors: {theirs.get('errors_logged') or 'none'}")
        notes.append(f"  PTB peer, the emulator's pushes left: {_settles(theirs)}")
    for phase in ("paced", "burst"):
        for who, process in (("web", "gunicorn"), ("worker", "Celery worker 1")):
            notes += profile_lines(
                ours[phase].get(f"profile_{who}"),
                f"PROFILED ({phase}): py-spy on {process}, slower; do not report these figures",
            )
    for who, figures in (("Botfleet", ours), ("PTB peer", theirs)):
        for phase in ("paced", "burst") if figures else ():
            notes += stage_lines(f"{who} {phase} latency by stage", figures[phase]["stages"])
    return section(title, [table(_e2e_figs(ours), ours, theirs), *notes])


def render_idle_all(f: Figures) -> str:
    parts = []
    if "polling" in f:
        polling = f["polling"]
        parts.append(failed("idle (polling)", polling) if "error" in polling else render_idle(polling))
    webhook = f["webhook"]
    if "error" in webhook:
        parts.append(failed("idle (webhook)", webhook))
    else:
        parts.append(_render_webhook_idle(webhook, f["params"], f.get("polling")))
    return "\n".join(parts)


def _window_figs(label: str, win: Figures, parts: list[str]) -> list[Fig]:
    checks = win["bot_api_calls"].get("getWebhookInfo", 0)
    groups = ("workers", "beat", "web", "redis")
    return [
        Fig(
            f"{label}: WHOLE SYSTEM CPU (cores)", lambda _: win["cpu_cores"].get("system"),
            f"{' + '.join(parts)}; {checks} getWebhookInfo in {win['window_s']} s", digits=4,
        ),
        Fig(
            f"{label}: CPU (cores) workers / beat / web / Redis",
            lambda _: " / ".join(fmt(win["cpu_cores"].get(k), digits=4) for k in groups),
        ),
        Fig(f"{label}: WHOLE SYSTEM RSS peak (MiB)", lambda _: win["rss_peak_mib"].get("system")),
    ]


def _render_webhook_idle(w: Figures, p: Figures, polling: Figures | None) -> str:
    windows = w["windows"]
    names = {"just_started": "just after Start", "nothing_due": "no check due", "steady": "steady state"}
    parts = ["workers", "beat", "web", *(["redis"] if w.get("redis_measured") else [])]
    figs = [fig for key, label in names.items() for fig in _window_figs(label, windows[key], parts)]
    steady, quiet = windows["steady"], windows["nothing_due"]
    checks = steady["bot_api_calls"].get("getWebhookInfo", 0)
    extra_s = steady["cpu_s"].get("system", 0) - quiet["cpu_s"].get("system", 0) * steady["window_s"] / max(quiet["window_s"], 0.1)
    per_check_ms = extra_s * 1000 / checks if checks else None
    interval, bots = w["webhook_info_interval_s"], w["fleet"]["bots"]
    per_hour = 3600 / interval
    figs += [
        Fig(
            "CPU per getWebhookInfo check (ms), steady minus no-check window", lambda f: per_check_ms,
            "derived; the system's CPU only, not the emulator's", digits=2,
        ),
        Fig(
            "checks per bot per hour; CPU per bot per hour (ms)",
            lambda f: f"{per_hour:g}; {fmt(per_check_ms * per_hour if per_check_ms is not None else None)}",
            f"WEBHOOK_INFO_INTERVAL {interval:g} s",
        ),
        Fig(
            f"whole fleet of {bots:,}: steady-state checks/s; cores for them",
            lambda f: f"{bots / interval:.1f}; "
            + fmt(per_check_ms / 1000 * bots / interval if per_check_ms is not None else None, digits=4),
        ),
        Fig(
            "no bot running: whole system CPU (cores) / RSS (MiB)",
            lambda f: f"{fmt(f['floor'].get('system_cpu_cores'), digits=4)} / {fmt(f['floor'].get('system_rss_mib'))}",
        ),
        Fig("whole system PSS at the end (MiB)", lambda f: f.get("pss_end_mib")),
    ]
    if polling and "error" not in polling:
        figs.append(Fig(
            f"polling, {polling['bots']:,} bots, same run: whole system CPU (cores) / RSS peak (MiB)",
            lambda f: f"{fmt(polling['cpu_cores'].get('system'), digits=4)} / {fmt(polling['rss_peak_mib'].get('system'))}",
            "web: gunicorn 3 workers there (the Dockerfile's)",
        ))
    fleet = w["fleet"]
    title = (
        f"idle (webhook): {fleet['bots']:,} webhook bots ({fleet['running']:,} running, started in "
        f"{fleet['start_wall_s']} s, {fleet['start_failures']} failures), {p['duration']:g} s windows; "
        f"gunicorn {p['web_workers']} x {p['worker_class']}, {p['workers']} Celery worker(s), beat"
    )
    notes = [
        f"  supervisor every {w['supervisor_interval_s']:g} s, at most 200 getWebhookInfo per round; "
        "just after Start every check is due (webhook_checked_at empty)",
        "  Bot API calls per window: " + "; ".join(f"{names[k]}: {windows[k]['bot_api_calls'] or 'none'}" for k in names),
        f"  tasks: {w['tasks']}",
        logs_line("worker/beat logs", w["logs"]),
        logs_line("gunicorn log", w["web_log"]),
    ]
    return section(title, [table(figs, w), *notes])


render = renderer(
    "Botfleet webhook benchmark", {"ingest": render_ingest, "e2e": render_e2e, "idle": render_idle_all}
)


if __name__ == "__main__":
    sys.exit(main())
