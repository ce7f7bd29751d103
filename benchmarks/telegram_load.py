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

ORDER = ["burst", "paced", "idle", "recovery"]

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
    from benchmarks.summary import render
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


if __name__ == "__main__":
    sys.exit(main())
