"""AI load benchmark: Botfleet's real workers answering with Gemini (the Gemini
emulator, in a process of its own, with a set latency) through the Telegram emulator.

    python -m benchmarks.ai_load [--scenario burst|throughput|ratelimit|all] [--quick]
        [--workers K] [--concurrency C] [--baseline/--no-baseline] [--json FILE]

burst: 100 bots, then 1,000 private messages at once, Gemini answering in 2 s: AI
    replies/s from the first message to the last reply (>= 90, and >= 0.9x the PTB
    peer), fallbacks, lost, duplicates, latency.
throughput: 200 chats (10 bots x 20 users), each user writing again as soon as the
    previous reply came, for 60 s, Gemini answering in 2 s: AI replies/s (at most
    chats / latency = 100; >= 90, and >= 0.9x the PTB peer), fallback replies,
    latency, Gemini requests.
burst and throughput also run, in the same run, the same load through the PTB peer
    (benchmarks/ptb_baseline.py in AI mode: google-genai's async client, concurrent
    updates on, PTB's default pools) on bots of its own, against the same Gemini
    emulator process with the same latency, after Botfleet's workers have stopped.
ratelimit: one credential limited to 600 requests/minute offered twice that (20
    messages/s from distinct users for 90 s), Gemini answering in 0.2 s: the most
    requests Gemini saw in any 60 s (at most 600), the share answered (AI or fallback)
    within 10 s (at least 99%), AI answers vs fallbacks.

Sets up everything itself (temporary SQLite or DATABASE_URL, embedded Redis or
REDIS_URL, both emulators, K Celery workers with C threads each, celery-beat), prints
progress on stderr and the report on stdout, and stops every process it started, also
on Ctrl-C and SIGTERM. See benchmarks/README.md ("AI mode").
"""

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks import runner
from benchmarks.report import (
    Fig,
    fmt,
    logs_line,
    peer_given,
    peer_ratio_target,
    percentiles,
    renderer,
    section,
    stage_lines,
    table,
    target,
    verdict,
)

ORDER = ["burst", "throughput", "ratelimit"]
# Issue sizes. "messages" is the burst's; "duration" does not apply to it.
FULL: dict[str, dict[str, float]] = {
    "burst": {"bots": 100, "users": 1, "messages": 1000, "duration": 0, "latency": 2.0, "rpm": 100_000},
    "throughput": {"bots": 10, "users": 20, "duration": 60, "latency": 2.0, "rpm": 100_000},
    "ratelimit": {"bots": 10, "users": 1, "duration": 90, "latency": 0.2, "rpm": 600},
}
QUICK: dict[str, dict[str, float]] = {
    "burst": {"bots": 10, "users": 1, "messages": 100, "duration": 0, "latency": 2.0, "rpm": 100_000},
    "throughput": {"bots": 4, "users": 10, "duration": 20, "latency": 2.0, "rpm": 100_000},
    "ratelimit": {"bots": 4, "users": 1, "duration": 40, "latency": 0.2, "rpm": 60},
}
WITH_PEER = ("burst", "throughput")  # the scenarios the issue compares with a PTB peer
TARGET_AI_PER_S = 90.0  # burst and throughput, at 2 s Gemini latency
TARGET_PEER_RATIO = 0.9  # burst and throughput: Botfleet's AI replies/s over the peer's
TARGET_SHARE_OF_CEILING = 0.9  # throughput: >= 90 replies/s of the 100 possible
TARGET_ANSWERED_SHARE = 0.99  # ratelimit: answered within ANSWER_WITHIN_S
ANSWER_WITHIN_S = 10.0
MODEL = "gemini-2.5-flash"
API_KEY = "bench-gemini-key"  # the Gemini emulator accepts any key

Figures = dict[str, Any]


