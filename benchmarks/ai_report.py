"""The AI benchmark's figures as plain text, the issue's targets beside them."""

from typing import Any

from benchmarks.report import Row, fmt, ratio, section, table, target, verdict
from benchmarks.summary import peer_given, peer_ratio_target

Figures = dict[str, Any]

TARGET_AI_PER_S = 90.0  # burst and throughput (benchmarks.ai_load)
TARGET_PEER_RATIO = 0.9


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


def _pair(figure: str, ours: Figures, peer: Figures | None, get: Any, note: str = "", *, rate: bool = False) -> Row:
    """A row with Botfleet's value, the peer's and (for rates and latencies) the ratio."""
    mine, theirs = get(ours), get(peer) if peer else None
    shown = fmt(theirs) if peer else ""
    return (figure, fmt(mine), shown, ratio(mine, theirs) if rate else "", note)


def _peer_rows(ours: Figures, peer: Figures | None) -> list[Row]:
    """Rows both sides have: outcome, latency, Gemini requests, CPU and memory."""

    def lat(key: str) -> Any:
        return lambda f: f["latency"][key]

    def counts(f: Figures) -> str:
        return f"{f['messages']} / {f['answered']} / {f['lost']}"

    def kinds(f: Figures) -> str:
        return f"{f['ai']} / {f['fallback']} / {f['other']}"

    def cpu(f: Figures) -> Any:
        group = "baseline" if f is peer else "workers"
        return f["cpu_cores"].get(group)

    def rss(f: Figures) -> Any:
        group = "baseline" if f is peer else "workers"
        return f["rss_peak_mib"].get(group)

    return [
        ("messages sent / answered / lost", counts(ours), counts(peer) if peer else "", "", ""),
        (
            "replies: AI / fallback / other",
            kinds(ours),
            kinds(peer) if peer else "",
            "",
            target("fallback 0", ours["fallback"], 0, at_most=True),
        ),
        _pair("chats with more replies than messages", ours, peer, lambda f: f["duplicate_chats"]),
        _pair("latency p50 (ms), injection to reply", ours, peer, lat("p50_ms"), rate=True),
        _pair("latency p95 (ms)", ours, peer, lat("p95_ms"), rate=True),
        _pair("latency p99 (ms)", ours, peer, lat("p99_ms"), rate=True),
        _pair("latency max (ms)", ours, peer, lat("max_ms"), f"n={ours['latency']['samples']}"),
        _pair("Gemini emulator: requests", ours, peer, lambda f: f["gemini"]["requests"]),
        _pair(
            "CPU, system under test (cores)", ours, peer, cpu,
            "Botfleet: its workers; the peer: its one process",
        ),
        _pair("peak RSS, system under test (MiB)", ours, peer, rss),
        _pair(
            "CPU, Telegram emu / Gemini emu / driver (cores)", ours, peer,
            lambda f: " / ".join(
                fmt(f["cpu_cores"].get(k), digits=2) for k in ("emulator", "gemini", "driver")
            ),
        ),
        _pair(
            "machine CPU busy (all cores, anyone's)", ours, peer,
            lambda f: f"{f['machine_cpu_busy']:.0%}",
        ),
    ]


def _peer_notes(peer: Figures | None) -> list[str]:
    if not peer:
        return ["  PTB peer: not run (--no-baseline)"]
    return [
        f"  PTB peer, as given: {peer_given(peer.get('given'))}",
        f"  PTB peer: {peer['bots']} bots of its own and a warm-up bot ({peer['polling_bots']} "
        "polling), the same "
        f"Telegram emulator and the same Gemini emulator process (same latency, its record "
        f"cleared before); Botfleet's workers and beat stopped first; warm-up {peer['warm_up']}",
        f"  PTB peer handler errors: {peer['errors'] or 'none'}; Gemini statuses "
        f"{peer['gemini']['statuses']}",
    ]


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


def _ai_rate_target(ours: float | None, theirs: float | None, peer: bool, quick: bool) -> str:
    if quick:  # 100 messages at 2 s latency cannot make 90/s, whoever answers
        text = f"(>= {TARGET_AI_PER_S:g} at the issue's sizes)"
    else:
        text = target(f">= {TARGET_AI_PER_S:g}", ours, TARGET_AI_PER_S, at_most=False)
    if peer:
        text += "; " + peer_ratio_target(ours, theirs, TARGET_PEER_RATIO)
    return text


