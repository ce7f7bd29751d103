"""The figures of each scenario as a plain-text table, with the issue's targets beside
them and how many samples each figure rests on."""

from typing import Any

from benchmarks.report import Row, fmt, ratio, section, table, target

Figures = dict[str, Any]

TARGET_BURST_RPS = 300
TARGET_BURST_PEER_RATIO = 1.0  # Botfleet replies/s over the PTB peer's
TARGET_PACED_P50_MS = 30
TARGET_PACED_P99_MS = 150
TARGET_IDLE_RSS_MIB = 1024
TARGET_IDLE_CPU_CORES = 0.1
TARGET_RECOVERY_S = 60


def render(results: dict[str, Figures], header: list[str]) -> str:
    parts = [section("Botfleet load benchmark", header)]
    for name, figures in results.items():
        if "error" in figures:
            parts.append(section(name, [f"  did not complete: {figures['error']}"]))
            continue
        parts.append(RENDERERS[name](figures))
    return "\n".join(parts)


# --- burst and paced -------------------------------------------------------------------


def _load_rows(ours: Figures, theirs: Figures | None) -> list[Row]:
    def pair(getter: Any, unit: str = "") -> tuple[str, str]:
        return fmt(getter(ours), unit), fmt(getter(theirs), unit) if theirs else ""

    def latency(key: str) -> Row:
        mine, base = ours["latency"][key], theirs["latency"][key] if theirs else None
        return (
            f"latency {key[:-3]} (ms)",
            fmt(mine),
            fmt(base) if theirs else "",
            ratio(mine, base),
            "",
        )

    rows: list[Row] = [
        (
            "replies/s (first injection to last reply)",
            *pair(lambda f: f["replies_per_s"]),
            ratio(ours["replies_per_s"], theirs["replies_per_s"] if theirs else None),
            "",
        ),
        (
            "lost replies",
            f"{ours['lost']} of {ours['messages']}",
            f"{theirs['lost']} of {theirs['messages']}" if theirs else "",
            "",
            "",
        ),
        ("chats with duplicate replies", *pair(lambda f: f["duplicate_chats"]), "", ""),
        ("replies not echoing the message", *pair(lambda f: f["wrong_text"]), "", ""),
        (
            "latency samples (one per answered message)",
            *pair(lambda f: f["latency"]["samples"]),
            "",
            "",
        ),
        latency("p50_ms"),
        latency("p95_ms"),
        latency("p99_ms"),
        latency("max_ms"),
        (
            "peak RSS, system under test (MiB)",
            fmt(ours["rss_peak_mib"].get("workers")),
            fmt(theirs["rss_peak_mib"].get("baseline")) if theirs else "",
            "",
            f"{ours['rss_samples']} samples",
        ),
        (
            "CPU, system under test (cores)",
            fmt(ours["cpu_cores"].get("workers"), digits=2),
            fmt(theirs["cpu_cores"].get("baseline"), digits=2) if theirs else "",
            "",
            "",
        ),
        ("CPU, emulator (cores)", *pair(lambda f: _cores(f, "emulator")), "", ""),
        ("CPU, driver (cores)", *pair(lambda f: _cores(f, "driver")), "", ""),
        (
            "machine CPU busy (all cores, anyone's)",
            *pair(lambda f: f"{f['machine_cpu_busy']:.0%}"),
            "",
            "",
        ),
        (
            "injection",
            *pair(
                lambda f: f"{f['messages']} in {f['injection_s']} s ({f['injection_rate_per_s']}/s)"
            ),
            "",
            "",
        ),
        ("measured window (s)", *pair(lambda f: f["window_s"]), "", ""),
    ]
    return rows


def _cores(f: Figures, group: str) -> str:
    return fmt(f["cpu_cores"].get(group), digits=2)


