"""Progress lines while a benchmark runs, and the one renderer of every benchmark's
report: plain-text tables of figures (ours beside the peer's, their ratio, the target and
its verdict), notes, log and profile summaries. Each benchmark gives only which figures
to show (`Fig` rows, note lines) and its titles.

Progress goes to stderr and the report to stdout, so `> report.txt` keeps the report
clean while the progress stays on the terminal.
"""

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


# --- figures ------------------------------------------------------------------------------

Figures = dict[str, Any]
Row = tuple[str, str, str, str, str]  # figure, ours, the peer's, ratio, target or note
PEER_HEADER: Row = ("figure", "Botfleet", "PTB baseline", "ratio", "target")
PERCENTILES = ("p50_ms", "p95_ms", "p99_ms", "max_ms")


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


def peer_ratio_target(ours: float | None, theirs: float | None, goal: float) -> str:
    """'>= 1.0x the peer met' (or MISSED, or n/a without a peer figure)."""
    value = ours / theirs if ours and theirs else None
    return target(f">= {goal:g}x the peer", value, goal, at_most=False)


def percentiles(summary: Figures, keys: Sequence[str] = PERCENTILES) -> str:
    """'p50 / p95 / p99 / max' of a latency summary (ms)."""
    return " / ".join(fmt(summary.get(key)) for key in keys)


# --- tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fig:
    """A row of a table: a figure read with `get` from ours and, beside it, from the
    peer's (`peer`: True, the same getter; a getter of its own; False, a figure the peer
    has not), their ratio (`ratio`: True, of the two figures; a getter, of another figure
    of each, e.g. the p99 of a row that shows p50 / p95 / p99), and `note` in the last
    column (a target and its verdict, the samples, a remark). A getter may return a
    number (shown with `digits`) or text."""

    label: str
    get: Callable[[Figures], Any]
    note: str = ""
    digits: int = 1
    ratio: bool | Callable[[Figures], Any] = False
    peer: bool | Callable[[Figures], Any] = True


def table(
    figs: Sequence[Fig],
    ours: Figures,
    theirs: Figures | None = None,
    *,
    header: Row = PEER_HEADER,
    flip: bool = False,
) -> str:
    """The figures of ours and, when given, the peer's (theirs) with the ratio ours /
    theirs (`flip`: theirs / ours); without a peer those two columns are left out."""
    return layout([_row(fig, ours, theirs, flip) for fig in figs], header, peer=theirs is not None)


def _row(fig: Fig, ours: Figures, theirs: Figures | None, flip: bool) -> Row:
    mine, shown, quotient = fig.get(ours), "", ""
    get = fig.get if fig.peer is True else fig.peer
    if theirs is not None and callable(get):
        try:
            base = get(theirs)
        except (KeyError, TypeError):  # a figure the peer's run did not produce
            base, shown = None, "n/a"
        else:
            shown = fmt(base, digits=fig.digits)
        if fig.ratio and base is not None:
            a, b = (fig.ratio(ours), fig.ratio(theirs)) if callable(fig.ratio) else (mine, base)
            quotient = ratio(b, a) if flip else ratio(a, b)
    return (fig.label, fmt(mine, digits=fig.digits), shown, quotient, fig.note)


def layout(rows: Sequence[Row], header: Row, *, peer: bool = True) -> str:
    """Rows under `header`, each column as wide as its widest cell; `peer` False leaves
    out the peer's and the ratio columns."""
    every = [header, *rows]
    shown = [i for i in range(5) if peer or i not in (2, 3)]
    widths = {i: max(len(row[i]) for row in every) for i in shown}
    return "\n".join(
        "  " + "  ".join(row[i].ljust(widths[i]) for i in shown).rstrip() for row in every
    )


# --- sections and notes ----------------------------------------------------------------------


def section(title: str, body: list[str]) -> str:
    return "\n".join([f"== {title} ==", *body, ""])


def failed(name: str, figures: Figures) -> str:
    return section(name, [f"  did not complete: {figures['error']}"])


def renderer(
    title: str, sections: dict[str, Callable[[Figures], str]]
) -> Callable[[dict[str, Figures], list[str]], str]:
    """A command's report: `title` over the run's header, then each scenario's section
    (or what stopped it)."""

    def render(results: dict[str, Figures], header: list[str]) -> str:
        parts = [section(title, header)]
        for name, figures in results.items():
            parts.append(failed(name, figures) if "error" in figures else sections[name](figures))
        return "\n".join(parts)

    return render


def logs_line(title: str, logs: Figures, indent: str = "  ") -> str:
    """A `logscan.log_summary`: the counts, then the most frequent messages."""
    line = (
        f"{indent}{title}: {logs['warnings']} warnings, {logs['errors']} errors, "
        f"{logs['tracebacks']} tracebacks"
    )
    for message, count in logs["top"].items():
        line += f"\n{indent}    {count:>5} x {message}"
    return line


def stage_lines(title: str, stages: dict[str, Figures], indent: str = "  ") -> list[str]:
    """Latency by stage: one line per stage, its percentiles and samples."""
    width = max((len(stage) for stage in stages), default=0)
    return [
        f"{indent}{title} (ms, p50 / p95 / p99 / max, samples):",
        *(
            f"{indent}    {stage:<{width}}  {percentiles(summary)}  (n={summary['samples']})"
            for stage, summary in stages.items()
        ),
    ]


def profile_lines(profile: Figures | None, heading: str, indent: str = "  ", top: int = 15) -> list[str]:
    """A `profiling.summarize` (py-spy): by library, the project's functions, the
    innermost frames."""
    if not profile:
        return []
    if "error" in profile:
        return [f"{indent}{heading}: {profile['error']}"]
    roots = f", by thread root {profile['samples_by_root']}" if profile.get("samples_by_root") else ""
    raw = f"; {profile['raw_file']}" if profile.get("raw_file") else ""
    lines = [f"{indent}{heading} ({profile['samples']} samples at 200/s{roots}{raw}):"]
    for title, key in (
        ("innermost (self) frames by library", "self_by_library_pct"),
        ("project functions, inclusive", "project_inclusive_pct"),
        ("innermost (self) frames", "self_pct"),
    ):
        lines.append(f"{indent}  {title} (% of samples):")
        lines += [f"{indent}    {pct:5.1f}%  {name}" for name, pct in profile.get(key, [])[:top]]
    return lines


def peer_given(given: Figures | None) -> str:
    """What a PTB peer was built with, as it reported it (polling, AI, or webhook)."""
    if not given:
        return "n/a"
    if "webhook" in given:
        return (
            f"{given['builder']}; concurrent_updates={given['concurrent_updates']}; {given['webhook']}; "
            f"handler {given['handler']}; {given['process']}"
        )
    request, updates = given["request"], given["get_updates_request"]
    text = (
        f"{given['builder']}: concurrent_updates={given['concurrent_updates']} per bot, "
        f"connection_pool_size={request['connection_pool_size']} (pool_timeout "
        f"{request['pool_timeout_s']} s), get_updates pool {updates['connection_pool_size']}, "
        f"poll timeout {given['poll_timeout_s']} s; one process, one asyncio loop"
    )
    if "ai" in given:
        ai = given["ai"]
        text += f"; AI: {ai['client']}, model {ai['model']}, system instruction {ai['system_instruction']!r}"
    return text