@dataclass(frozen=True)
class AiParams:
    scenario: str
    bots: int
    users: int  # throughput: users (chats) per bot
    messages: int  # burst: messages, all at once
    duration: float
    latency: float  # seconds the Gemini emulator takes per answer
    rpm: int  # the credential's requests_per_minute
    rate: float  # ratelimit: messages per second offered
    workers: int
    concurrency: int
    warm_up_s: float  # throughput: replies in the first seconds are not in the rate
    reply_timeout_s: float  # throughput: a user waits this long for a reply
    drain_s: float  # ratelimit: how long to wait for the last replies
    quick: bool
    worker_loglevel: str
    profile_workers: bool = False
    baseline: bool = True  # burst, throughput: also run the PTB peer
    stream_replies: bool = True  # the persona's switch (the product's default: on)
    stream_group_edits: bool = False  # ... and in groups, by editing (the product's default: off)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ai_load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", choices=[*ORDER, "all"], default="all")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-test sizes: burst 10 bots x 100 messages; throughput 40 chats for 20 s; "
        "ratelimit 60/min offered 2/s for 40 s",
    )
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="burst, throughput: also run the same load through the PTB peer (default on)",
    )
    parser.add_argument(
        "--bots", type=int, help="bots (burst 100, others 10; --quick: burst 10, others 4)"
    )
    parser.add_argument(
        "--messages", type=int, help="burst: messages at once (default 1,000; --quick 100)"
    )
    parser.add_argument(
        "--users", type=int, help="throughput: users (chats) per bot (default 20; --quick 10)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        help="seconds of load (throughput 60, ratelimit 90; --quick 20, 40)",
    )
    parser.add_argument(
        "--latency", type=float, help="Gemini emulator latency in s (throughput 2, ratelimit 0.2)"
    )
    parser.add_argument(
        "--rpm", type=int, help="ratelimit: the credential's requests per minute (600; --quick 60)"
    )
    parser.add_argument(
        "--rate", type=float, help="ratelimit: messages per second offered (default: twice --rpm)"
    )
    parser.add_argument(
        "--warm-up", type=float, default=5.0, help="throughput: seconds left out of the rate (5)"
    )
    runner.worker_options(parser, concurrency=128)
    runner.common_options(parser)
    args = runner.options_parse(
        parser, argv,
        positive=(
            "bots", "users", "messages", "duration", "latency", "rpm", "rate", "workers",
            "concurrency",
        ),
    )
    if args.warm_up < 0:
        parser.error("--warm-up must not be negative")
    return args


def params_for(name: str, args: argparse.Namespace) -> AiParams:
    sizes = (QUICK if args.quick else FULL)[name]

    def pick(key: str) -> float:
        given = getattr(args, key)
        return given if given is not None else sizes[key]

    rpm = int(pick("rpm")) if name == "ratelimit" else int(sizes["rpm"])
    duration = pick("duration")
    return AiParams(
        scenario=name,
        bots=int(pick("bots")),
        users=int(pick("users")) if name == "throughput" else 1,
        messages=int(pick("messages")) if name == "burst" else 0,
        duration=duration,
        latency=pick("latency"),
        rpm=rpm,
        rate=args.rate if args.rate is not None else 2 * rpm / 60,
        workers=args.workers,
        concurrency=args.concurrency,
        warm_up_s=min(args.warm_up, duration / 2),
        reply_timeout_s=30.0 if args.quick else 60.0,
        drain_s=(30.0 if args.quick else 60.0) if name == "burst" else 30.0,
        quick=args.quick,
        worker_loglevel=args.worker_loglevel,
        profile_workers=args.profile_workers,
        baseline=args.baseline and name in WITH_PEER,
    )


# --- the Gemini emulator process --------------------------------------------------------


def gemini_start(stack: Any, scenario: str, latency: float) -> tuple[Any, str]:
    """`python -m emulators.gemini --port 0 --latency S`, in a session of its own; its
    INFO log (start-up line and a key-safe access log) goes to logs/<scenario>-gemini.log."""
    from benchmarks import procs
    from benchmarks.stack import PROJECT_DIR

    child = procs.spawn(
        "gemini emulator",
        [
            sys.executable,
            "-m",
            "emulators.gemini",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--latency",
            str(latency),
        ],
        env=stack.env(),
        cwd=PROJECT_DIR,
        log_path=stack.workdir / "logs" / f"{scenario}-gemini.log",
    )
    try:
        match = procs.wait_for_log(child, r"Running on (http://[\w.:\[\]-]+)", timeout=30)
    except BaseException:
        procs.stop(child, grace=5)
        raise
    return child, match.group(1)


# --- bots, credential, persona --------------------------------------------------------------


@dataclass
class AiFleet:
    bots: list[Any]  # benchmarks.fleet.FleetBot
    warm: Any  # a bot of its own (own credential) to warm the workers up
    credential_pk: int
    fallback: str