def _load_notes(ours: Figures, theirs: Figures | None) -> list[str]:
    notes = [
        f"  Botfleet: {ours['bots']} bots ({ours['polling_bots']} polling before the load), "
        f"start failures {ours['start_failures']}; beat CPU {fmt(ours['cpu_cores'].get('beat'), digits=3)} cores",
        f"  Botfleet message log (incoming by reply state): {ours['reply_states']}",
        f"  Botfleet tasks: {ours['tasks']}",
        _logs_line("Botfleet worker/beat logs", ours["logs"]),
    ]
    if theirs:
        notes.append(f"  PTB baseline (the peer), as given: {peer_given(theirs.get('given'))}")
        notes.append(f"  PTB baseline handler errors: {theirs['errors'] or 'none'}")
    for who, figures in (("Botfleet", ours), ("PTB baseline", theirs)):
        if figures:
            notes.append(f"  {who} latency by stage (ms, p50 / p95 / p99, samples):")
            notes.extend(
                _stage_line(stage, summary) for stage, summary in figures["stages"].items()
            )
    return notes


def peer_given(given: Figures | None) -> str:
    """What the PTB peer was built with, as it reported it."""
    if not given:
        return "n/a"
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


def peer_ratio_target(ours: float | None, theirs: float | None, goal: float) -> str:
    """'>= 1.0x the peer met' (or MISSED, or n/a without a peer figure)."""
    value = ours / theirs if ours and theirs else None
    return target(f">= {goal:g}x the peer", value, goal, at_most=False)


def _stage_line(stage: str, s: Figures) -> str:
    return (
        f"      {stage:<36} {fmt(s['p50_ms'])} / {fmt(s['p95_ms'])} / {fmt(s['p99_ms'])}"
        f"  (n={s['samples']})"
    )


def _logs_line(title: str, logs: Figures) -> str:
    line = f"  {title}: {logs['warnings']} warnings, {logs['errors']} errors, {logs['tracebacks']} tracebacks"
    for message, count in logs["top"].items():
        line += f"\n      {count:>5} x {message}"
    return line


def render_burst(figures: Figures) -> str:
    ours, theirs = figures["botfleet"], figures.get("baseline")
    rows = _load_rows(ours, theirs)
    goal = target(f">= {TARGET_BURST_RPS}", ours["replies_per_s"], TARGET_BURST_RPS, at_most=False)
    if theirs:
        goal += "; " + peer_ratio_target(
            ours["replies_per_s"], theirs["replies_per_s"], TARGET_BURST_PEER_RATIO
        )
    rows[0] = (*rows[0][:4], goal)
    rows[1] = (*rows[1][:4], target("0", ours["lost"], 0, at_most=True))
    rows[2] = (*rows[2][:4], target("0", ours["duplicate_chats"], 0, at_most=True))
    p = figures["params"]
    title = (
        f"burst: {p['bots']} bots, {p['messages']} messages, {p['workers']} worker(s) x "
        f"{p['concurrency']} threads, poll timeout {p['poll_timeout_s']} s"
    )
    return section(
        title, [table(rows, with_baseline=theirs is not None), *_load_notes(ours, theirs)]
    )


def render_paced(figures: Figures) -> str:
    ours, theirs = figures["botfleet"], figures.get("baseline")
    rows = _load_rows(ours, theirs)
    p50, p99 = ours["latency"]["p50_ms"], ours["latency"]["p99_ms"]
    rows[5] = (
        *rows[5][:4],
        target(f"<= {TARGET_PACED_P50_MS}", p50, TARGET_PACED_P50_MS, at_most=True),
    )
    rows[7] = (
        *rows[7][:4],
        target(f"<= {TARGET_PACED_P99_MS}", p99, TARGET_PACED_P99_MS, at_most=True),
    )
    p = figures["params"]
    title = (
        f"paced: {p['bots']} bots, {p['rate']:g} messages/s for {p['duration']:g} s, "
        f"{p['workers']} worker(s) x {p['concurrency']} threads, poll timeout {p['poll_timeout_s']} s"
    )
    return section(
        title, [table(rows, with_baseline=theirs is not None), *_load_notes(ours, theirs)]
    )


# --- idle and recovery -------------------------------------------------------------------


