"""Streaming benchmark: Botfleet's real workers answering private chats with Gemini (the
Gemini emulator, a process of its own) through the Telegram emulator, with the persona's
`stream_replies` on (drafts with sendMessageDraft while the answer streams, then the
final message) and off (the whole answer, then the message), side by side in one run.

    python -m benchmarks.streaming_load [--phase latency|burst|all] [--chat private|group]
        [--quick] [--repeat N] [--first-chunk S] [--total S] [--chunks N] [--workers K]
        [--profile] [--json FILE]

The answer takes the same time either way: streamed, the Gemini emulator sends the first
chunk after --first-chunk (0.3 s) and the last at --total (2 s), --chunks (8) in all;
not streamed, it answers whole after --total (its --latency).

latency: 10 bots, 5 messages/s for 30 s (150 private chats, about 10 answers in flight):
    time from the user's message (the update's `injected_at`) to the first draft the
    emulator received, p50/p95 (target p50 <= 0.6 s), against the time to the final
    message with streaming off (about 2 s) and on.
burst: the AI burst of `benchmarks.ai_load` (100 bots, 1,000 messages at once): AI
    replies/s from the first message written to the last AI reply, streaming on vs off
    (target: not lower with streaming), and the same draft figures under load.
Both phases, both modes: every final message compared with the full text the Gemini
emulator generated for it (mismatches counted), and drafts per chat: the most draft
updates any chat got in any 1 s window (target <= 1).

--chat group (latency only): each message in a group of its own, mentioning the bot,
and the persona's `stream_group_edits` on with streaming (a preview message sent at
once, ending with " …", edited at most every 1.5 s, the final text by the outbox's last
edit). Figures:
time to the first visible text (on: the preview; off: the answer; target p50 <= 0.6 s)
and to the final text (on: the preview's last edit), edits per reply, the preview's
updates (its send and streamed edits): the most in any 1.5 s window (target <= 1) and
the smallest gap, the final text of the bot's message against the generated text, and
previews left with the " …" mark (target 0).

Each (phase, mode) gets a fresh Gemini emulator and a fresh rig (Telegram emulator, K
Celery workers, beat), stream off first. Sets up everything itself (temporary SQLite or
DATABASE_URL, embedded Redis or REDIS_URL), prints progress on stderr and the report on
stdout, and stops every process it started, also on Ctrl-C and SIGTERM. See
benchmarks/README.md ("Streaming").
"""

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks import runner
from benchmarks.report import (
    Fig,
    Row,
    fmt,
    layout,
    logs_line,
    percentiles,
    profile_lines,
    ratio,
    section,
    stage_lines,
    table,
    target,
    verdict,
)

PHASES = ["latency", "burst"]
CHATS = ["private", "group"]
MODES = ["off", "on"]  # off first: the reference
FULL: dict[str, dict[str, float]] = {
    "latency": {"bots": 10, "messages": 0, "rate": 5.0, "duration": 30.0},
    "burst": {"bots": 100, "messages": 1000, "rate": 0.0, "duration": 0.0},
}
QUICK: dict[str, dict[str, float]] = {
    "latency": {"bots": 4, "messages": 0, "rate": 2.0, "duration": 10.0},
    "burst": {"bots": 10, "messages": 100, "rate": 0.0, "duration": 0.0},
}
TARGET_FIRST_DRAFT_P50_MS = 600.0
TARGET_DRAFTS_IN_1S = 1
# Long enough for several chunks (the Gemini emulator echoes it), no Markdown in it.
FILLER = (
    "please tell me in a few plain sentences how the tide comes in over the flats at dusk, "
    "what the birds do then, and why the water looks so still just before it turns"
)

Figures = dict[str, Any]