def ai_fleet_create(
    *, emulator: Any, count: int, label: str, gemini_url: str, rpm: int, stream_replies: bool = True,
    stream_group_edits: bool = False,
) -> AiFleet:
    """A persona (`stream_replies` and `stream_group_edits` its switches), a Gemini
    credential pointing at the emulator, `count` bots with a task each (use AI on), and a
    warm-up bot with a credential of its own (so warming up takes no slot of the measured
    credential's rate limit)."""
    from django.db import transaction

    from benchmarks.fleet import FleetBot, name_prefix, register_bots
    from bots.models import Bot, BotTask
    from conversations.models import Persona
    from credentials.models import AICredential

    infos = register_bots(emulator, count + 1, f"Bench {label}")
    prefix = name_prefix(label)
    with transaction.atomic():
        persona = Persona.objects.create(
            name=f"bench {label}",
            instructions="You are a helpful assistant.",
            stream_replies=stream_replies,
            stream_group_edits=stream_group_edits,
        )

        def credential(name: str, limit: int) -> AICredential:
            return AICredential.objects.create(
                name=name,
                provider=AICredential.Provider.GEMINI,
                api_key="bench-gemini-key",
                base_url=gemini_url,
                model=MODEL,
                requests_per_minute=limit,
            )

        measured, warm_credential = (
            credential(f"bench {label}", rpm),
            credential(f"bench {label} warm-up", 100_000),
        )
        bots = []
        for n, info in enumerate(infos):
            name = f"{prefix}warm-up" if n == count else f"{prefix}{n + 1}"
            bot = Bot.objects.create(
                name=name,
                token=info["token"],
                api_base_url=emulator.base_url,
                persona=persona,
                credential=warm_credential if n == count else measured,
            )
            task = BotTask.objects.create(name=name, bot=bot, use_ai=True)
            bots.append(
                FleetBot(
                    token=info["token"], telegram_id=info["id"], bot_pk=bot.pk, task_pk=task.pk
                )
            )
    return AiFleet(
        bots=bots[:count],
        warm=bots[count],
        credential_pk=measured.pk,
        fallback=persona.fallback_reply,
    )


def ai_up(
    ctx: Any, rig: Any, emulator: Any, gemini: Any, gemini_url: str, p: AiParams
) -> tuple[AiFleet, Figures]:
    """Rows in the database, beat and workers up, every task started and polling, the
    workers warmed up (google-genai imported, clients made) and the Gemini emulator's
    record cleared. Returns the fleet and how the start and warm-up went."""
    from benchmarks import fleet as fleets
    from benchmarks import traffic
    from benchmarks.ai_traffic import Sent, analyse
    from benchmarks.report import progress
    from benchmarks.rigging import fleet_label

    fleet = ai_fleet_create(
        emulator=emulator,
        count=p.bots,
        label=fleet_label(ctx, p.scenario),
        gemini_url=gemini_url,
        rpm=p.rpm,
        stream_replies=p.stream_replies,
        stream_group_edits=p.stream_group_edits,
    )
    progress(
        f"{p.scenario}: starting beat and {p.workers} worker(s) x {p.concurrency} threads",
        force=True,
    )
    rig.beat_start()
    rig.workers_start()
    everyone = [*fleet.bots, fleet.warm]
    start = fleets.fleet_start(everyone, threads=16, label=p.scenario)
    polling = traffic.wait_polled(
        emulator,
        [b.telegram_id for b in everyone],
        since=min(start.started_at.values()),
        timeout=60 + len(everyone) / 10,
        label=p.scenario,
    )
    # Warm-up: a few rounds, a little apart, so that every worker likely gets some.
    progress(f"{p.scenario}: warming the workers up", force=True)
    warm: list[Sent] = []
    for round_ in range(3):
        for n in range(2 * p.workers):
            sent = traffic.inject_one(
                emulator, fleet.warm.token, ctx.users.take(), f"warm-up {round_}.{n}"
            )
            warm.append(Sent(sent.token, sent.chat_id, sent.update_id, sent.text))
        time.sleep(0.5)
    deadline = time.monotonic() + 60 + p.latency
    outcome = analyse(emulator, warm, fleet.fallback)
    while outcome.lost and time.monotonic() < deadline:
        progress(f"{p.scenario}: warm-up {outcome.answered}/{outcome.messages} answered")
        time.sleep(0.5)
        outcome = analyse(emulator, warm, fleet.fallback)
    gemini.clear_requests()
    return fleet, {
        "start_failures": len(start.failures),
        "polling_bots": len(polling),
        "bots": len(everyone),
        "warm_up": {
            "messages": outcome.messages,
            "ai": outcome.kinds.get("ai", 0),
            "lost": outcome.lost,
            "fallback": outcome.kinds.get("fallback", 0),
        },
    }


# --- CPU and memory while the load runs -------------------------------------------------------


