"""Worker SIGKILL during an AI call: is the reply sent exactly once, and how soon?

    python -m benchmarks.kill_during_ai [--trials 20] [--latency 5] [--kill-after 1.5]
        [--reply-timeout 150] [--workers 2] [--concurrency 32] [--json FILE]

The issue's target: "worker SIGKILL during a 5 s AI call, 20 times: each reply exactly
once, <= 90 s after the kill". Set-up and tear-down as in the other load commands
(temporary SQLite or DATABASE_URL, embedded Redis or REDIS_URL, the Telegram emulator,
K real Celery workers with the Procfile's command line, a real celery-beat for the
supervisor). Each trial:

1. a Gemini emulator of its own (`python -m emulators.gemini --latency 5`, a fresh
   port), a Gemini credential pointing at it, a persona and a bot with "use AI" on,
   started through `bots.services.task_start` and polling;
2. one private message to the bot;
3. once the Gemini emulator has received the AI call, wait `--kill-after` seconds
   (1.5) and SIGKILL the worker process that holds the call: the one with a TCP
   connection to this trial's Gemini port (the port is new, so no other worker has
   one; found with psutil, so it holds whatever the pipeline's shape);
4. start a replacement worker at once (the kill-to-reply time includes its start-up);
5. wait (at most `--reply-timeout` s after the kill) for the reply in the Telegram
   emulator, then `--duplicate-wait` s more, and count the replies in that chat.

Reported per trial: kill to reply (s), replies in the chat (1 = exactly once), the
reply's kind (AI answer or the persona's fallback), the Gemini calls the trial made
(the killed one shows no status: its client was gone), when the replacement worker
was ready, and the message's reply state in the database; then the maximum and the
verdict. At the end every trial's chat is counted again (a late duplicate shows).
A task message the killed worker had taken stays unacknowledged in Redis until the
broker's visibility timeout (CELERY_BROKER_TRANSPORT_OPTIONS, 600 s) re-delivers it:
`--final-wait S` waits that long before the final count to see whether that makes a
duplicate.
"""

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks import runner

TARGET_S = 90.0
TARGET_TRIALS = 20
Figures = dict[str, Any]