@dataclass(frozen=True)
class StreamParams:
    phase: str  # latency | burst
    mode: str  # on | off: the persona's stream_replies (and stream_group_edits)
    chat: str  # private | group: each message in a chat of its own of this kind
    bots: int
    messages: int  # burst: messages at once
    rate: float  # latency: messages per second, each from a user of its own
    duration: float  # latency: seconds of load
    first_chunk_s: float  # streamed: the Gemini emulator's first chunk after this
    total_s: float  # the whole answer (streamed: the last chunk; not: the latency)
    chunks: int
    workers: int
    concurrency: int
    drain_s: float
    quick: bool
    worker_loglevel: str
    profile_workers: bool = False
    profile: bool = False  # py-spy on the first worker while the load runs
    run: int = 1  # --repeat: which pair this is

    @property
    def name(self) -> str:  # also the rig's: its log files and the fleet's label
        return run_name(self.phase, self.mode, self.run)

    @property
    def streams(self) -> bool:
        return self.mode == "on"

    @property
    def chunk_delay_s(self) -> float:
        return (self.total_s - self.first_chunk_s) / max(1, self.chunks - 1)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.streaming_load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--phase", choices=[*PHASES, "all"], default="all")
    parser.add_argument(
        "--chat",
        choices=CHATS,
        default="private",
        help="each message in a private chat of its own (drafts), or in a group of its own "
        "(a preview edited as the answer grows: the persona's stream_group_edits; --phase "
        "latency only); default private",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-test sizes: latency 4 bots at 2 messages/s for 10 s; burst 10 bots x 100",
    )
    parser.add_argument("--bots", type=int, help="bots (latency 10, burst 100; --quick 4, 10)")
    parser.add_argument("--messages", type=int, help="burst: messages at once (1,000; --quick 100)")
    parser.add_argument("--rate", type=float, help="latency: messages per second (5; --quick 2)")
    parser.add_argument("--duration", type=float, help="latency: seconds of load (30; --quick 10)")
    parser.add_argument(
        "--first-chunk", type=float, default=0.3, help="streamed: seconds to the first chunk (0.3)"
    )
    parser.add_argument(
        "--total", type=float, default=2.0, help="seconds to the whole answer, either way (2)"
    )
    parser.add_argument("--chunks", type=int, default=8, help="streamed: chunks per answer (8)")
    parser.add_argument(
        "--drain", type=float, help="seconds to wait for the last replies (60; --quick 30)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each phase's off/on pair this many times, alternating (the report gives "
        "every pair and the medians; default 1)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy on the first worker while the load runs (implies --keep-files; a "
        "profiled run is slower: never report its figures)",
    )
    runner.worker_options(parser, concurrency=128)
    runner.common_options(parser)
    args = runner.options_parse(
        parser, argv,
        positive=("bots", "messages", "rate", "duration", "total", "chunks", "drain", "workers",
                  "concurrency", "repeat"),
    )
    if not 0 <= args.first_chunk <= args.total:
        parser.error("--first-chunk must be between 0 and --total")
    if args.chat == "group" and args.phase != "latency":
        parser.error(
            "--chat group: only --phase latency (the burst's AI replies/s would time a reply "
            "by its preview, not by its final text)"
        )
    args.keep_files = args.keep_files or args.profile  # the raw samples stay in the logs
    return args


def run_name(phase: str, mode: str, n: int) -> str:
    """"burst-on" for the first run of a (phase, mode), "burst-on-2" for the second..."""
    return f"{phase}-{mode}" if n == 1 else f"{phase}-{mode}-{n}"


def params_for(phase: str, mode: str, args: argparse.Namespace, run: int = 1) -> StreamParams:
    sizes = (QUICK if args.quick else FULL)[phase]

    def pick(key: str) -> float:  # an option the phase has no use for stays 0
        given = getattr(args, key)
        return sizes[key] if given is None or not sizes[key] else given

    return StreamParams(
        phase=phase,
        mode=mode,
        chat=args.chat,
        bots=args.bots or int(sizes["bots"]),
        messages=int(pick("messages")),
        rate=pick("rate"),
        duration=pick("duration"),
        first_chunk_s=args.first_chunk,
        total_s=args.total,
        chunks=args.chunks,
        workers=args.workers,
        concurrency=args.concurrency,
        drain_s=args.drain or (30.0 if args.quick else 60.0),
        quick=args.quick,
        worker_loglevel=args.worker_loglevel,
        profile_workers=args.profile_workers,
        profile=args.profile,
        run=run,
    )