def render_idle(f: Figures) -> str:
    p = f["params"]
    sys_rss, sys_cpu = f["rss_peak_mib"].get("system"), f["cpu_cores"].get("system")
    rss, cpu = f["rss_peak_mib"].get("workers"), f["cpu_cores"].get("workers")
    start, poll, floor = f["task_start_call_s"], f["start_to_first_poll_s"], f.get("floor", {})
    per_cycle = _per_cycle_ms(f, floor)
    parts = ["workers", "beat", *(["web"] if p.get("web") else []), *(["redis"] if f.get("redis_measured") else [])]
    rows: list[Row] = [
        (
            "starting all tasks (s, wall)",
            fmt(f["start_wall_s"]),
            "",
            "",
            f"{f['start_failures']} failed",
        ),
        (
            "task_start call (s) median / max",
            f"{fmt(start['median'], digits=3)} / {fmt(start['max'], digits=3)}",
            "",
            "",
            f"n={start['samples']}",
        ),
        (
            "Start to first getUpdates (s) median / max",
            f"{fmt(poll['median'], digits=3)} / {fmt(poll['max'], digits=3)}",
            "",
            "",
            f"n={poll['samples']}",
        ),
        ("bots never polled after Start", fmt(f["never_polled"]), "", "", ""),
        ("idle window (s)", fmt(f["idle_window_s"]), "", "", ""),
        (
            "WHOLE SYSTEM CPU in window (cores)",
            fmt(sys_cpu, digits=3),
            "",
            "",
            target(f"<= {TARGET_IDLE_CPU_CORES}", sys_cpu, TARGET_IDLE_CPU_CORES, at_most=True)
            + f"; {' + '.join(parts)}",
        ),
        (
            "WHOLE SYSTEM RSS, peak in window (MiB)",
            fmt(sys_rss),
            "",
            "",
            target(f"<= {TARGET_IDLE_RSS_MIB}", sys_rss, TARGET_IDLE_RSS_MIB, at_most=True)
            + f"; summed per sample, {f['rss_samples']} samples",
        ),
        (
            "  whole system PSS, end of window (MiB)",
            fmt(f.get("system_pss_end_mib")),
            "",
            "",
            "shared pages split between processes (summed RSS counts them per process)",
        ),
        (
            "  CPU (cores): workers / beat / web / Redis",
            " / ".join(fmt(f["cpu_cores"].get(k), digits=3) for k in ("workers", "beat", "web", "redis")),
            "",
            "",
            "",
        ),
        (
            "  RSS peak (MiB): workers / beat / web / Redis",
            " / ".join(fmt(f["rss_peak_mib"].get(k)) for k in ("workers", "beat", "web", "redis")),
            "",
            "",
            "",
        ),
        ("workers RSS, peak in window (MiB)", fmt(rss), "", "", ""),
        ("workers RSS, end of window (MiB)", fmt(f["rss_end_mib"].get("workers")), "", "", ""),
        ("workers CPU in window (cores)", fmt(cpu, digits=3), "", "", ""),
        (
            "bots polled in window",
            f"{f['bots_polled_in_window']} of {f['bots']}",
            "",
            "",
            f"each bot polls once per poll timeout ({p['poll_timeout_s']} s)",
        ),
        (
            "no bot running: workers CPU (cores) / RSS (MiB)",
            f"{fmt(floor.get('workers_cpu_cores'), digits=3)} / {fmt(floor.get('workers_rss_mib'))}",
            "",
            "",
            f"over {fmt(floor.get('window_s'))} s",
        ),
        (
            "no bot running: whole system CPU (cores) / RSS (MiB)",
            f"{fmt(floor.get('system_cpu_cores'), digits=3)} / {fmt(floor.get('system_rss_mib'))}",
            "",
            "",
            "",
        ),
        ("workers CPU per getUpdates cycle, above that (ms)", fmt(per_cycle), "", "", "derived"),
        ("getUpdates calls in window", fmt(f["get_updates_in_window"]), "", "", ""),
        (
            "not the system: emulator / driver CPU (cores)",
            " / ".join(fmt(f["cpu_cores"].get(k), digits=3) for k in ("emulator", "driver")),
            "",
            "",
            "",
        ),
        ("emulator RSS peak (MiB)", fmt(f["rss_peak_mib"].get("emulator")), "", "", ""),
        ("machine CPU busy (all cores, anyone's)", f"{f['machine_cpu_busy']:.0%}", "", "", ""),
    ]
    title = (
        f"idle: {p['bots']} bots, {p['duration']:g} s idle, poll timeout {p['poll_timeout_s']} s "
        f"({p['poll_timeout_source']}), {p['workers']} worker(s) x {p['concurrency']} threads"
    )
    notes = [f"  tasks: {f['tasks']}", _logs_line("worker/beat logs", f["logs"])]
    if not f.get("redis_measured"):
        notes.append("  Redis: REDIS_URL given, not ours: not in the whole-system figures")
    notes.append(
        "  the database: SQLite lives inside the processes above; a PostgreSQL server "
        "(DATABASE_URL) is not measured"
    )
    if f["start_failure_examples"]:
        notes.append(f"  start failures, e.g.: {f['start_failure_examples']}")
    return section(title, [table(rows, with_baseline=False), *notes])