@dataclass(frozen=True)
class KillParams:
    trials: int
    latency: float
    kill_after: float
    reply_timeout: float
    duplicate_wait: float
    final_wait: float
    workers: int
    concurrency: int
    worker_loglevel: str
    profile_workers: bool


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kill_during_ai",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--trials", type=int, default=TARGET_TRIALS, help=f"kills (default {TARGET_TRIALS})"
    )
    parser.add_argument(
        "--latency", type=float, default=5.0, help="Gemini emulator latency in s (default 5)"
    )
    parser.add_argument(
        "--kill-after",
        type=float,
        default=1.5,
        help="seconds into the AI call (from the Gemini emulator's receipt) to kill (default 1.5)",
    )
    parser.add_argument(
        "--reply-timeout",
        type=float,
        default=150.0,
        help="per trial, seconds after the kill to wait for the reply (default 150)",
    )
    parser.add_argument(
        "--duplicate-wait",
        type=float,
        default=10.0,
        help="per trial, seconds after the reply to watch for a second one (default 10)",
    )
    parser.add_argument(
        "--final-wait",
        type=float,
        default=0.0,
        help="seconds to wait after the last trial before counting every chat again (default 0)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="one trial (the harness works; not the issue's 20)"
    )
    runner.worker_options(parser)
    runner.common_options(parser)
    args = runner.options_parse(
        parser,
        argv,
        positive=("trials", "latency", "kill_after", "reply_timeout", "workers", "concurrency"),
    )
    if args.kill_after >= args.latency:
        parser.error("--kill-after must be shorter than --latency (kill during the call)")
    if args.duplicate_wait < 0 or args.final_wait < 0:
        parser.error("--duplicate-wait and --final-wait must not be negative")
    if args.quick:
        args.trials = 1
    return args


# --- one trial ------------------------------------------------------------------------------


def holders(rig: Any, port: int) -> list[Any]:
    """Live workers whose process tree has a TCP connection to 127.0.0.1:`port`."""
    import psutil

    found = []
    for worker in rig.live_workers():
        try:
            root = psutil.Process(worker.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for process in tree:
            try:
                connections = process.net_connections(kind="tcp")
            except psutil.Error:
                continue
            if any(c.raddr and c.raddr.port == port for c in connections):
                found.append(worker)
                break
    return found


def trial(ctx: Any, rig: Any, emulator: Any, p: KillParams, n: int) -> Figures:
    from urllib.parse import urlparse

    from benchmarks import fleet as fleets
    from benchmarks import procs, traffic
    from benchmarks.ai_load import ai_fleet_create, gemini_start
    from benchmarks.ai_traffic import kind_of
    from benchmarks.report import progress
    from benchmarks.rigging import fleet_label
    from emulators.gemini import GeminiEmulatorClient

    label = f"kill trial {n}"
    child, gemini = gemini_start(ctx.stack, f"kill-t{n}", p.latency)  # gemini: its URL
    client = GeminiEmulatorClient(gemini, timeout=30)
    fleet = None
    try:
        fleet = ai_fleet_create(
            emulator=emulator,
            count=1,
            label=f"{fleet_label(ctx, rig.scenario)} t{n}",
            gemini_url=gemini,
            rpm=100_000,
        )
        [bot] = fleet.bots
        start = fleets.fleet_start([bot], threads=1, label=label)
        traffic.wait_polled(
            emulator, [bot.telegram_id], since=min(start.started_at.values()), timeout=60,
            label=label,
        )
        sent = traffic.inject_one(emulator, bot.token, ctx.users.take(), f"{label}: hello")
        written_at = time.time()
        progress(f"{label}: message written; waiting for the AI call", force=True)
        try:
            call = client.wait_for_requests(1, timeout=60)[0]
        except TimeoutError:
            return {"trial": n, "error": "no AI call reached Gemini within 60 s"}
        time.sleep(max(0.0, call.time + p.kill_after - time.time()))
        port = urlparse(gemini).port or 80
        found = holders(rig, port)
        if len(found) != 1:
            return {
                "trial": n,
                "error": f"{len(found)} workers hold a connection to this trial's Gemini "
                "emulator (expected exactly 1); nothing killed",
            }
        victim = found[0]
        killed_at = time.time()
        procs.kill(victim)
        progress(f"{label}: SIGKILLed {victim.name} (pid {victim.pid}); starting a replacement", force=True)
        in_flight = next((r for r in client.requests() if r.seq == call.seq), None)
        replacement = rig.worker_add()
        ready_at = time.time()
        reply = _wait_reply(emulator, bot.token, sent.chat_id, killed_at + p.reply_timeout, label)
        if reply is not None:
            time.sleep(p.duplicate_wait)
        replies = _replies(emulator, bot.token, sent.chat_id)
        calls = client.requests()
        return {
            "trial": n,
            "token": bot.token,
            "chat_id": sent.chat_id,
            "bot_pk": bot.bot_pk,
            "killed": victim.name,
            "replacement": replacement.name,
            "call_received_after_write_s": round(call.time - written_at, 2),
            "killed_into_call_s": round(killed_at - call.time, 2),
            "call_unanswered_at_kill": in_flight is not None and in_flight.status is None,
            "replacement_ready_after_kill_s": round(ready_at - killed_at, 1),
            "kill_to_reply_s": round(reply["time"] - killed_at, 1) if reply else None,
            "replies": len(replies),
            "kind": kind_of(reply.get("text") or "", sent.text, fleet.fallback) if reply else None,
            "gemini_calls": len(calls),
            "gemini_statuses": [c.status for c in calls],
            "reply_state": _reply_state(bot.bot_pk),
        }
    finally:
        if fleet is not None:
            fleets.fleet_stop([*fleet.bots, fleet.warm])
        client.close()
        procs.stop(child, grace=5)


def _replies(emulator: Any, token: str, chat_id: int) -> list[dict]:
    return [
        m
        for m in emulator.sent_messages(token, chat_id=chat_id)
        if m.get("method", "sendMessage") == "sendMessage"
    ]


def _wait_reply(emulator: Any, token: str, chat_id: int, until: float, label: str) -> dict | None:
    from benchmarks.report import progress

    began = time.time()
    while time.time() < until:
        replies = _replies(emulator, token, chat_id)
        if replies:
            return replies[0]
        progress(f"{label}: {time.time() - began:.0f} s since the kill, no reply yet", every=5)
        time.sleep(0.25)
    return None


def _reply_state(bot_pk: int) -> str:
    from conversations.models import Message

    row = (
        Message.objects.filter(bot_id=bot_pk, direction="in").values("reply_state", "error").first()
    )
    if row is None:
        return "no incoming message stored"
    return row["reply_state"] + (f" ({row['error'][:120]})" if row.get("error") else "")


# --- the scenario ---------------------------------------------------------------------------


def kill_scenario(ctx: Any, p: KillParams) -> Figures:
    from benchmarks.logscan import log_summary
    from benchmarks.report import progress
    from benchmarks.rigging import with_rig
    from benchmarks.stack import Rig

    rig = Rig(
        ctx.stack,
        "kill",
        workers=p.workers,
        concurrency=p.concurrency,
        loglevel=p.worker_loglevel,
        profile=p.profile_workers,
    )

    def body(emulator: Any) -> Figures:
        progress(f"kill: starting beat and {p.workers} worker(s)", force=True)
        rig.beat_start()
        rig.workers_start()
        trials: list[Figures] = []
        for n in range(1, p.trials + 1):
            progress(f"=== kill trial {n}/{p.trials} ===", force=True)
            try:
                trials.append(trial(ctx, rig, emulator, p, n))
            except Exception as error:  # one broken trial must not hide the others
                trials.append({"trial": n, "error": f"{type(error).__name__}: {error}"})
        if p.final_wait:
            progress(f"kill: waiting {p.final_wait:g} s for late duplicates", force=True)
            time.sleep(p.final_wait)
        for t in trials:
            if "token" in t:
                t["replies_at_end"] = len(_replies(emulator, t["token"], t["chat_id"]))
        rig.workers_stop()
        rig.beat_stop()
        return {
            "params": asdict(p) | ctx.stack.polling(),
            "trials": trials,
            "logs": log_summary(rig.worker_logs()),
        }

    return with_rig(ctx, rig, body)


def render_kill(f: Figures) -> str:
    from benchmarks.report import Fig, fmt, logs_line, section, table, target

    p, trials = f["params"], f["trials"]
    done = [t for t in trials if "error" not in t]
    times = [t["kill_to_reply_s"] for t in done if t["kill_to_reply_s"] is not None]
    once = [t for t in done if t["replies_at_end"] == 1]
    worst = max(times) if len(times) == len(done) and done else None
    lines = []
    for t in trials:
        if "error" in t:
            lines.append(f"  trial {t['trial']:>2}: did not run: {t['error']}")
            continue
        lines.append(
            f"  trial {t['trial']:>2}: kill to reply {fmt(t['kill_to_reply_s'])} s, "
            f"{t['replies_at_end']} repl{'y' if t['replies_at_end'] == 1 else 'ies'} ({t['kind']}), "
            f"killed {t['killed_into_call_s']} s into the call "
            f"(call unanswered at the kill: {t['call_unanswered_at_kill']}), "
            f"replacement ready after {t['replacement_ready_after_kill_s']} s, "
            f"Gemini calls {t['gemini_calls']} {t['gemini_statuses']}, reply state {t['reply_state']}"
        )
    figs = [
        Fig(
            "trials run / asked", lambda _: f"{len(done)} / {p['trials']}",
            target(f"{TARGET_TRIALS} trials", len(done), TARGET_TRIALS, at_most=False),
        ),
        Fig(
            "kill to reply (s), max", lambda _: worst,
            target(f"<= {TARGET_S:g}", worst, TARGET_S, at_most=True)
            + ("" if worst is not None else f" (a trial had no reply within {p['reply_timeout']:g} s)"),
        ),
        Fig("kill to reply (s), each", lambda _: ", ".join(fmt(t) for t in times) or "n/a", f"n={len(times)}"),
        Fig(
            "replied exactly once", lambda _: f"{len(once)} of {len(done)}",
            target("all", len(done) - len(once), 0, at_most=True),
        ),
        Fig(
            "duplicates (chats with more than one reply)",
            lambda _: sum(1 for t in done if t["replies_at_end"] > 1),
            "counted again after the last trial"
            + (f" and {p['final_wait']:g} s more" if p["final_wait"] else ""),
        ),
        Fig("fallback replies", lambda _: sum(1 for t in done if t["kind"] == "fallback")),
    ]
    title = (
        f"kill: {p['trials']} trial(s), Gemini latency {p['latency']:g} s, SIGKILL {p['kill_after']:g} s "
        f"into the call, {p['workers']} worker(s) x {p['concurrency']} threads, poll timeout "
        f"{p['poll_timeout_s']} s"
    )
    notes = [
        *lines,
        logs_line("worker/beat logs", f["logs"]),
        "  a task message the killed worker held is re-delivered by Redis only after the "
        "visibility timeout (600 s): --final-wait 620 to see whether that duplicates a reply",
    ]
    return section(title, [table(figs, f), *notes])


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from benchmarks.report import renderer
    from benchmarks.rigging import Context
    from benchmarks.traffic import UserIds

    params = KillParams(
        trials=args.trials,
        latency=args.latency,
        kill_after=args.kill_after,
        reply_timeout=args.reply_timeout,
        duplicate_wait=args.duplicate_wait,
        final_wait=args.final_wait,
        workers=args.workers,
        concurrency=args.concurrency,
        worker_loglevel=args.worker_loglevel,
        profile_workers=args.profile_workers,
    )
    outcome = runner.scenarios_run(
        names=["kill"],
        keep_files=args.keep_files,
        context=lambda stack: Context(stack=stack, users=UserIds(start=4_000_000_000)),
        scenario=lambda ctx, name: kill_scenario(ctx, params),
        poll_timeout=args.poll_timeout,
    )
    setup = f"{args.workers} worker(s) x {args.concurrency} threads; {args.trials} trial(s)"
    render = renderer("Botfleet: worker SIGKILL during an AI call", {"kill": render_kill})
    code = runner.report_finish(outcome, runner.machine_header(outcome, setup), render, args.json)
    if code == 0:
        trials = outcome.results.get("kill", {}).get("trials", [])
        code = 1 if any("error" in t for t in trials) else 0
    return code


if __name__ == "__main__":
    sys.exit(main())