class Meter:
    """CPU seconds per process group (workers, Telegram emulator, Gemini emulator, beat,
    driver) over the measured window, RSS peaks, and how busy the whole machine was."""

    def __init__(self, rig: Any, gemini: Any) -> None:
        self.rig, self.gemini = rig, gemini

    def groups(self) -> dict[str, list[int]]:
        found = {name: pids for name, pids in self.rig.pids().items() if pids}
        if self.gemini.running():
            found["gemini"] = [self.gemini.pid]
        return found

    def _cpu(self) -> dict[str, dict[int, float]]:
        from benchmarks.sampler import cpu_snapshot

        snapshot = {name: cpu_snapshot(pids) for name, pids in self.groups().items()}
        snapshot["driver"] = cpu_snapshot([os.getpid()], children=False)
        return snapshot

    def __enter__(self) -> "Meter":
        from benchmarks.sampler import MachineCpu, RssSampler

        self.machine, self.before = MachineCpu(), self._cpu()
        self.rss = RssSampler(self.groups).__enter__()
        self.began = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        from benchmarks.sampler import cpu_used, mib

        self.rss.stop()
        window = time.monotonic() - self.began
        after = self._cpu()
        cpu = {n: cpu_used(self.before[n], now) for n, now in after.items() if n in self.before}
        self.figures = {
            "window_s": round(window, 1),
            "cpu_cores": {n: round(s / window, 2) for n, s in cpu.items()} if window > 0 else {},
            "rss_peak_mib": {n: mib(size) for n, size in self.rss.peak.items()},
            "machine_cpu_busy": round(self.machine.busy_fraction(), 3),
        }


# --- the scenarios ---------------------------------------------------------------------------


def run_scenario(ctx: Any, p: AiParams) -> Figures:
    """A Gemini emulator and a fresh rig (Telegram emulator, workers, beat) for one
    scenario; every process stopped afterwards (workers before the Gemini emulator)."""
    from benchmarks import procs
    from benchmarks.report import progress
    from benchmarks.rigging import with_rig
    from benchmarks.stack import Rig
    from emulators.gemini import GeminiEmulatorClient

    progress(f"{p.scenario}: starting the Gemini emulator (latency {p.latency:g} s)", force=True)
    gemini_child, gemini = None, None
    try:
        gemini_child, url = gemini_start(ctx.stack, p.scenario, p.latency)
        gemini = GeminiEmulatorClient(url, timeout=60)
        rig = Rig(
            ctx.stack,
            p.scenario,
            workers=p.workers,
            concurrency=p.concurrency,
            loglevel=p.worker_loglevel,
            profile=p.profile_workers,
        )
        body = {"burst": burst, "throughput": throughput, "ratelimit": ratelimit}[p.scenario]
        return with_rig(
            ctx, rig, lambda emulator: body(ctx, p, rig, emulator, gemini, gemini_child, url)
        )
    finally:
        if gemini is not None:
            gemini.close()
        if gemini_child is not None:
            procs.stop(gemini_child, grace=5)


def throughput(
    ctx: Any, p: AiParams, rig: Any, emulator: Any, gemini: Any, child: Any, url: str
) -> Figures:
    fleet, setup = ai_up(ctx, rig, emulator, gemini, url, p)
    users = [(bot.token, ctx.users.take()) for bot in fleet.bots for _ in range(p.users)]
    figures = {
        "params": asdict(p) | ctx.stack.polling(),
        "setup": setup,
        **_closed_loop(emulator, rig, child, users, p, fleet.fallback, p.scenario),
        **_after(fleet, gemini),
    }
    figures = _finish(rig, fleet, figures)
    if p.baseline:
        figures["peer"] = _peer(ctx, rig, emulator, gemini, child, url, p, _closed_loop_peer)
    return figures


def _closed_loop(
    emulator: Any, rig: Any, child: Any, users: list[tuple[str, int]], p: AiParams,
    fallback: str, label: str,
) -> Figures:
    """The closed loop on these (bot token, user id) pairs, and its figures."""
    from benchmarks.ai_traffic import AI, ClosedLoop, analyse, rate_in, run_closed_loop

    loop = ClosedLoop(
        emulator.url,
        users,
        until=time.monotonic() + p.duration,
        reply_timeout=p.reply_timeout_s,
        label=label,
        fallback=fallback,
    )
    with Meter(rig, child) as meter:
        began = run_closed_loop(loop, grace=15)
    outcome = analyse(emulator, loop.sent, fallback)
    steady = (began + p.warm_up_s, began + p.duration)
    everything = [t for times in outcome.reply_times.values() for t in times]
    return {
        "chats": len(users),
        "ceiling_per_s": round(len(users) / p.latency, 1),
        "ai_per_s_steady": _round(rate_in(outcome.reply_times.get(AI, []), *steady)),
        "replies_per_s_steady": _round(rate_in(everything, *steady)),
        "ai_per_s_whole": _round(
            rate_in(outcome.reply_times.get(AI, []), began, began + p.duration)
        ),
        "steady_window_s": [p.warm_up_s, p.duration],
        "user_timeouts": loop.timeouts,
        "user_errors": dict(loop.errors),
        **outcome.figures(),
        **meter.figures,
    }