# --- one (phase, mode) -----------------------------------------------------------------------


def run_one(ctx: Any, p: StreamParams) -> Figures:
    """A Gemini emulator paced for the mode and a fresh rig; every process stopped
    afterwards (workers before the Gemini emulator)."""
    from benchmarks import procs
    from benchmarks.ai_load import gemini_start
    from benchmarks.report import progress
    from benchmarks.rigging import with_rig
    from benchmarks.stack import Rig
    from emulators.gemini import GeminiEmulatorClient

    pacing = (
        f"first chunk {p.first_chunk_s:g} s, last {p.total_s:g} s, {p.chunks} chunks"
        if p.streams
        else f"whole answer after {p.total_s:g} s"
    )
    progress(f"{p.name}: starting the Gemini emulator ({pacing})", force=True)
    child, gemini = None, None
    try:
        child, url = gemini_start(ctx.stack, p.name, 0.0 if p.streams else p.total_s)
        gemini = GeminiEmulatorClient(url, timeout=60)
        if p.streams:
            gemini.set_stream_timing(
                first_chunk_delay=p.first_chunk_s, chunk_delay=p.chunk_delay_s, chunks=p.chunks
            )
        rig = Rig(
            ctx.stack,
            p.name,
            workers=p.workers,
            concurrency=p.concurrency,
            loglevel=p.worker_loglevel,
            profile=p.profile_workers,
        )
        return with_rig(ctx, rig, lambda emulator: measure(ctx, p, rig, emulator, gemini, child, url))
    finally:
        if gemini is not None:
            gemini.close()
        if child is not None:
            procs.stop(child, grace=5)


def measure(
    ctx: Any, p: StreamParams, rig: Any, emulator: Any, gemini: Any, child: Any, url: str
) -> Figures:
    from benchmarks import traffic
    from benchmarks.ai_load import Meter, _after, _finish, ai_up, burst_rates
    from benchmarks.ai_traffic import Sent, analyse
    from benchmarks.profiling import spy_finish, spy_start
    from benchmarks.report import progress
    from benchmarks.streaming_traffic import as_asked, db_timings, still_writing, stream_analyse

    fleet, setup = ai_up(ctx, rig, emulator, gemini, url, _ai_params(p))
    tokens = [bot.token for bot in fleet.bots]
    counter = traffic.ReplyCounter(emulator)
    inject = traffic.inject_in_group if p.chat == "group" else traffic.inject_one

    def text(n: int) -> str:
        return f"{p.name} message {n}: {FILLER}"

    spy = spy_start(rig, f"{p.name}-worker", rig.workers[0].pid) if p.profile else None
    commands_before = _redis_commands(ctx.stack.redis_url)
    with Meter(rig, child) as meter:
        if p.phase == "burst":
            injected, inject_s = traffic.inject_burst(
                emulator, tokens, p.messages, users=ctx.users, counter=counter, label=p.name,
                text=text,
            )
        else:
            injected, inject_s = traffic.inject_paced(
                emulator, tokens, rate=p.rate, duration=p.duration, users=ctx.users,
                counter=counter, label=p.name, text=text, inject=inject,
            )
        deadline = time.monotonic() + p.drain_s
        while counter.count() < len(injected) and time.monotonic() < deadline:
            progress(lambda: counter.rate_line(p.name, len(injected)))
            time.sleep(0.25)
        # A group's preview counts as its reply at once: wait for the final texts too.
        while p.chat == "group" and time.monotonic() < deadline and (writing := still_writing(emulator, tokens)):
            progress(lambda writing=writing: f"{p.name}: {writing} previews still being written")
            time.sleep(0.25)
        time.sleep(traffic.DUPLICATE_GRACE_S)
    commands = _redis_commands(ctx.stack.redis_url)
    profile = spy if isinstance(spy, dict) or spy is None else spy_finish(*spy)
    injected = as_asked(gemini, injected)  # a group's message as the AI got it: where, who
    sent = [Sent(i.token, i.chat_id, i.update_id, i.text) for i in injected]
    outcome = analyse(emulator, sent, fleet.fallback)
    progress(f"{p.name}: {outcome.answered}/{outcome.messages} answered", force=True)
    figures = {
        "params": asdict(p) | {"chunk_delay_s": round(p.chunk_delay_s, 3)} | ctx.stack.polling(),
        "setup": setup,
        "injection_s": round(inject_s, 2),
        "injection_rate_per_s": round(len(injected) / inject_s, 1) if inject_s else None,
        **burst_rates(outcome),
        **outcome.figures(),
        "streaming": stream_analyse(emulator, gemini, injected, chat=p.chat).figures(),
        "db": db_timings([bot.bot_pk for bot in fleet.bots]),
        **_after(fleet, gemini),
        **meter.figures,
        "others_cores": _others(meter.figures),
        "workers_cpu_ms_per_reply": _per_reply(meter.figures, outcome.answered),
        "redis_per_reply": _commands_per_reply(commands_before, commands, outcome.answered),
        "profile": profile,
    }
    return _finish(rig, fleet, figures)


