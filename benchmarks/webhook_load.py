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
    from benchmarks.webhook_report import render
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


if __name__ == "__main__":
    sys.exit(main())
