"""Where a process's time goes: py-spy attached to it (and its children) while the load
runs, its samples summed into the top functions. Used for gunicorn under webhook load,
for a worker under `streaming_load --profile`, and for every worker under
`--profile-workers`.

`--nonblocking`: the process is not paused to be read. By default py-spy samples the
active threads only (a sync gunicorn worker waiting in accept() is not counted): where
the CPU goes. With `idle` it samples waiting threads too: where the wall-clock time
goes (a thread waiting for a lock, the database or the I/O loop counts as much as one
computing); `roots` then keeps only the threads inside one of those functions (a
worker's I/O loop, its database writer), not the Celery pool's idle threads. Its raw
output has one line per distinct stack, `frame;frame;...;frame count`, outermost first;
each frame is `function (file)` (`--nolineno`). From that:

- self: the innermost frame of each sample: where the time is spent;
- inclusive: every function on the stack, counted once per sample: what a call costs
  with everything below it. The project's own functions (bots/, conversations/,
  config/, credentials/...) are listed apart.
"""

import re
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import procs

PROJECT_PACKAGES = ("bots/", "conversations/", "config/", "core/", "credentials/", "dashboard/", "policy/", "sandbox/")
# A worker's busy threads under --profile-workers: its I/O loop (polls, AI calls, sends)
# and its database writer (core.dbwork).
WORKER_ROOTS = ("run_forever", "_transaction_run")
SPY_MAX_S = 86_400  # py-spy's own bound; spy_finish (or the process's exit) stops it sooner
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*)\)$")

Figures = dict[str, Any]


def py_spy() -> str | None:
    """The py-spy executable (next to this Python, or on PATH), or None."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def record_command(executable: str, pid: int, out: Path, *, idle: bool = False) -> list[str]:
    return [
        executable, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
        "--nolineno", "--format", "raw", "--rate", "200", *(["--idle"] if idle else []),
        "--duration", str(SPY_MAX_S), "--output", str(out),
    ]


def spy_start(
    rig: Any, tag: str, pid: int | None = None, *, idle: bool = False
) -> tuple[procs.Child, Path] | Figures:
    """py-spy recording a process tree (default: the rig's web) into the logs until
    spy_finish or the process's exit (or an error figure)."""
    executable = py_spy()
    if pid is None and rig.web is not None:
        pid = rig.web.pid
    if executable is None or pid is None:
        return {"error": "py-spy not installed (pip install py-spy)"}
    logs = rig.stack.workdir / "logs"
    out = logs / f"{tag}-pyspy.txt"
    spy = procs.spawn(
        "py-spy", record_command(executable, pid, out, idle=idle),
        env=rig.stack.env(), cwd=logs, log_path=logs / f"{tag}-pyspy.log",
    )
    time.sleep(1.0)  # attached before the load starts
    return spy, out


def spy_finish(spy: procs.Child, out: Path, roots: tuple[str, ...] = ()) -> Figures:
    """Stop py-spy as Ctrl-C would (it writes what it has; when the process it watched
    has exited, it has already) and sum up its samples."""
    if spy.running():
        spy.popen.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 30
    while spy.running() and time.monotonic() < deadline:
        time.sleep(0.2)
    procs.stop(spy, grace=5)
    if not out.exists():
        return {"error": f"py-spy wrote nothing:\n{spy.log()[-1000:]}"}
    summary = summarize(out.read_text(errors="replace"), roots=roots)
    summary["raw_file"] = str(out)
    return summary


def _frame(text: str) -> tuple[str, str]:
    match = _FRAME.match(text.strip())
    if not match:
        return text.strip(), ""
    return match.group("function"), match.group("file")


def _is_project(file: str) -> bool:
    return file.startswith(PROJECT_PACKAGES) and ".venv" not in file


def _root(frames: list[tuple[str, str]], roots: tuple[str, ...]) -> str | None:
    """The outermost of `roots` on the stack (matched on the bare function name)."""
    return next((name for name in (f.rsplit(".", 1)[-1] for f, _ in frames) if name in roots), None)


def summarize(raw: str, top: int = 20, roots: tuple[str, ...] = ()) -> Figures:
    """Top functions by self and inclusive share of the samples, from py-spy's raw
    output; with `roots`, only the stacks inside one of them (and the samples by root)."""
    self_counts: Counter[str] = Counter()
    by_library: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    project: Counter[str] = Counter()
    by_root: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            _frame(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))
        ]
        if not frames:
            continue
        if roots:
            root = _root(frames, roots)
            if root is None:
                continue
            by_root[root] += count
        total += count
        function, file = frames[-1]
        self_counts[f"{function} ({file})"] += count
        by_library[library_of(function, file)] += count
        seen: set[str] = set()
        for function, file in frames:
            name = f"{function} ({file})"
            if name in seen:
                continue
            seen.add(name)
            inclusive[name] += count
            if _is_project(file):
                project[name] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)] if total else []

    return {
        "samples": total,
        **({"samples_by_root": dict(by_root)} if roots else {}),
        "self_pct": share(self_counts),
        "inclusive_pct": share(inclusive),
        "project_inclusive_pct": share(project),
        "self_by_library_pct": share(by_library),
    }


def library_of(function: str, file: str) -> str:
    """Where an innermost frame belongs: the database driver call (the SQL running, and
    on SQLite the wait for the write lock), Django's ORM, the broker client, PTB..."""
    if function.startswith(("SQLiteCursorWrapper.execute", "BaseDatabaseWrapper._commit")) or file.startswith(
        ("psycopg/", "psycopg_binary/")
    ):
        return "database driver: running SQL, committing (SQLite: and waiting for the write lock)"
    if file.startswith("django/db/"):
        return "Django ORM: building queries, making model instances"
    if file.startswith("django/"):
        return "Django: request handling, middleware, other"
    if file.startswith(("redis/", "kombu/", "celery/", "amqp/", "vine/")):
        return "Celery hand-off: kombu / redis-py publishing the task"
    if file.startswith("telegram/"):
        return "python-telegram-bot: parsing the update"
    if file.startswith("gunicorn/"):
        return "gunicorn: reading the request, writing the answer"
    if _is_project(file):
        return "Botfleet's own code"
    if file.startswith(("cryptography/",)):
        return "cryptography: the secret's decryption"
    head = file.split("/", 1)[0] if "/" in file else file
    return f"other: {head}"