def _redis_commands(url: str) -> dict[str, int]:
    """Redis's own count of the commands it ran, by command (INFO commandstats)."""
    import redis

    try:
        stats = redis.Redis.from_url(url, socket_timeout=5).info("commandstats")
    except redis.RedisError:
        return {}
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def _commands_per_reply(before: dict[str, int], after: dict[str, int], replies: int) -> Figures:
    """Redis commands over the load window per reply (everyone's: workers, beat, the
    Celery broker), the total and the five most frequent."""
    if not replies or not after:
        return {}
    spent = {name: n - before.get(name, 0) for name, n in after.items()}
    spent = {name: n for name, n in spent.items() if n > 0 and name != "info"}
    top = sorted(spent.items(), key=lambda item: -item[1])[:5]
    return {
        "total": round(sum(spent.values()) / replies, 1),
        **{name: round(n / replies, 1) for name, n in top},
    }


def _per_reply(figures: Figures, replies: int) -> float | None:
    """The workers' CPU over the load window, per reply (ms): idle polling included."""
    cores = figures["cpu_cores"].get("workers")
    if not replies or cores is None:
        return None
    return round(cores * figures["window_s"] * 1000 / replies, 1)


def _others(figures: Figures) -> float:
    """Cores the machine spent on anything but the measured groups (Redis included: on a
    shared machine, other sessions' work)."""
    import psutil

    busy = figures["machine_cpu_busy"] * (psutil.cpu_count() or 1)
    return round(max(0.0, busy - sum(figures["cpu_cores"].values())), 2)


def _ai_params(p: StreamParams) -> Any:
    """What `ai_load.ai_up` needs: sizes, workers, the persona's switch, no rate limit."""
    from benchmarks.ai_load import AiParams

    return AiParams(
        scenario=p.name,
        bots=p.bots,
        users=1,
        messages=p.messages,
        duration=p.duration,
        latency=p.total_s,
        rpm=100_000,
        rate=p.rate,
        workers=p.workers,
        concurrency=p.concurrency,
        warm_up_s=0.0,
        reply_timeout_s=p.drain_s,
        drain_s=p.drain_s,
        quick=p.quick,
        worker_loglevel=p.worker_loglevel,
        profile_workers=p.profile_workers,
        baseline=False,
        stream_replies=p.streams,
        stream_group_edits=p.streams and p.chat == "group",
    )


