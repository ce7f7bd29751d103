"""The AI benchmark's figures as plain text, the issue's targets beside them."""

from typing import Any

from benchmarks.report import Row, fmt, section, table, target, verdict

Figures = dict[str, Any]


def render(results: dict[str, Figures], header: list[str]) -> str:
    parts = [section("Botfleet AI load benchmark", header)]
    for name, figures in results.items():
        if "error" in figures:
            parts.append(section(name, [f"  did not complete: {figures['error']}"]))
            continue
        parts.append(RENDERERS[name](figures))
    return "\n".join(parts)


def _row(figure: str, value: str, note: str = "") -> Row:
    return (figure, value, "", "", note)


def _ms(s: Figures) -> str:
    return f"{fmt(s['p50_ms'])} / {fmt(s['p95_ms'])} / {fmt(s['p99_ms'])} / {fmt(s['max_ms'])}"


def _common_rows(f: Figures) -> list[Row]:
    g = f["gemini"]
    cores = f["cpu_cores"]
    return [
        _row(
            "latency p50 / p95 / p99 / max (ms), injection to reply",
            _ms(f["latency"]),
            f"n={f['latency']['samples']}",
        ),
        _row("  of AI answers", _ms(f["latency_ai"]), f"n={f['latency_ai']['samples']}"),
        _row("  of fallbacks", _ms(f["latency_fallback"]), f"n={f['latency_fallback']['samples']}"),
        _row("Gemini emulator: requests (by HTTP status)", f"{g['requests']:,} {g['statuses']}"),
        _row("Gemini emulator: most requests in any 1 s", fmt(g["max_in_1s"])),
        _row(
            "CPU (cores): workers / Telegram emu / Gemini emu / driver / beat",
            " / ".join(
                fmt(cores.get(k), digits=2)
                for k in ("workers", "emulator", "gemini", "driver", "beat")
            ),
            f"over {f['window_s']} s",
        ),
        _row("peak RSS workers (MiB)", fmt(f["rss_peak_mib"].get("workers"))),
        _row("machine CPU busy (all cores, anyone's)", f"{f['machine_cpu_busy']:.0%}"),
    ]


def _notes(f: Figures) -> list[str]:
    s = f["setup"]
    lines = [
        f"  set-up: {s['bots']} bots incl. the warm-up bot, {s['polling_bots']} polling, "
        f"{s['start_failures']} start failures; warm-up (own credential, not measured): {s['warm_up']}",
        f"  message log (incoming by reply state): {f['reply_states']}",
        f"  tasks: {f['tasks']}",
        f"  credential usage (database): {f['credential']}",
        f"  why replies were not the AI's (errors stored on the replies): {f['reply_errors'] or 'none'}",
        f"  AI settings: {f['ai_settings']}",
        f"  Gemini requests per wall-clock minute: {f['gemini']['per_minute']}",
        _logs_line(f["logs"]),
        "  latency by stage (ms, p50 / p95 / p99 / max, samples):",
    ]
    for stage, summary in f["stages"].items():
        lines.append(f"      {stage:<42} {_ms(summary)}  (n={summary['samples']})")
    if f["other"]:
        lines.append(f"  replies neither AI nor fallback, e.g.: {f['other_examples']}")
    return lines


def _logs_line(logs: Figures) -> str:
    line = (
        f"  worker/beat logs: {logs['warnings']} warnings, {logs['errors']} errors, "
        f"{logs['tracebacks']} tracebacks"
    )
    for message, count in logs["top"].items():
        line += f"\n      {count:>5} x {message}"
    return line


