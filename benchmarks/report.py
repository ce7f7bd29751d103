"""Progress lines while a scenario runs, and the plain-text report at the end.

Progress goes to stderr and the report to stdout, so `> report.txt` keeps the report
clean while the progress stays on the terminal.
"""

import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

_last_progress = {"at": 0.0}


def progress(line: str | Callable[[], str], *, every: float = 1.0, force: bool = False) -> None:
    """Print at most one line per `every` seconds (unless forced). A callable is only
    called when a line is due: building one may cost an HTTP round trip."""
    now = time.monotonic()
    if force or now - _last_progress["at"] >= every:
        _last_progress["at"] = now
        text = line() if callable(line) else line
        print(f"[bench] {text}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | int | None]:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "samples": len(latencies_ms),
        "p50_ms": rounded(percentile(latencies_ms, 50)),
        "p95_ms": rounded(percentile(latencies_ms, 95)),
        "p99_ms": rounded(percentile(latencies_ms, 99)),
        "max_ms": rounded(max(latencies_ms)) if latencies_ms else None,
    }


# --- the final report ---------------------------------------------------------------

Row = tuple[str, str, str, str, str]  # figure, Botfleet, baseline, ratio, target/verdict


def fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs:
        return ""
    return f"{ours / theirs:.2f}x"


def verdict(value: float | None, target: float, *, at_most: bool) -> str:
    if value is None:
        return "n/a"
    met = value <= target if at_most else value >= target
    return "met" if met else "MISSED"


def target(text: str, value: float | None, goal: float, *, at_most: bool) -> str:
    return f"{text} {verdict(value, goal, at_most=at_most)}"


def table(rows: list[Row], *, with_baseline: bool) -> str:
    header: Row = (
        "figure",
        "Botfleet",
        "PTB baseline" if with_baseline else "",
        "ratio" if with_baseline else "",
        "target",
    )
    all_rows = [header, *rows]
    widths = [max(len(row[i]) for row in all_rows) for i in range(5)]
    lines = []
    for row in all_rows:
        cells = [row[i].ljust(widths[i]) for i in range(5) if with_baseline or i not in (2, 3)]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def section(title: str, body: list[str]) -> str:
    return "\n".join([f"== {title} ==", *body, ""])