def _per_cycle_ms(f: Figures, floor: Figures) -> float | None:
    """Workers' CPU per poll cycle in the idle window, above the no-bot floor: what
    scales with the number of bots (times bots / poll timeout = cycles per second)."""
    cycles, cpu_s = f["get_updates_in_window"], f["cpu_s"].get("workers")
    if not cycles or cpu_s is None or floor.get("workers_cpu_cores") is None:
        return None
    return round((cpu_s - floor["workers_cpu_cores"] * f["idle_window_s"]) * 1000 / cycles, 1)


def render_recovery(f: Figures) -> str:
    spread, latency = f["kill_to_poll_s"], f["latency"]
    rows: list[Row] = [
        (
            "kill to every bot polling again (s)",
            fmt(f["kill_to_all_polling_s"]),
            "",
            "",
            target(
                f"<= {TARGET_RECOVERY_S}",
                f["kill_to_all_polling_s"],
                TARGET_RECOVERY_S,
                at_most=True,
            ),
        ),
        (
            "kill to first poll per bot (s) median / max",
            f"{fmt(spread['median'])} / {fmt(spread['max'])}",
            "",
            "",
            f"n={spread['samples']}",
        ),
        ("bots polled again", f"{f['bots_polled_again']} of {f['bots']}", "", "", ""),
        (
            "outage (kill to restart) / workers ready (s)",
            f"{f['outage_s']} / {f['workers_ready_after_kill_s']}",
            "",
            "",
            "",
        ),
        (
            "outage messages answered",
            f"{f['answered']} of {f['outage_messages']}",
            "",
            "",
            target("all", f["lost"], 0, at_most=True),
        ),
        (
            "chats with duplicate replies",
            fmt(f["duplicate_chats"]),
            "",
            "",
            target("0", f["duplicate_chats"], 0, at_most=True),
        ),
        ("replies not echoing the message", fmt(f["wrong_text"]), "", "", ""),
        (
            "message to reply (s) median / max",
            f"{fmt(_s(latency['p50_ms']))} / {fmt(_s(latency['max_ms']))}",
            "",
            "",
            f"n={latency['samples']}",
        ),
    ]
    p = f["params"]
    title = (
        f"recovery: {p['bots']} bots, {p['workers']} worker(s) SIGKILLed, supervisor via {p['supervisor']}, "
        f"poll timeout {p['poll_timeout_s']} s, lease grace {p['lease_grace_s']} s"
    )
    notes = [
        f"  message log: {f['reply_states']}",
        f"  tasks: {f['tasks']}",
        _logs_line("worker/beat logs (both generations)", f["logs"]),
    ]
    return section(title, [table(rows, with_baseline=False), *notes])


def _s(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 1)


RENDERERS = {
    "burst": render_burst,
    "paced": render_paced,
    "idle": render_idle,
    "recovery": render_recovery,
}