def _closed_loop_peer(
    ctx: Any, rig: Any, emulator: Any, child: Any, tokens: list[str], p: AiParams, label: str
) -> Figures:
    users = [(token, ctx.users.take()) for token in tokens for _ in range(p.users)]
    return _closed_loop(emulator, rig, child, users, p, "", label)


def burst(ctx: Any, p: AiParams, rig: Any, emulator: Any, gemini: Any, child: Any, url: str) -> Figures:
    """Every message at once, spread round-robin over the bots, each from a user of its
    own; AI replies/s from the first message written to the last AI reply."""
    fleet, setup = ai_up(ctx, rig, emulator, gemini, url, p)
    figures = {
        "params": asdict(p) | ctx.stack.polling(),
        "setup": setup,
        **_burst_measure(
            ctx, rig, emulator, child, [b.token for b in fleet.bots], p, fleet.fallback, p.scenario
        ),
        **_after(fleet, gemini),
    }
    figures = _finish(rig, fleet, figures)
    if p.baseline:
        figures["peer"] = _peer(ctx, rig, emulator, gemini, child, url, p, _burst_peer)
    return figures


def _burst_measure(
    ctx: Any, rig: Any, emulator: Any, child: Any, tokens: list[str], p: AiParams,
    fallback: str, label: str,
) -> Figures:
    from benchmarks import traffic
    from benchmarks.ai_traffic import Sent, analyse
    from benchmarks.report import progress

    counter = traffic.ReplyCounter(emulator)
    with Meter(rig, child) as meter:
        injected, inject_s = traffic.inject_burst(
            emulator, tokens, p.messages, users=ctx.users, counter=counter, label=label
        )
        deadline = time.monotonic() + p.drain_s
        while counter.count() < len(injected) and time.monotonic() < deadline:
            progress(lambda: counter.rate_line(label, len(injected)))
            time.sleep(0.25)
        time.sleep(traffic.DUPLICATE_GRACE_S)
    outcome = analyse(
        emulator, [Sent(i.token, i.chat_id, i.update_id, i.text) for i in injected], fallback
    )
    progress(f"{label}: {outcome.answered}/{outcome.messages} answered", force=True)
    return {
        "injection_s": round(inject_s, 2),
        "injection_rate_per_s": round(len(injected) / inject_s, 1) if inject_s else None,
        **burst_rates(outcome),
        **outcome.figures(),
        **meter.figures,
    }


def burst_rates(outcome: Any) -> Figures:
    """A burst's rates (an `ai_traffic.AiOutcome`): AI replies, and all replies, over
    the span from the first message written to the last such reply."""
    from benchmarks.ai_traffic import AI

    first = min(outcome.injected_at) if outcome.injected_at else None
    ai_times = outcome.reply_times.get(AI, [])
    every = [t for times in outcome.reply_times.values() for t in times]

    def per_s(count: int, times: list[float]) -> float | None:
        span = max(times) - first if times and first is not None else 0
        return round(count / span, 1) if span > 0 else None

    return {"ai_per_s": per_s(len(ai_times), ai_times), "replies_per_s": per_s(len(every), every)}


def _burst_peer(
    ctx: Any, rig: Any, emulator: Any, child: Any, tokens: list[str], p: AiParams, label: str
) -> Figures:
    return _burst_measure(ctx, rig, emulator, child, tokens, p, "", label)


def _peer(
    ctx: Any, rig: Any, emulator: Any, gemini: Any, child: Any, url: str, p: AiParams,
    measure: Any,
) -> Figures:
    """The same load through the PTB peer (AI mode), on bots of its own, against the same
    Gemini emulator process (same latency; its record cleared first). Botfleet's
    workers and beat have stopped by now. A warm-up bot of its own takes a few messages
    first (the SDK's session, imports), as Botfleet's warm-up bot does."""
    from benchmarks import fleet as fleets
    from benchmarks import traffic
    from benchmarks.ai_traffic import Sent, analyse, gemini_figures
    from benchmarks.load import baseline_errors
    from benchmarks.report import progress

    label = f"{p.scenario} peer"
    infos = fleets.register_bots(emulator, p.bots + 1, "Peer")
    tokens, warm = [i["token"] for i in infos[:-1]], infos[-1]
    progress(f"{label}: starting the PTB peer ({p.bots} bots, AI mode)", force=True)
    since = time.time()
    given = rig.baseline_start(
        [i["token"] for i in infos],
        poll_timeout=int(ctx.stack.polling()["poll_timeout_s"]),
        gemini_url=url,
        gemini_key=API_KEY,
        model=MODEL,
    )
    polling = traffic.wait_polled(
        emulator, [i["id"] for i in infos], since=since, timeout=60, label=label
    )
    warm_sent = [
        traffic.inject_one(emulator, warm["token"], ctx.users.take(), f"peer warm-up {n}")
        for n in range(4)
    ]
    warm_up = [Sent(w.token, w.chat_id, w.update_id, w.text) for w in warm_sent]
    deadline = time.monotonic() + 30 + p.latency
    outcome = analyse(emulator, warm_up, "")
    while outcome.lost and time.monotonic() < deadline:
        time.sleep(0.5)
        outcome = analyse(emulator, warm_up, "")
    gemini.clear_requests()
    figures = measure(ctx, rig, emulator, child, tokens, p, label)
    figures["gemini"] = gemini_figures(gemini)
    figures.update(
        bots=len(tokens),
        polling_bots=len(polling),
        warm_up={"messages": outcome.messages, "answered": outcome.answered},
        errors=baseline_errors(rig.baseline_stop()),
        given=given,
        same_gemini_emulator=True,
    )
    return figures


