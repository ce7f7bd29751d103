"""The webhook benchmark's figures as plain-text tables, beside the issue's targets and
the PTB webhook peer's figures."""

from typing import Any

from benchmarks.report import Row, fmt, ratio, section, table, target
from benchmarks.summary import _logs_line, render_idle
from benchmarks.webhook_load import TARGET_INGEST_P99_MS, TARGET_INGEST_PER_S

Figures = dict[str, Any]


def render(results: dict[str, Figures], header: list[str]) -> str:
    parts = [section("Botfleet webhook benchmark", header)]
    for name, figures in results.items():
        if "error" in figures:
            parts.append(section(name, [f"  did not complete: {figures['error']}"]))
            continue
        parts.append(RENDERERS[name](figures))
    return "\n".join(parts)


# --- ingest ---------------------------------------------------------------------------------


def _ingest_rows(ours: Figures, theirs: Figures | None, server: str) -> list[Row]:
    closed, paced = ours["closed"], ours["paced"]
    tc, tp = (theirs["closed"], theirs["paced"]) if theirs else ({}, {})

    def peer(get: Any, digits: int = 1) -> str:
        if not theirs:
            return ""
        try:
            return fmt(get(theirs), digits=digits)
        except (KeyError, TypeError):
            return "n/a"

    rate, p99 = closed["accepted_per_s"], paced["latency"]["p99_ms"]
    rows: list[Row] = [
        (
            f"accepted updates/s, closed loop ({closed['connections']} connections)",
            fmt(rate), peer(lambda f: f["closed"]["accepted_per_s"]),
            ratio(rate, tc.get("accepted_per_s")),
            target(f">= {TARGET_INGEST_PER_S:g}", rate, TARGET_INGEST_PER_S, at_most=False),
        ),
        (
            "  latency of the 200 p50 / p99 (ms), closed loop",
            f"{fmt(closed['latency']['p50_ms'])} / {fmt(closed['latency']['p99_ms'])}",
            peer(lambda f: f"{fmt(f['closed']['latency']['p50_ms'])} / {fmt(f['closed']['latency']['p99_ms'])}"),
            "", "queueing: connections / rate (Little's law)",
        ),
        *_light_rows(ours, theirs),
        (
            f"paced at {fmt(paced['offered_per_s'], digits=0)}/s: achieved updates/s",
            fmt(paced["accepted_per_s"]), peer(lambda f: f["paced"]["accepted_per_s"]), "",
            f"{paced.get('not_sent', 0)} not sent (fell behind)" if paced.get("not_sent") else "",
        ),
        (
            "paced: latency of the 200 p50 (ms)",
            fmt(paced["latency"]["p50_ms"]), peer(lambda f: f["paced"]["latency"]["p50_ms"]),
            ratio(paced["latency"]["p50_ms"], tp.get("latency", {}).get("p50_ms")), "",
        ),
        (
            "paced: latency of the 200 p95 (ms)",
            fmt(paced["latency"]["p95_ms"]), peer(lambda f: f["paced"]["latency"]["p95_ms"]),
            ratio(paced["latency"]["p95_ms"], tp.get("latency", {}).get("p95_ms")), "",
        ),
        (
            "paced: latency of the 200 p99 (ms)",
            fmt(p99), peer(lambda f: f["paced"]["latency"]["p99_ms"]),
            ratio(p99, tp.get("latency", {}).get("p99_ms")),
            target(f"<= {TARGET_INGEST_P99_MS:g}", p99, TARGET_INGEST_P99_MS, at_most=True),
        ),
        (
            "paced: latency max (ms); samples",
            f"{fmt(paced['latency']['max_ms'])}; n={paced['latency']['samples']}",
            peer(lambda f: f"{fmt(f['paced']['latency']['max_ms'])}; n={f['paced']['latency']['samples']}"),
            "", "from the scheduled send time",
        ),
        (
            "non-2xx answers / client errors (closed + paced)",
            _errors(closed, paced), peer(lambda f: _errors(f["closed"], f["paced"])), "", "0",
        ),
        (
            "server CPU (cores), closed loop",
            fmt(closed["cpu_cores"].get(server), digits=2),
            peer(lambda f: f["closed"]["cpu_cores"].get("baseline"), digits=2), "",
            "gunicorn master + workers" if server == "web" else "",
        ),
        (
            "server CPU per accepted update (ms), closed loop",
            fmt(closed["server_cpu_ms_per_update"], digits=2),
            peer(lambda f: f["closed"]["server_cpu_ms_per_update"], digits=2),
            ratio(closed["server_cpu_ms_per_update"], tc.get("server_cpu_ms_per_update")), "",
        ),
        (
            "Redis CPU (cores), closed loop",
            fmt(closed["cpu_cores"].get("redis"), digits=2),
            peer(lambda f: f["closed"]["cpu_cores"].get("redis"), digits=2), "", "",
        ),
        (
            "load generator CPU (cores), closed loop",
            fmt(closed["client_cpu_cores"], digits=2), peer(lambda f: f["closed"]["client_cpu_cores"], digits=2),
            "", "Telegram's side, same machine",
        ),
        (
            "peak RSS of the server (MiB)",
            fmt(max(closed["rss_peak_mib"].get(server, 0), paced["rss_peak_mib"].get(server, 0))),
            peer(lambda f: max(f["closed"]["rss_peak_mib"].get("baseline", 0), f["paced"]["rss_peak_mib"].get("baseline", 0))),
            "", "",
        ),
        (
            "machine CPU busy, closed / paced",
            f"{closed['machine_cpu_busy']:.0%} / {paced['machine_cpu_busy']:.0%}",
            peer(lambda f: f"{f['closed']['machine_cpu_busy']:.0%} / {f['paced']['machine_cpu_busy']:.0%}"),
            "", "",
        ),
        (
            "  of which not the benchmark's (cores), closed / paced",
            f"{fmt(closed.get('others_cpu_cores'), digits=2)} / {fmt(paced.get('others_cpu_cores'), digits=2)}",
            peer(lambda f: f"{fmt(f['closed'].get('others_cpu_cores'), digits=2)} / {fmt(f['paced'].get('others_cpu_cores'), digits=2)}"),
            "", "other people's processes on the machine",
        ),
    ]
    return rows