def render_throughput(f: Figures) -> str:
    p = f["params"]
    goal = round(f["ceiling_per_s"] * 0.9, 1)
    steady = (
        f"replies in [{f['steady_window_s'][0]:g} s, {f['steady_window_s'][1]:g} s] of the load"
    )
    rows: list[Row] = [
        _row(
            "chats (bots x users), each writing again on each reply",
            f"{f['chats']} ({p['bots']} x {p['users']})",
        ),
        _row("ceiling: chats / Gemini latency (replies/s)", fmt(f["ceiling_per_s"])),
        (
            "AI replies/s, steady",
            fmt(f["ai_per_s_steady"]),
            "",
            "",
            target(f">= {goal:g} (90% of the ceiling)", f["ai_per_s_steady"], goal, at_most=False)
            + f"; {steady}",
        ),
        _row("all replies/s, steady", fmt(f["replies_per_s_steady"])),
        _row("AI replies/s, whole load window", fmt(f["ai_per_s_whole"]), f"{p['duration']:g} s"),
        _row(
            "messages sent / answered / lost",
            f"{f['messages']} / {f['answered']} / {f['lost']}",
            f"lost: no reply within {p['reply_timeout_s']:g} s ({f['user_timeouts']} users stopped)",
        ),
        (
            "replies: AI / fallback / other",
            f"{f['ai']} / {f['fallback']} / {f['other']}",
            "",
            "",
            target("fallback 0", f["fallback"], 0, at_most=True),
        ),
        _row(
            "chats with more replies than messages",
            fmt(f["duplicate_chats"]),
            f"{f['extra_replies']} extra replies",
        ),
        _row(
            "Gemini requests per AI reply",
            fmt(f["gemini"]["requests"] / f["ai"] if f["ai"] else None, digits=3),
        ),
        *_common_rows(f),
    ]
    if f["user_errors"]:
        rows.append(_row("driver: user thread errors", str(f["user_errors"])))
    title = (
        f"throughput: {f['chats']} chats, Gemini latency {p['latency']:g} s, {p['duration']:g} s, "
        f"{p['workers']} worker(s) x {p['concurrency']} threads"
        + ("  [--quick smoke sizes]" if p["quick"] else "")
    )
    notes = _notes(f)
    if p["workers"] * p["concurrency"] < f["chats"]:
        notes.insert(0, "  NOTE: fewer worker threads than chats: AI calls queue for a thread.")
    return section(title, [table(rows, with_baseline=False), *notes])


def render_ratelimit(f: Figures) -> str:
    p = f["params"]
    g = f["gemini"]
    share = f["answered_within_share"]
    rows: list[Row] = [
        _row("credential limit (requests/minute)", fmt(p["rpm"])),
        _row(
            "offered: messages/s (distinct chats) for s",
            f"{p['rate']:g}/s for {p['duration']:g} s = {f['messages']}",
            f"{f['injection_rate_per_s']}/s achieved; {p['rate'] * 60 / p['rpm']:.1f}x the limit",
        ),
        (
            "Gemini emulator: most requests in any 60 s",
            fmt(g["max_in_60s"]),
            "",
            "",
            target(f"<= {p['rpm']}", g["max_in_60s"], p["rpm"], at_most=True),
        ),
        (
            f"answered (AI or fallback) within {f['answered_within_s']:g} s",
            f"{f['answered_within']} of {f['messages']} ({fmt(share * 100 if share is not None else None, '%', 2)})",
            "",
            "",
            f">= 99% {verdict(share, 0.99, at_most=False)}",
        ),
        _row("answered at all / lost", f"{f['answered']} / {f['lost']}"),
        _row(
            "replies: AI / fallback / other",
            f"{f['ai']} / {f['fallback']} / {f['other']}",
            f"AI share {fmt(100 * f['ai'] / f['messages'] if f['messages'] else None, '%')}; "
            f"limit x load minutes = {p['rpm'] * p['duration'] / 60:g}",
        ),
        _row(
            "chats with more than one reply",
            fmt(f["duplicate_chats"]),
            f"{f['extra_replies']} extra",
        ),
        *_common_rows(f),
    ]
    scaled = (
        f"  [--quick: limit and load scaled down from 600/min and 20/s for 90 s; "
        f"here {p['rpm']}/min, {p['rate']:g}/s for {p['duration']:g} s]"
        if p["quick"]
        else ""
    )
    title = (
        f"ratelimit: {p['rpm']} requests/minute offered {p['rate']:g} messages/s, Gemini latency "
        f"{p['latency']:g} s, {p['workers']} worker(s) x {p['concurrency']} threads{scaled}"
    )
    return section(title, [table(rows, with_baseline=False), *_notes(f)])


RENDERERS = {"throughput": render_throughput, "ratelimit": render_ratelimit}
