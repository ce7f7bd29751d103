"""What the load benchmark commands share: SIGTERM handled like Ctrl-C, the scenarios
run one after another on one stack (a broken one does not hide the others' figures),
the machine header, and the report printed and saved."""

import argparse
import json
import platform
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

Figures = dict[str, Any]


def common_options(parser: argparse.ArgumentParser) -> None:
    """The options every load command has: where figures go and how to diagnose a run."""
    parser.add_argument("--json", type=Path, help="also save every figure to this JSON file")
    parser.add_argument(
        "--worker-loglevel",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING"],
        help="workers' log level; INFO logs each task and its run time (default WARNING)",
    )
    parser.add_argument(
        "--profile-workers",
        action="store_true",
        help="py-spy on every worker, its threads' stacks summed into the logs directory "
        "(implies --keep-files)",
    )
    parser.add_argument(
        "--keep-files", action="store_true", help="keep the logs and database (path printed)"
    )
    parser.add_argument(
        "--poll-timeout",
        type=int,
        help="TELEGRAM_POLL_TIMEOUT for every process of the run, the PTB peer's included "
        "(default: the product's own setting)",
    )


def worker_options(parser: argparse.ArgumentParser, *, concurrency: int = 32) -> None:
    """How many Celery worker processes, and threads each (the Procfile's 32 by default;
    the waiting happens on each worker's I/O loop, so threads are seldom the limit)."""
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (default 2)")
    parser.add_argument(
        "--concurrency", type=int, default=concurrency, help=f"threads per worker (default {concurrency})"
    )


def options_parse(
    parser: argparse.ArgumentParser, argv: list[str] | None, *, positive: tuple[str, ...]
) -> argparse.Namespace:
    """Parse, refusing zero or negative values for the `positive` options."""
    args = parser.parse_args(argv)
    args.keep_files = args.keep_files or args.profile_workers  # profiles live in the logs
    for name in (*positive, "poll_timeout"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


class Interrupted(BaseException):
    """SIGTERM: handled like Ctrl-C (stop everything, report what was measured). A
    BaseException, so no `except Exception` on the way swallows it."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    # An exception, so the `finally` blocks stop every child process. Further SIGTERMs
    # are ignored so they cannot cut that clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted()


def sigterm_as_interrupt() -> None:
    signal.signal(signal.SIGTERM, _terminate)


@dataclass
class Outcome:
    results: dict[str, Figures] = field(default_factory=dict)
    stack_description: str = ""
    seconds: float = 0.0
    interrupted: bool = False


def scenarios_run(
    *,
    names: list[str],
    keep_files: bool,
    context: Callable[[Any], Any],
    scenario: Callable[[Any, str], Figures],
    poll_timeout: int | None = None,
) -> Outcome:
    """Open one stack, run each named scenario on it, close the stack whatever happens."""
    from benchmarks.report import progress
    from benchmarks.stack import Stack

    sigterm_as_interrupt()
    stack = Stack(keep_files=keep_files, poll_timeout=poll_timeout)
    outcome, began = Outcome(), time.monotonic()
    try:
        progress("setting up: database, Redis, migrations", force=True)
        stack.open()
        ctx = context(stack)
        for name in names:
            progress(f"=== {name} ===", force=True)
            try:
                outcome.results[name] = scenario(ctx, name)
            except Exception as error:  # one broken scenario must not hide the others' figures
                traceback.print_exc()
                outcome.results[name] = {"error": f"{type(error).__name__}: {error}"}
    except (KeyboardInterrupt, Interrupted):
        outcome.interrupted = True
        progress("interrupted: stopping everything", force=True)
    finally:
        stack.close()
    outcome.stack_description = stack.description
    if stack.django_ready:  # Django knows the settings in force
        polling = stack.polling()
        outcome.stack_description += (
            f"; poll timeout {polling['poll_timeout_s']} s ({polling['poll_timeout_source']}), "
            f"lease grace {polling['lease_grace_s']} s"
        )
    outcome.seconds = time.monotonic() - began
    return outcome


def machine_header(outcome: Outcome, setup: str) -> list[str]:
    import psutil

    return [
        f"  {time.strftime('%Y-%m-%d %H:%M:%S')}, {platform.node()}, {psutil.cpu_count()} cores, "
        f"{round(psutil.virtual_memory().total / 2**30, 1)} GiB, Python {platform.python_version()}",
        f"  {outcome.stack_description}; {setup}; run took {outcome.seconds:.0f} s",
        "  Percentiles are from one run; each figure says how many samples it rests on.",
    ]


def report_finish(
    outcome: Outcome, header: list[str], render: Callable[[dict, list[str]], str], json_path: Path | None
) -> int:
    """Print (and save) the report; the exit code says whether every scenario ran."""
    if outcome.interrupted:
        header.append("  INTERRUPTED: only the scenarios below finished.")
    print(render(outcome.results, header))
    if json_path:
        json_path.write_text(
            json.dumps({"header": header, "results": outcome.results}, indent=2, default=str)
        )
    if outcome.interrupted:
        return 130
    return 1 if any("error" in figures for figures in outcome.results.values()) else 0