def _light_rows(ours: Figures, theirs: Figures | None) -> list[Row]:
    """The latency well within capacity (half the closed loop's rate), when measured."""
    light = ours.get("light")
    if not light:
        return []
    lat = light["latency"]
    return [(
        f"paced at {fmt(light['offered_per_s'], digits=0)}/s (half the closed loop's): p50 / p99 (ms)",
        f"{fmt(lat['p50_ms'])} / {fmt(lat['p99_ms'])}", "", "",
        f"achieved {fmt(light['accepted_per_s'])}/s; n={lat['samples']}",
    )]


def _errors(closed: Figures, paced: Figures) -> str:
    non = sum(closed["not_2xx"].values()) + sum(paced["not_2xx"].values())
    errors = sum(closed["errors"].values()) + sum(paced["errors"].values())
    return f"{non} / {errors}"


def render_ingest(f: Figures) -> str:
    p = f["params"]
    theirs = f.get("baseline")
    parts = []
    for n, (worker_class, ours) in enumerate(f["botfleet"].items()):
        peer = theirs if n == 0 else None
        title = (
            f"ingest ({worker_class}"
            + (f" x {p['threads']} threads" if worker_class == "gthread" else "")
            + f"): {p['bots']} webhook bots, gunicorn {p['web_workers']} workers, no Celery worker; "
            f"{p['duration']:g} s closed loop, then {p['rate']:g}/s for {p['duration']:g} s"
        )
        notes = [
            f"  2xx answers in every run (warm-up, measured, profiled): {ours['accepted_all_runs']}; "
            f"pushes kept for the workers meanwhile: {ours['stored_all_runs']} (the two should be equal); "
            f"drains asked for (the replies queue): {fmt(ours['queued_for_workers'])} "
            f"(at most one due per bot at a time)",
            f"  not 2xx: closed {ours['closed']['not_2xx'] or 'none'}, paced {ours['paced']['not_2xx'] or 'none'}; "
            f"client errors: closed {ours['closed']['errors'] or 'none'}, paced {ours['paced']['errors'] or 'none'}",
            f"  paced, latency from the request's own start (no wait for a connection) p50 / p99: "
            f"{fmt(ours['paced']['service']['p50_ms'])} / {fmt(ours['paced']['service']['p99_ms'])} ms",
            _logs_line("gunicorn log", ours["web_log"])
            + "\n      (32 of the Forbidden are the warm-up's POSTs to a webhook of no bot, by design)",
        ]
        if peer:
            notes.append(f"  PTB webhook peer, as given: {_given(peer.get('given'))}")
            notes.append(f"  PTB peer handler errors: {peer.get('errors_logged') or 'none'}")
        notes.extend(_profile_lines(ours.get("profile")))
        parts.append(section(title, [table(_ingest_rows(ours, peer, "web"), with_baseline=peer is not None), *notes]))
    if len(f["botfleet"]) > 1:
        parts.append(_class_comparison(f["botfleet"], p))
    if not f["botfleet"] and theirs:  # --no-botfleet: the peer alone
        title = f"ingest: the PTB webhook peer alone, {p['bots']} bots"
        parts.append(section(title, [table(_ingest_rows(theirs, None, "baseline"), with_baseline=False),
                                     f"  as given: {_given(theirs.get('given'))}"]))
    if f.get("baseline_error"):
        parts.append(f"  the PTB webhook peer did not run: {f['baseline_error']}\n")
    fleet = f["fleet"]
    parts.append(
        f"  fleet: {fleet['running']} of {fleet['bots']} tasks running after Start ({fleet['start_wall_s']} s, "
        f"{fleet['start_failures']} failures); tasks: {f.get('tasks')}\n"
    )
    return "\n".join(parts)


