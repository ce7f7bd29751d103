"""Where a web process's time goes under webhook load: py-spy on gunicorn (the master
and its workers) while the load generator runs, summed into the top functions.

py-spy samples the active threads only (a sync worker waiting in accept() is idle and
not counted), `--nonblocking` (the workers are not paused to be read). Its raw output
has one line per distinct stack, `frame;frame;...;frame count`; each frame is
`function (file)` (`--nolineno`). From that:

- self: the innermost frame of each sample: where the CPU is spent;
- inclusive: every function on the stack, counted once per sample: what a call costs
  with everything below it. The project's own functions (bots/, conversations/,
  config/, credentials/...) are listed apart: the view's steps.
"""

import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

PROJECT_PACKAGES = ("bots/", "conversations/", "config/", "credentials/", "dashboard/", "policy/", "sandbox/")
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*)\)$")


def py_spy() -> str | None:
    """The py-spy executable (next to this Python, or on PATH), or None."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def record_command(executable: str, pid: int, seconds: float, out: Path) -> list[str]:
    return [
        executable, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
        "--nolineno", "--format", "raw", "--rate", "200",
        "--duration", str(int(seconds)), "--output", str(out),
    ]


def _frame(text: str) -> tuple[str, str]:
    match = _FRAME.match(text.strip())
    if not match:
        return text.strip(), ""
    return match.group("function"), match.group("file")


def _is_project(file: str) -> bool:
    return file.startswith(PROJECT_PACKAGES) and ".venv" not in file


def summarize(raw: str, top: int = 20) -> dict[str, Any]:
    """Top functions by self and inclusive share of the samples, from py-spy's raw output."""
    self_counts: Counter[str] = Counter()
    by_library: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    project: Counter[str] = Counter()
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