# --- the run -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from benchmarks.rigging import Context
    from benchmarks.traffic import UserIds

    phases = PHASES if args.phase == "all" else [args.phase]
    # off, on, off, on...: a shared machine's load shifts between runs, pairs see alike.
    plans = {
        run_name(phase, mode, n): params_for(phase, mode, args, n)
        for phase in phases
        for n in range(1, args.repeat + 1)
        for mode in MODES
    }
    outcome = runner.scenarios_run(
        names=list(plans),
        keep_files=args.keep_files,
        context=lambda stack: Context(stack=stack, users=UserIds(start=3_000_000_000)),
        scenario=lambda ctx, name: run_one(ctx, plans[name]),
        poll_timeout=args.poll_timeout,
    )
    setup = (
        f"{'groups (a preview edited as the answer grows)' if args.chat == 'group' else 'private chats (drafts)'}; "
        f"{args.workers} worker(s) x {args.concurrency} threads; Gemini: first chunk "
        f"{args.first_chunk:g} s, whole answer {args.total:g} s, {args.chunks} chunks; "
        f"each phase's off/on pair run {args.repeat} time(s), alternating; "
        f"{'--quick smoke sizes, NOT the issue sizes' if args.quick else 'full sizes'}"
    )
    return runner.report_finish(outcome, runner.machine_header(outcome, setup), render, args.json)


# --- the report: per phase, streaming off and on side by side ---------------------------------

HEADER: Row = ("figure", "stream off", "stream on", "on / off", "target")
# The report's words for how a reply shows while it is written, by chat kind: drafts in
# a private chat; in a group, the preview's updates (its send and its streamed edits).
WORDS: dict[str, dict[str, str]] = {
    "private": {
        "first_key": "first_draft", "first": "first draft", "final": "final message",
        "with": "a draft", "updates": "drafts", "chat": "chat", "chats": "chats",
        "load": "each from a user of its own",
    },
    "group": {
        "first_key": "first_visible", "first": "first visible text", "final": "final text",
        "with": "a preview", "updates": "preview updates", "chat": "group", "chats": "groups",
        "load": "each in a group of its own, mentioning the bot",
    },
}


def _words(f: Figures) -> dict[str, str]:
    return WORDS[f["params"].get("chat", "private")]


def _window(f: Figures) -> str:
    return f"{f['streaming'].get('window_s', 1.0):g} s"


def render(results: dict[str, Figures], header: list[str]) -> str:
    parts = [section("Botfleet streaming benchmark", header)]
    for phase in PHASES:
        pairs = _pairs(results, phase)
        if not pairs:
            continue
        broken = [
            f"  {name} did not complete: {f['error']}"
            for pair in pairs for name, f in pair.items() if f is not None and "error" in f
        ]
        whole = [(pair["off"], pair["on"]) for pair in pairs
                 if pair["off"] and pair["on"] and "error" not in pair["off"] and "error" not in pair["on"]]
        if not whole:
            parts.append(section(phase, broken or ["  only one mode ran"]))
            continue
        parts.append(render_phase(phase, *whole[0]))
        if len(pairs) > 1:
            parts.append(render_pairs(phase, whole, broken))
        elif broken:
            parts.append(section(f"{phase}: runs that did not complete", broken))
    return "\n".join(parts)


def _pairs(results: dict[str, Figures], phase: str) -> list[dict[str, Any]]:
    """The (off, on) runs of a phase in order: "burst-off"/"burst-on", then "-2", "-3"..."""
    pairs, n = [], 1
    while True:
        suffix = "" if n == 1 else f"-{n}"
        pair = {mode: results.get(f"{phase}-{mode}{suffix}") for mode in MODES}
        if pair["off"] is None and pair["on"] is None:
            return pairs
        pairs.append(pair)
        n += 1