def _class_comparison(by_class: dict[str, Figures], p: Figures) -> str:
    rows: list[Row] = []
    for worker_class, ours in by_class.items():
        name = worker_class + (f" x {p['threads']}" if worker_class == "gthread" else "")
        light = ours.get("light")
        rows.append((
            name,
            f"{fmt(ours['closed']['accepted_per_s'])}/s",
            f"p50 {fmt(light['latency']['p50_ms'])} / p99 {fmt(light['latency']['p99_ms'])} ms at "
            f"{fmt(light['offered_per_s'])}/s" if light else "n/a",
            f"p99 {fmt(ours['paced']['latency']['p99_ms'])} ms (p50 {fmt(ours['paced']['latency']['p50_ms'])})",
            f"{fmt(ours['closed']['server_cpu_ms_per_update'], digits=2)} ms CPU/update",
        ))
    header: Row = ("worker class", "closed loop", "half load", f"paced {p['rate']:g}/s", "web CPU")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    lines = ["  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in [header, *rows]]
    return section("ingest: gunicorn worker classes side by side", lines)


def _given(given: Figures | None) -> str:
    if not given:
        return "n/a"
    return (
        f"{given['builder']}; concurrent_updates={given['concurrent_updates']}; {given['webhook']}; "
        f"handler {given['handler']}; {given['process']}"
    )


def _profile_lines(profile: Figures | None) -> list[str]:
    if not profile:
        return []
    if "error" in profile:
        return [f"  profile: {profile['error']}"]
    lines = [
        f"  py-spy on gunicorn under load ({profile['samples']} samples at 200/s, "
        f"{fmt(profile['accepted_per_s_while_profiled'])} updates/s while profiled; {profile['raw_file']}):",
        "    project functions, inclusive (% of samples):",
    ]
    lines += [f"      {pct:5.1f}%  {name}" for name, pct in profile["project_inclusive_pct"][:15]]
    lines.append("    innermost (self) frames by library:")
    lines += [f"      {pct:5.1f}%  {name}" for name, pct in profile.get("self_by_library_pct", [])[:10]]
    lines.append("    innermost (self) frames:")
    lines += [f"      {pct:5.1f}%  {name}" for name, pct in profile["self_pct"][:15]]
    return lines


# --- e2e ----------------------------------------------------------------------------------------


def _settles(f: Figures) -> str:
    return "; ".join(
        f"{key.replace('_settle', '')}: {f[key]['pending_updates']} pending after {f[key]['waited_s']} s"
        for key in ("paced_settle", "burst_settle", "after_settle") if key in f
    )


def _e2e_rows(ours: Figures, theirs: Figures | None, server: str = "web") -> list[Row]:
    def pair(get: Any, digits: int = 1) -> tuple[str, str]:
        return fmt(get(ours), digits=digits), (fmt(get(theirs), digits=digits) if theirs else "")

    rows: list[Row] = []
    for phase in ("paced", "burst"):
        o, t = ours[phase], theirs[phase] if theirs else None
        lat, tlat = o["latency"], t["latency"] if t else {}
        rows += [
            (
                f"{phase}: replies/s (first message to last reply)",
                *pair(lambda f, ph=phase: f[ph]["replies_per_s"]), ratio(o["replies_per_s"], t["replies_per_s"] if t else None), "",
            ),
            (
                f"{phase}: lost replies",
                f"{o['lost']} of {o['messages']}", f"{t['lost']} of {t['messages']}" if t else "", "",
                target("0", o["lost"], 0, at_most=True),
            ),
            (
                f"{phase}: chats with duplicate replies",
                *pair(lambda f, ph=phase: f[ph]["duplicate_chats"]), "",
                target("0", o["duplicate_chats"], 0, at_most=True),
            ),
            (f"{phase}: replies not echoing the message", *pair(lambda f, ph=phase: f[ph]["wrong_text"]), "", ""),
            (
                f"{phase}: message to reply p50 / p95 / p99 (ms)",
                f"{fmt(lat['p50_ms'])} / {fmt(lat['p95_ms'])} / {fmt(lat['p99_ms'])}",
                f"{fmt(tlat['p50_ms'])} / {fmt(tlat['p95_ms'])} / {fmt(tlat['p99_ms'])}" if t else "",
                ratio(lat["p99_ms"], tlat.get("p99_ms")), f"n={lat['samples']}",
            ),
            (
                f"{phase}: CPU (cores) web / workers / beat / Redis" if server == "web" else f"{phase}: CPU (cores) the peer",
                " / ".join(fmt(o["cpu_cores"].get(k), digits=2) for k in (("web", "workers", "beat", "redis") if server == "web" else ("baseline",))),
                fmt(t["cpu_cores"].get("baseline"), digits=2) if t else "", "", "peer: its one process",
            ),
            (
                f"{phase}: CPU (cores) emulator / driver; machine busy",
                f"{fmt(o['cpu_cores'].get('emulator'), digits=2)} / {fmt(o['cpu_cores'].get('driver'), digits=2)}; {o['machine_cpu_busy']:.0%}",
                f"{fmt(t['cpu_cores'].get('emulator'), digits=2)} / {fmt(t['cpu_cores'].get('driver'), digits=2)}; {t['machine_cpu_busy']:.0%}" if t else "",
                "", "",
            ),
            (
                f"{phase}: peak RSS web + workers (MiB)" if server == "web" else f"{phase}: peak RSS the peer (MiB)",
                fmt(o["rss_peak_mib"].get("web", 0) + o["rss_peak_mib"].get("workers", 0) + o["rss_peak_mib"].get("baseline", 0)),
                fmt(t["rss_peak_mib"].get("baseline")) if t else "", "", "",
            ),
        ]
    return rows


def render_e2e(f: Figures) -> str:
    p, ours, theirs = f["params"], f.get("botfleet"), f.get("baseline")
    if ours is None:  # --no-botfleet: the peer alone
        title = f"e2e: the PTB webhook peer alone, {p['bots']} bots"
        notes = [f"  as given: {_given(theirs.get('given'))}", f"  deliveries: {theirs['deliveries']}; "
                 f"handler errors: {theirs.get('errors_logged') or 'none'}; settling: {_settles(theirs)}"]
        return section(title, [table(_e2e_rows(theirs, None, "baseline"), with_baseline=False), *notes])
    title = (
        f"e2e: {p['bots']} webhook bots, the emulator pushing to gunicorn ({p['web_workers']} x "
        f"{p['worker_class']}), {p['workers']} Celery worker(s) x {p['concurrency']} threads; "
        f"{p['rate']:g} messages/s for {p['duration']:g} s, then a burst of {p['messages']}"
    )
    notes = [
        f"  Botfleet: fleet {ours['fleet']}",
        f"  Botfleet webhook deliveries (emulator's attempts): {ours['deliveries']}",
        f"  Botfleet, the emulator's pushes left before each phase and once every reply was in: {_settles(ours)}",
        f"  TIME_WAIT sockets before the peer started: {ours.get('time_wait_after')}",
        f"  Botfleet message log (incoming by reply state): {ours['reply_states']}",
        f"  Botfleet tasks: {ours['tasks']}",
        _logs_line("Botfleet worker/beat logs", ours["logs"]),
        _logs_line("gunicorn log", ours["web_log"]),
    ]
    if f.get("baseline_error"):
        notes.append(f"  the PTB webhook peer did not run: {f['baseline_error']}")
    if theirs:
        notes.append(f"  PTB webhook peer, as given: {_given(theirs.get('given'))}")
        notes.append(f"  PTB peer webhook deliveries: {theirs['deliveries']}; handler errors: {theirs.get('errors_logged') or 'none'}")
        notes.append(f"  PTB peer, the emulator's pushes left: {_settles(theirs)}")
    for phase in ("paced", "burst"):
        for who in ("web", "worker"):
            profile = ours[phase].get(f"profile_{who}")
            if profile:
                notes.append(f"  PROFILED ({phase}, {who}: gunicorn / Celery worker 1): under py-spy, "
                             "slower; do not report these figures")
                notes += _profile_lines({"accepted_per_s_while_profiled": None, **profile})
    for who, figures in (("Botfleet", ours), ("PTB peer", theirs)):
        if figures:
            for phase in ("paced", "burst"):
                notes.append(f"  {who} {phase} latency by stage (ms, p50 / p95 / p99, samples):")
                notes += [
                    f"      {stage:<44} {fmt(s['p50_ms'])} / {fmt(s['p95_ms'])} / {fmt(s['p99_ms'])}  (n={s['samples']})"
                    for stage, s in figures[phase]["stages"].items()
                ]
    return section(title, [table(_e2e_rows(ours, theirs), with_baseline=theirs is not None), *notes])


# --- idle ---------------------------------------------------------------------------------------


def render_idle_all(f: Figures) -> str:
    parts = []
    if "polling" in f:
        polling = f["polling"]
        parts.append(
            render_idle(polling) if "error" not in polling
            else section("idle (polling)", [f"  did not complete: {polling['error']}"])
        )
    webhook = f["webhook"]
    if "error" in webhook:
        parts.append(section("idle (webhook)", [f"  did not complete: {webhook['error']}"]))
    else:
        parts.append(_render_webhook_idle(webhook, f["params"], f.get("polling")))
    return "\n".join(parts)


def _render_webhook_idle(w: Figures, p: Figures, polling: Figures | None) -> str:
    windows = w["windows"]
    names = {"just_started": "just after Start", "nothing_due": "no check due", "steady": "steady state"}
    parts = ["workers", "beat", "web", *(["redis"] if w.get("redis_measured") else [])]
    rows: list[Row] = []
    for key, label in names.items():
        win = windows[key]
        cores, rss = win["cpu_cores"].get("system"), win["rss_peak_mib"].get("system")
        checks = win["bot_api_calls"].get("getWebhookInfo", 0)
        rows += [
            (
                f"{label}: WHOLE SYSTEM CPU (cores)",
                fmt(cores, digits=4), "", "",
                f"{' + '.join(parts)}; {checks} getWebhookInfo in {win['window_s']} s",
            ),
            (
                f"{label}: CPU (cores) workers / beat / web / Redis",
                " / ".join(fmt(win["cpu_cores"].get(k), digits=4) for k in ("workers", "beat", "web", "redis")),
                "", "", "",
            ),
            (f"{label}: WHOLE SYSTEM RSS peak (MiB)", fmt(rss), "", "", ""),
        ]
    steady, quiet = windows["steady"], windows["nothing_due"]
    checks = steady["bot_api_calls"].get("getWebhookInfo", 0)
    extra_s = steady["cpu_s"].get("system", 0) - quiet["cpu_s"].get("system", 0) * steady["window_s"] / max(quiet["window_s"], 0.1)
    per_check_ms = extra_s * 1000 / checks if checks else None
    per_hour = 3600 / w["webhook_info_interval_s"]
    rows += [
        (
            "CPU per getWebhookInfo check (ms), steady minus no-check window",
            fmt(per_check_ms, digits=2), "", "", "derived; the system's CPU only, not the emulator's",
        ),
        (
            "checks per bot per hour; CPU per bot per hour (ms)",
            f"{per_hour:g}; {fmt(per_check_ms * per_hour if per_check_ms is not None else None, digits=1)}",
            "", "", f"WEBHOOK_INFO_INTERVAL {w['webhook_info_interval_s']:g} s",
        ),
        (
            f"whole fleet of {w['fleet']['bots']:,}: steady-state checks/s; cores for them",
            f"{w['fleet']['bots'] / w['webhook_info_interval_s']:.1f}; "
            + fmt(per_check_ms / 1000 * w['fleet']['bots'] / w['webhook_info_interval_s'] if per_check_ms is not None else None, digits=4),
            "", "", "",
        ),
        ("no bot running: whole system CPU (cores) / RSS (MiB)",
         f"{fmt(w['floor'].get('system_cpu_cores'), digits=4)} / {fmt(w['floor'].get('system_rss_mib'))}", "", "", ""),
        ("whole system PSS at the end (MiB)", fmt(w.get("pss_end_mib")), "", "", ""),
    ]
    if polling and "error" not in polling:
        rows.append((
            f"polling, {polling['bots']:,} bots, same run: whole system CPU (cores) / RSS peak (MiB)",
            f"{fmt(polling['cpu_cores'].get('system'), digits=4)} / {fmt(polling['rss_peak_mib'].get('system'))}",
            "", "", "web: gunicorn 3 workers there (the Dockerfile's)",
        ))
    fleet = w["fleet"]
    title = (
        f"idle (webhook): {fleet['bots']:,} webhook bots ({fleet['running']:,} running, started in "
        f"{fleet['start_wall_s']} s, {fleet['start_failures']} failures), {p['duration']:g} s windows; "
        f"gunicorn {p['web_workers']} x {p['worker_class']}, {p['workers']} Celery worker(s), beat"
    )
    notes = [
        f"  supervisor every {w['supervisor_interval_s']:g} s, at most 200 getWebhookInfo per round; "
        "just after Start every check is due (webhook_checked_at empty)",
        "  Bot API calls per window: " + "; ".join(f"{names[k]}: {windows[k]['bot_api_calls'] or 'none'}" for k in names),
        f"  tasks: {w['tasks']}",
        _logs_line("worker/beat logs", w["logs"]),
        _logs_line("gunicorn log", w["web_log"]),
    ]
    return section(title, [table(rows, with_baseline=False), *notes])


RENDERERS = {"ingest": render_ingest, "e2e": render_e2e, "idle": render_idle_all}