def render_burst(f: Figures) -> str:
    p, peer = f["params"], f.get("peer")
    rows: list[Row] = [
        _row("bots; messages, all at once, each from a user of its own", f"{p['bots']}; {f['messages']}"),
        (
            "AI replies/s (first message written to last AI reply)",
            fmt(f["ai_per_s"]),
            fmt(peer["ai_per_s"]) if peer else "",
            ratio(f["ai_per_s"], peer["ai_per_s"] if peer else None),
            _ai_rate_target(
                f["ai_per_s"], peer["ai_per_s"] if peer else None, peer is not None, p["quick"]
            ),
        ),
        _pair("all replies/s (same span, to the last reply)", f, peer, lambda x: x["replies_per_s"], rate=True),
        _pair(
            "injection (s)", f, peer,
            lambda x: f"{x['injection_s']} ({x['injection_rate_per_s']}/s)",
        ),
        *_peer_rows(f, peer),
    ]
    title = (
        f"burst (AI): {p['bots']} bots, {p['messages']} messages at once, Gemini latency "
        f"{p['latency']:g} s, {p['workers']} worker(s) x {p['concurrency']} threads, "
        f"poll timeout {p['poll_timeout_s']} s"
        + ("  [--quick smoke sizes]" if p["quick"] else "")
    )
    # AI calls wait on each worker's I/O loop, not in threads: no note on thread counts.
    notes = _peer_notes(peer) + _notes(f)
    return section(title, [table(rows, with_baseline=True), *notes])


def render_throughput(f: Figures) -> str:
    p, peer = f["params"], f.get("peer")
    goal = round(f["ceiling_per_s"] * 0.9, 1)
    steady = (
        f"replies in [{f['steady_window_s'][0]:g} s, {f['steady_window_s'][1]:g} s] of the load"
    )
    ai_target = target(f">= {goal:g} (90% of the ceiling)", f["ai_per_s_steady"], goal, at_most=False)
    if peer:
        ai_target += "; " + peer_ratio_target(f["ai_per_s_steady"], peer["ai_per_s_steady"], TARGET_PEER_RATIO)
    rows: list[Row] = [
        (
            "chats (bots x users), each writing again on each reply",
            f"{f['chats']} ({p['bots']} x {p['users']})",
            str(peer["chats"]) if peer else "",
            "",
            "",
        ),
        _pair("ceiling: chats / Gemini latency (replies/s)", f, peer, lambda x: x["ceiling_per_s"]),
        (
            "AI replies/s, steady",
            fmt(f["ai_per_s_steady"]),
            fmt(peer["ai_per_s_steady"]) if peer else "",
            ratio(f["ai_per_s_steady"], peer["ai_per_s_steady"] if peer else None),
            ai_target + f"; {steady}",
        ),
        _pair("all replies/s, steady", f, peer, lambda x: x["replies_per_s_steady"], rate=True),
        _pair(
            "AI replies/s, whole load window", f, peer, lambda x: x["ai_per_s_whole"],
            f"{p['duration']:g} s", rate=True,
        ),
        _pair(
            "users stopped (no reply within the timeout)", f, peer, lambda x: x["user_timeouts"],
            f"timeout {p['reply_timeout_s']:g} s",
        ),
        _pair(
            "Gemini requests per AI reply", f, peer,
            lambda x: round(x["gemini"]["requests"] / x["ai"], 3) if x["ai"] else None,
        ),
        *_peer_rows(f, peer),
    ]
    for who, figures in (("Botfleet", f), ("peer", peer)):
        if figures and figures["user_errors"]:
            rows.append(_row(f"driver: user thread errors ({who})", str(figures["user_errors"])))
    title = (
        f"throughput: {f['chats']} chats, Gemini latency {p['latency']:g} s, {p['duration']:g} s, "
        f"{p['workers']} worker(s) x {p['concurrency']} threads, poll timeout {p['poll_timeout_s']} s"
        + ("  [--quick smoke sizes]" if p["quick"] else "")
    )
    notes = _peer_notes(peer) + _notes(f)
    return section(title, [table(rows, with_baseline=True), *notes])


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


RENDERERS = {"burst": render_burst, "throughput": render_throughput, "ratelimit": render_ratelimit}