def _median(values: list[float | None]) -> float | None:
    import statistics

    present = [v for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None


def _not_lower(on: float | None, off: float | None) -> str:
    if on is None or off is None:
        return "not lower with streaming n/a"
    return f"not lower with streaming {'met' if on >= off else 'MISSED'}"


def _first_draft_target(phase: str, p50: float | None) -> str:
    if phase != "latency":
        return "(under a burst: not judged)"
    return target(f"p50 <= {TARGET_FIRST_DRAFT_P50_MS:g}", p50, TARGET_FIRST_DRAFT_P50_MS, at_most=True)


def render_pairs(phase: str, whole: list[tuple[Figures, Figures]], broken: list[str]) -> str:
    """Every off/on pair of the phase, one line each, the medians, and the verdicts over
    all of them."""
    offs, ons = [o for o, _ in whole], [o for _, o in whole]
    everything = offs + ons
    w, window = _words(ons[0]), _window(ons[0])

    def median(runs: list[Figures], get: Any) -> float | None:
        return _median([get(f) for f in runs])

    def cpu(f: Figures) -> Any:
        return f.get("workers_cpu_ms_per_reply")

    def rate(f: Figures) -> Any:
        return f["ai_per_s"]

    def final(f: Figures) -> Any:
        return f["streaming"]["final"]["p50_ms"]

    def first(f: Figures) -> Any:
        return f["streaming"][w["first_key"]]["p50_ms"]

    def others(f: Figures) -> str:
        return fmt(f.get("others_cores"), digits=2)

    rows: list[Row] = [
        (
            f"pair {n}",
            f"{fmt(rate(off))} | {fmt(final(off))} | {fmt(cpu(off))} | {others(off)}",
            f"{fmt(rate(on))} | {fmt(final(on))} | {fmt(cpu(on))} | {fmt(first(on))} | {others(on)}",
            ratio(rate(on), rate(off)),
            "",
        )
        for n, (off, on) in enumerate(whole, start=1)
    ]
    most = max(f["streaming"]["max_drafts_in_1s"] for f in everything)
    mismatches = sum(f["streaming"]["text_mismatches"] for f in everything)
    checked = sum(f["streaming"]["checked"] for f in everything)
    lost = sum(int(f["lost"]) for f in everything)
    rate_off, rate_on, cpu_off, cpu_on = median(offs, rate), median(ons, rate), median(offs, cpu), median(ons, cpu)
    rows += [
        (
            "median AI replies/s", fmt(rate_off), fmt(rate_on), ratio(rate_on, rate_off),
            _not_lower(rate_on, rate_off) if phase == "burst" else "",
        ),
        ("median workers' CPU per reply (ms)", fmt(cpu_off), fmt(cpu_on), ratio(cpu_on, cpu_off), ""),
        (
            f"median of the {w['first'].replace(' ', '-', 1)} p50s (ms)", "", fmt(median(ons, first)), "",
            _first_draft_target(phase, median(ons, first)),
        ),
        (
            f"most {w['updates']} any {w['chat']} got in any {window}, all runs", "", fmt(most), "",
            target(f"<= {TARGET_DRAFTS_IN_1S}", most, TARGET_DRAFTS_IN_1S, at_most=True),
        ),
        (
            "final text mismatches, all runs", "", f"{mismatches} of {checked}", "",
            f"0 {verdict(mismatches, 0, at_most=True)}",
        ),
        ("lost, all runs", "", fmt(lost), "", f"0 {verdict(lost, 0, at_most=True)}"),
    ]
    header: Row = (
        "figure",
        "off: AI/s | final p50 ms | workers ms/reply | others' cores",
        f"on: AI/s | final p50 ms | workers ms/reply | {w['first']} p50 ms | others' cores",
        "on / off",
        "target",
    )
    where = " in groups" if w is WORDS["group"] else ""
    return section(f"{phase}{where}: all {len(whole)} off/on pairs (alternating)", [layout(rows, header), *broken])


def render_phase(phase: str, off: Figures, on: Figures) -> str:
    p, s_off, s_on = on["params"], off["streaming"], on["streaming"]
    w, window, group = _words(on), _window(on), p.get("chat") == "group"
    most = max(s_off["max_drafts_in_1s"], s_on["max_drafts_in_1s"])
    marks = s_off.get("marks_left", 0) + s_on.get("marks_left", 0)
    mismatches = s_off["text_mismatches"] + s_on["text_mismatches"]
    lost = int(off["lost"]) + int(on["lost"])
    cores = ("emulator", "gemini", "driver", "beat")
    figs = [
        Fig(
            "messages sent / answered / lost", lambda f: f"{f['messages']} / {f['answered']} / {f['lost']}",
            target("lost 0", lost, 0, at_most=True),
        ),
        Fig("replies: AI / fallback / other", lambda f: f"{f['ai']} / {f['fallback']} / {f['other']}"),
        Fig("chats with more replies than messages", lambda f: f["duplicate_chats"]),
        Fig(
            f"user's message -> {w['first']}, p50 / p95 / p99 / max (ms)",
            lambda f: percentiles(f["streaming"][w["first_key"]])
            if f["streaming"]["drafted"] or group else "(no drafts)",
            _first_draft_target(phase, s_on[w["first_key"]]["p50_ms"]),
        ),
        Fig(
            f"user's message -> {w['final']}, p50 / p95 / p99 / max (ms)",
            lambda f: percentiles(f["streaming"]["final"]),
            f"n={s_off['final']['samples']} / {s_on['final']['samples']}",
        ),
        Fig(f"{w['final']} p50, on / off", lambda f: f["streaming"]["final"]["p50_ms"], ratio=True),
        Fig(
            f"replies with {w['with']} / without",
            lambda f: f"{f['streaming']['drafted']} / {f['streaming']['not_drafted']}",
        ),
        Fig(
            f"{w['updates']} per reply, mean / max",
            lambda f: f"{fmt(f['streaming']['drafts_per_reply_mean'], digits=2)} / "
            f"{fmt(f['streaming']['drafts_per_reply_max'])}",
            "its send and streamed edits" if group else "",
        ),
        *([Fig(
            "edits per reply (the final one too), mean / max",
            lambda f: f"{fmt(f['streaming']['edits_per_reply_mean'], digits=2)} / "
            f"{fmt(f['streaming']['edits_per_reply_max'])}",
        )] if group else []),
        Fig(
            f"most {w['updates']} any {w['chat']} got in any {window}",
            lambda f: f["streaming"]["max_drafts_in_1s"],
            target(f"<= {TARGET_DRAFTS_IN_1S}", most, TARGET_DRAFTS_IN_1S, at_most=True),
        ),
        Fig(
            f"{w['chats']} by their most {w['updates']} in {window}",
            lambda f: f["streaming"]["chats_by_max_in_1s"] or "-",
        ),
        Fig(
            f"gap between a {w['chat']}'s {w['updates']}: min / p50 (ms)",
            lambda f: f"{fmt(f['streaming']['min_draft_gap_ms'])} / {fmt(f['streaming']['draft_gap']['p50_ms'])}",
        ),
        Fig(
            "final text = the generated text: checked / mismatches",
            lambda f: f"{f['streaming']['checked']} / {f['streaming']['text_mismatches']}",
            f"0 mismatches {verdict(mismatches, 0, at_most=True)}",
        ),
        *([Fig(
            "previews left ending with the \" …\" mark", lambda f: f["streaming"]["marks_left"],
            f"0 {verdict(marks, 0, at_most=True)}",
        )] if group else []),
        Fig("finals with no Gemini request found", lambda f: f["streaming"]["no_gemini_request"]),
        Fig(
            f"{w['updates']} not a prefix of the text / after the final",
            lambda f: f"{f['streaming']['drafts_not_prefix']} / {f['streaming']['drafts_after_final']}",
        ),
        *([Fig(
            "previews whose last streamed edit had the whole text",
            lambda f: f["streaming"]["whole_before_final"], "the final edit then only drops the mark",
        )] if group else []),
        Fig("Gemini requests by action", lambda f: f["gemini"]["actions"]),
        Fig("CPU workers (cores)", lambda f: f["cpu_cores"].get("workers"), "over the load window", ratio=True),
        Fig(
            "CPU workers per reply (ms)", lambda f: f.get("workers_cpu_ms_per_reply"),
            "load window x cores / replies", ratio=True,
        ),
        Fig(
            "Redis commands per reply (all; the most frequent)",
            lambda f: ", ".join(f"{k} {v:g}" for k, v in f.get("redis_per_reply", {}).items()) or "n/a",
        ),
        Fig(
            "CPU Telegram emu / Gemini emu / driver / beat",
            lambda f: " / ".join(fmt(f["cpu_cores"].get(k), digits=2) for k in cores),
        ),
        Fig("peak RSS workers (MiB)", lambda f: f["rss_peak_mib"].get("workers")),
        Fig("machine CPU busy (all cores, anyone's)", lambda f: f"{f['machine_cpu_busy']:.0%}"),
        Fig(
            "CPU of everything else, Redis included (cores)", lambda f: f.get("others_cores"),
            "other sessions on a shared machine",
        ),
    ]
    if phase == "burst":
        figs[:0] = [
            Fig(
                "AI replies/s (first message written to last AI reply)", lambda f: f["ai_per_s"],
                _not_lower(on["ai_per_s"], off["ai_per_s"]), ratio=True,
            ),
            Fig("all replies/s", lambda f: f["replies_per_s"], ratio=True),
            Fig("injection (s)", lambda f: f"{f['injection_s']} ({f['injection_rate_per_s']}/s)"),
        ]
        load = f"{p['bots']} bots, {p['messages']} messages at once, {w['load']}"
    else:
        load = f"{p['bots']} bots, {p['rate']:g} messages/s for {p['duration']:g} s, {w['load']}"
    title = (
        f"{phase}: {load}; Gemini: streamed first chunk {p['first_chunk_s']:g} s, last "
        f"{p['total_s']:g} s ({p['chunks']} chunks, {p['chunk_delay_s']:g} s apart), not streamed "
        f"{p['total_s']:g} s; {p['workers']} worker(s) x {p['concurrency']} threads"
        + ("  [--quick smoke sizes]" if p["quick"] else "")
    )
    return section(title, [table(figs, off, on, header=HEADER, flip=True), *_notes(off, on)])


def _notes(off: Figures, on: Figures) -> list[str]:
    lines: list[str] = []
    for mode, f in (("off", off), ("on", on)):
        s, db = f["streaming"], f["db"]
        lines += [
            f"  stream {mode}: set-up {f['setup']['bots']} bots incl. the warm-up bot, "
            f"{f['setup']['polling_bots']} polling, {f['setup']['start_failures']} start failures; "
            f"warm-up {f['setup']['warm_up']}",
            f"    message log (incoming by reply state): {f['reply_states']}; "
            f"why replies were not the AI's: {f['reply_errors'] or 'none'}",
            f"    Gemini emulator: {f['gemini']['requests']} requests {f['gemini']['statuses']}, "
            f"most in any 1 s {f['gemini']['max_in_1s']}",
            f"    the workers' own clock (ms from the AI call's start, p50 / p95 / p99 / max): "
            f"first text {percentiles(db['ai_first_token'])}; first {_words(f)['with'].split()[-1]} "
            f"{percentiles(db['first_draft'])}; "
            f"whole answer {percentiles(db['ai_latency'])} ({db['replies']} replies)",
            *stage_lines("by stage, the emulators' stamps", s["stages"], indent="    "),
        ]
        if s["mismatch_examples"]:
            lines.append(f"    text mismatches, e.g.: {s['mismatch_examples']}")
        lines.append(logs_line("worker/beat logs", f["logs"], indent="    "))
        lines += profile_lines(
            f.get("profile"), "py-spy, first worker (a profiled run: figures slower)", indent="    "
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