def ratelimit(
    ctx: Any, p: AiParams, rig: Any, emulator: Any, gemini: Any, child: Any, url: str
) -> Figures:
    from benchmarks import traffic
    from benchmarks.ai_traffic import Sent, analyse
    from benchmarks.report import progress

    fleet, setup = ai_up(ctx, rig, emulator, gemini, url, p)
    counter = traffic.ReplyCounter(emulator)
    tokens = [bot.token for bot in fleet.bots]
    with Meter(rig, child) as meter:
        injected, inject_s = traffic.inject_paced(
            emulator,
            tokens,
            rate=p.rate,
            duration=p.duration,
            users=ctx.users,
            counter=counter,
            label=p.scenario,
        )
        deadline = time.monotonic() + p.drain_s
        while counter.count() < len(injected) and time.monotonic() < deadline:
            progress(lambda: counter.rate_line(f"{p.scenario} (draining)", len(injected)))
            time.sleep(0.25)
        time.sleep(traffic.DUPLICATE_GRACE_S)
    outcome = analyse(
        emulator, [Sent(i.token, i.chat_id, i.update_id, i.text) for i in injected], fleet.fallback
    )
    within = outcome.within(ANSWER_WITHIN_S)
    figures = {
        "params": asdict(p) | ctx.stack.polling(),
        "setup": setup,
        "injection_s": round(inject_s, 1),
        "injection_rate_per_s": round(len(injected) / inject_s, 2) if inject_s else None,
        "answered_within_s": ANSWER_WITHIN_S,
        "answered_within": within,
        "answered_within_share": round(within / len(injected), 4) if injected else None,
        **outcome.figures(),
        **_after(fleet, gemini),
        **meter.figures,
    }
    return _finish(rig, fleet, figures)


def _after(fleet: AiFleet, gemini: Any) -> Figures:
    from django.conf import settings

    from benchmarks.ai_traffic import credential_figures, gemini_figures, reply_errors

    return {
        "gemini": gemini_figures(gemini),
        "credential": credential_figures(fleet.credential_pk),
        "reply_errors": reply_errors([bot.bot_pk for bot in fleet.bots]),
        "ai_settings": {
            name: getattr(settings, name)
            for name in (
                "AI_RATE_LIMIT_MAX_WAIT",
                "AI_MAX_ATTEMPTS",
                "AI_RETRY_BUDGET",
                "AI_REQUEST_TIMEOUT",
                "AI_CIRCUIT_FAILURES",
                "AI_CIRCUIT_COOLDOWN",
            )
        },
    }


def _finish(rig: Any, fleet: AiFleet, figures: Figures) -> Figures:
    from benchmarks import fleet as fleets
    from benchmarks.rigging import finish

    fleets.fleet_stop([fleet.warm])
    return finish(rig, fleet.bots, figures)


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# --- the run -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from benchmarks.rigging import Context
    from benchmarks.traffic import UserIds

    outcome = runner.scenarios_run(
        names=ORDER if args.scenario == "all" else [args.scenario],
        keep_files=args.keep_files,
        context=lambda stack: Context(stack=stack, users=UserIds(start=2_000_000_000)),
        scenario=lambda ctx, name: run_scenario(ctx, params_for(name, args)),
        poll_timeout=args.poll_timeout,
    )
    setup = (
        f"{args.workers} worker(s) x {args.concurrency} threads; "
        f"{'--quick smoke sizes, NOT the issue sizes' if args.quick else 'full sizes'}"
    )
    return runner.report_finish(outcome, runner.machine_header(outcome, setup), render, args.json)


# --- the report: which figures each scenario shows ------------------------------------------


def _peer_figs(ours: Figures) -> list[Fig]:
    """What both sides have: outcome, latency, Gemini requests, CPU and memory."""

    def latency(label: str, key: str, note: str = "") -> Fig:
        return Fig(label, lambda f: f["latency"][key], note, ratio=key != "max_ms")

    return [
        Fig("messages sent / answered / lost", lambda f: f"{f['messages']} / {f['answered']} / {f['lost']}"),
        Fig(
            "replies: AI / fallback / other", lambda f: f"{f['ai']} / {f['fallback']} / {f['other']}",
            target("fallback 0", ours["fallback"], 0, at_most=True),
        ),
        Fig("chats with more replies than messages", lambda f: f["duplicate_chats"]),
        latency("latency p50 (ms), injection to reply", "p50_ms"),
        latency("latency p95 (ms)", "p95_ms"),
        latency("latency p99 (ms)", "p99_ms"),
        latency("latency max (ms)", "max_ms", f"n={ours['latency']['samples']}"),
        Fig("Gemini emulator: requests", lambda f: f["gemini"]["requests"]),
        Fig(
            "CPU, system under test (cores)", lambda f: f["cpu_cores"].get("workers"),
            "Botfleet: its workers; the peer: its one process",
            peer=lambda f: f["cpu_cores"].get("baseline"),
        ),
        Fig(
            "peak RSS, system under test (MiB)", lambda f: f["rss_peak_mib"].get("workers"),
            peer=lambda f: f["rss_peak_mib"].get("baseline"),
        ),
        Fig(
            "CPU, Telegram emu / Gemini emu / driver (cores)",
            lambda f: " / ".join(fmt(f["cpu_cores"].get(k), digits=2) for k in ("emulator", "gemini", "driver")),
        ),
        Fig("machine CPU busy (all cores, anyone's)", lambda f: f"{f['machine_cpu_busy']:.0%}"),
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


def _common_figs(f: Figures) -> list[Fig]:
    g, cores = f["gemini"], ("workers", "emulator", "gemini", "driver", "beat")
    return [
        Fig(
            "latency p50 / p95 / p99 / max (ms), injection to reply",
            lambda f: percentiles(f["latency"]), f"n={f['latency']['samples']}",
        ),
        Fig("  of AI answers", lambda f: percentiles(f["latency_ai"]), f"n={f['latency_ai']['samples']}"),
        Fig(
            "  of fallbacks", lambda f: percentiles(f["latency_fallback"]),
            f"n={f['latency_fallback']['samples']}",
        ),
        Fig("Gemini emulator: requests (by HTTP status)", lambda f: f"{g['requests']:,} {g['statuses']}"),
        Fig("Gemini emulator: most requests in any 1 s", lambda f: g["max_in_1s"]),
        Fig(
            "CPU (cores): workers / Telegram emu / Gemini emu / driver / beat",
            lambda f: " / ".join(fmt(f["cpu_cores"].get(k), digits=2) for k in cores),
            f"over {f['window_s']} s",
        ),
        Fig("peak RSS workers (MiB)", lambda f: f["rss_peak_mib"].get("workers")),
        Fig("machine CPU busy (all cores, anyone's)", lambda f: f"{f['machine_cpu_busy']:.0%}"),
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
        logs_line("worker/beat logs", f["logs"]),
        *stage_lines("latency by stage", f["stages"]),
    ]
    if f["other"]:
        lines.append(f"  replies neither AI nor fallback, e.g.: {f['other_examples']}")
    return lines


def _ai_rate_target(ours: float | None, peer: Figures | None, key: str, quick: bool) -> str:
    if quick:  # 100 messages at 2 s latency cannot make 90/s, whoever answers
        text = f"(>= {TARGET_AI_PER_S:g} at the issue's sizes)"
    else:
        text = target(f">= {TARGET_AI_PER_S:g}", ours, TARGET_AI_PER_S, at_most=False)
    if peer:
        text += "; " + peer_ratio_target(ours, peer[key], TARGET_PEER_RATIO)
    return text


def _title_tail(p: Figures) -> str:
    return (
        f"{p['workers']} worker(s) x {p['concurrency']} threads, poll timeout {p['poll_timeout_s']} s"
        + ("  [--quick smoke sizes]" if p["quick"] else "")
    )


def render_burst(f: Figures) -> str:
    p, peer = f["params"], f.get("peer")
    figs = [
        Fig(
            "bots; messages, all at once, each from a user of its own",
            lambda f: f"{p['bots']}; {f['messages']}", peer=False,
        ),
        Fig(
            "AI replies/s (first message written to last AI reply)", lambda f: f["ai_per_s"],
            _ai_rate_target(f["ai_per_s"], peer, "ai_per_s", p["quick"]), ratio=True,
        ),
        Fig("all replies/s (same span, to the last reply)", lambda f: f["replies_per_s"], ratio=True),
        Fig("injection (s)", lambda f: f"{f['injection_s']} ({f['injection_rate_per_s']}/s)"),
        *_peer_figs(f),
    ]
    title = (
        f"burst (AI): {p['bots']} bots, {p['messages']} messages at once, Gemini latency "
        f"{p['latency']:g} s, {_title_tail(p)}"
    )
    # AI calls wait on each worker's I/O loop, not in threads: no note on thread counts.
    return section(title, [table(figs, f, peer), *_peer_notes(peer), *_notes(f)])


def render_throughput(f: Figures) -> str:
    p, peer = f["params"], f.get("peer")
    goal = round(f["ceiling_per_s"] * TARGET_SHARE_OF_CEILING, 1)
    steady = f"replies in [{f['steady_window_s'][0]:g} s, {f['steady_window_s'][1]:g} s] of the load"
    ai_target = target(f">= {goal:g} (90% of the ceiling)", f["ai_per_s_steady"], goal, at_most=False)
    if peer:
        ai_target += "; " + peer_ratio_target(f["ai_per_s_steady"], peer["ai_per_s_steady"], TARGET_PEER_RATIO)
    figs = [
        Fig(
            "chats (bots x users), each writing again on each reply",
            lambda f: f"{f['chats']} ({p['bots']} x {p['users']})", peer=lambda f: f["chats"],
        ),
        Fig("ceiling: chats / Gemini latency (replies/s)", lambda f: f["ceiling_per_s"]),
        Fig("AI replies/s, steady", lambda f: f["ai_per_s_steady"], f"{ai_target}; {steady}", ratio=True),
        Fig("all replies/s, steady", lambda f: f["replies_per_s_steady"], ratio=True),
        Fig("AI replies/s, whole load window", lambda f: f["ai_per_s_whole"], f"{p['duration']:g} s", ratio=True),
        Fig(
            "users stopped (no reply within the timeout)", lambda f: f["user_timeouts"],
            f"timeout {p['reply_timeout_s']:g} s",
        ),
        Fig(
            "Gemini requests per AI reply",
            lambda f: round(f["gemini"]["requests"] / f["ai"], 3) if f["ai"] else None,
        ),
        *_peer_figs(f),
    ]
    for who, figures in (("Botfleet", f), ("peer", peer)):
        if figures and figures["user_errors"]:
            errors = str(figures["user_errors"])
            figs.append(Fig(f"driver: user thread errors ({who})", lambda _, e=errors: e, peer=False))
    title = f"throughput: {f['chats']} chats, Gemini latency {p['latency']:g} s, {p['duration']:g} s, {_title_tail(p)}"
    return section(title, [table(figs, f, peer), *_peer_notes(peer), *_notes(f)])


def render_ratelimit(f: Figures) -> str:
    p, g, share = f["params"], f["gemini"], f["answered_within_share"]
    figs = [
        Fig("credential limit (requests/minute)", lambda f: p["rpm"]),
        Fig(
            "offered: messages/s (distinct chats) for s",
            lambda f: f"{p['rate']:g}/s for {p['duration']:g} s = {f['messages']}",
            f"{f['injection_rate_per_s']}/s achieved; {p['rate'] * 60 / p['rpm']:.1f}x the limit",
        ),
        Fig(
            "Gemini emulator: most requests in any 60 s", lambda f: g["max_in_60s"],
            target(f"<= {p['rpm']}", g["max_in_60s"], p["rpm"], at_most=True),
        ),
        Fig(
            f"answered (AI or fallback) within {f['answered_within_s']:g} s",
            lambda f: f"{f['answered_within']} of {f['messages']} "
            f"({fmt(share * 100 if share is not None else None, '%', 2)})",
            f">= {TARGET_ANSWERED_SHARE:.0%} {verdict(share, TARGET_ANSWERED_SHARE, at_most=False)}",
        ),
        Fig("answered at all / lost", lambda f: f"{f['answered']} / {f['lost']}"),
        Fig(
            "replies: AI / fallback / other", lambda f: f"{f['ai']} / {f['fallback']} / {f['other']}",
            f"AI share {fmt(100 * f['ai'] / f['messages'] if f['messages'] else None, '%')}; "
            f"limit x load minutes = {p['rpm'] * p['duration'] / 60:g}",
        ),
        Fig("chats with more than one reply", lambda f: f["duplicate_chats"], f"{f['extra_replies']} extra"),
        *_common_figs(f),
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
    return section(title, [table(figs, f), *_notes(f)])


render = renderer(
    "Botfleet AI load benchmark",
    {"burst": render_burst, "throughput": render_throughput, "ratelimit": render_ratelimit},
)


if __name__ == "__main__":
    sys.exit(main())
