"""The webhook benchmark's scenarios (see benchmarks/webhook_load.py): ingest, e2e and
idle. Each gets a fresh `Rig` (emulator, gunicorn, workers and beat as it needs them)
and bots of its own, and leaves the tasks stopped and the processes gone."""

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import psutil

from benchmarks import fleet as fleets
from benchmarks import procs, traffic
from benchmarks.load import measure
from benchmarks.logscan import log_summary
from benchmarks.profiling import spy_finish, spy_start
from benchmarks.report import latency_summary, progress
from benchmarks.rigging import Context, Params, cpu_by_group, cpu_delta, fleet_label, with_rig
from benchmarks.sampler import MachineCpu, RssSampler, mib, tree_pss
from benchmarks.stack import PROJECT_DIR, Rig
from benchmarks.webhook_load import (
    TARGET_INGEST_P99_MS,
    TARGET_INGEST_PER_S,
    WORKER_CLASSES,
    WebParams,
)
from emulators.telegram import EmulatorClient

Figures = dict[str, Any]
FIRST_UPDATE_ID = 700_000_000
WARM_S = 0.25  # web_warm: every answer of a round within this
USER_BLOCK = 10_000_000  # user ids per load generator run: every update a chat of its own
CORES = psutil.cpu_count() or 1
OURS = ("web", "workers", "beat", "redis", "emulator", "baseline", "driver")  # cpu_by_group's groups
STAGE_RENAME = {"written -> delivered by getUpdates": "written -> pushed (webhook answered 2xx)"}


class UserBlocks:
    def __init__(self, start: int = 3_000_000_000) -> None:
        self._next = start

    def take(self) -> int:
        self._next += USER_BLOCK
        return self._next


_users = UserBlocks()


def rig_for(ctx: Context, p: WebParams, scenario: str) -> Rig:
    return Rig(
        ctx.stack, scenario, workers=p.workers, concurrency=p.concurrency,
        loglevel=p.worker_loglevel, profile=p.profile_workers,
    )


def web_start(rig: Rig, p: WebParams, port: int, worker_class: str, tag: str) -> str:
    progress(f"{rig.scenario}: starting gunicorn ({p.web_workers} x {worker_class})", force=True)
    url = rig.web_start(
        workers=p.web_workers, bind=f"127.0.0.1:{port}",
        extra_args=p.gunicorn_args(worker_class), log_name=f"web-{tag}",
    )
    web_warm(url, p.web_workers)
    return url


def web_warm(url: str, workers: int, timeout: float = 120) -> None:
    """Wait until every gunicorn worker has loaded the app: gunicorn logs "Booting worker"
    before the worker imports Django (seconds, on a busy machine), and a load started
    then would measure the imports. Concurrent POSTs to a webhook of no bot (403 after
    the URL conf and a database query) until a whole round answers fast."""
    import httpx

    from bots import webhooks

    target = f"{url}/{webhooks.PATH_PREFIX}0/"
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=timeout) as client, ThreadPoolExecutor(workers * 4) as pool:

        def one(_: int) -> float:
            began = time.monotonic()
            client.post(target, content=b"{}", headers={"Content-Type": "application/json"})
            return time.monotonic() - began

        while time.monotonic() < deadline:
            if max(pool.map(one, range(workers * 8))) < WARM_S:
                return
    raise TimeoutError(f"gunicorn at {url} did not warm up within {timeout:g} s")


def webhook_fleet(ctx: Context, rig: Rig, emulator: EmulatorClient, p: WebParams, count: int) -> tuple[list[fleets.FleetBot], fleets.StartReport]:
    """Webhook bots on the emulator and in the database, every task started through
    task_start (getMe, then setWebhook to WEBHOOK_BASE_URL with a fresh secret)."""
    label = fleet_label(ctx, rig.scenario)
    progress(f"{rig.scenario}: creating {count} webhook bots", force=True)
    fleet = fleets.fleet_create(emulator=emulator, count=count, label=label, update_mode="webhook")
    start = fleets.fleet_start(fleet, threads=p.start_threads, label=rig.scenario)
    return fleet, start


def hook_targets(fleet: list[fleets.FleetBot]) -> list[dict[str, Any]]:
    """The load generator's targets: each bot's webhook URL and current secret."""
    from bots import webhooks
    from bots.models import Bot

    bots = Bot.objects.in_bulk([b.bot_pk for b in fleet])
    return [
        {
            "url": webhooks.url_of(b.bot_pk),
            "secret": bots[b.bot_pk].webhook_secret.reveal(),
            "first_update_id": FIRST_UPDATE_ID,
        }
        for b in fleet
    ]


def start_report(fleet: list[fleets.FleetBot], start: fleets.StartReport) -> Figures:
    from bots.models import BotTask

    running = BotTask.objects.filter(pk__in=[b.task_pk for b in fleet], status="running").count()
    return {
        "bots": len(fleet),
        "running": running,
        "start_wall_s": round(start.wall_s, 1),
        "start_failures": len(start.failures),
        "start_failure_examples": start.failures[:3],
    }


# --- the load generator ---------------------------------------------------------------------


def client_run(rig: Rig, plan: dict[str, Any], tag: str) -> Figures:
    """Run benchmarks.webhook_client once (a process of its own) and return its result."""
    logs = rig.stack.workdir / "logs"
    plan_path, result_path = logs / f"{rig.scenario}-client-{tag}.plan.json", logs / f"{rig.scenario}-client-{tag}.json"
    logs.mkdir(parents=True, exist_ok=True)
    plan_path.write_text(json.dumps(plan))  # secrets: a file, not argv
    result_path.unlink(missing_ok=True)
    child = procs.spawn(
        "webhook client",
        [sys.executable, "-m", "benchmarks.webhook_client", str(plan_path), str(result_path)],
        env=rig.stack.env(),
        cwd=PROJECT_DIR,
        log_path=logs / f"{rig.scenario}-client-{tag}.log",
    )
    deadline = time.monotonic() + float(plan["duration"]) + 120
    try:
        while child.running():
            if time.monotonic() > deadline:
                raise TimeoutError(f"webhook client {tag} did not finish:\n{child.log()[-2000:]}")
            time.sleep(0.2)
    finally:
        procs.stop(child, grace=5)
    if not result_path.exists():
        raise RuntimeError(f"webhook client {tag} wrote no result:\n{child.log()[-2000:]}")
    return json.loads(result_path.read_text())


def load_phase(
    rig: Rig,
    targets: list[dict[str, Any]],
    *,
    mode: str,
    connections: int,
    duration: float,
    rate: float,
    server: str,
    tag: str,
) -> Figures:
    """One measured run of the load generator, with the CPU and memory of every process
    over it; `server` names the group that answers (web or baseline)."""
    plan = {
        "targets": targets, "mode": mode, "connections": connections, "duration": duration,
        "rate": rate, "first_user_id": _users.take(),
    }
    progress(f"{rig.scenario}: {tag}: {mode} loop, {connections} connections, {duration:g} s"
             + (f" at {rate:g}/s" if mode == "paced" else ""), force=True)
    machine, before = MachineCpu(), cpu_by_group(rig, system=True)
    with RssSampler(rig.system_pids) as rss:
        result = client_run(rig, plan, tag)
    cpu_s = cpu_delta(before, cpu_by_group(rig, system=True))
    busy = machine.busy_fraction()
    for target, next_id in zip(targets, result["next_update_ids"], strict=True):
        target["first_update_id"] = next_id
    wall = result["wall_s"]
    statuses = Counter(result["statuses"])
    accepted = sum(n for status, n in statuses.items() if status.startswith("2"))
    server_cpu = cpu_s.get(server)
    return {
        "mode": mode,
        "connections": connections,
        "offered_per_s": rate if mode == "paced" else None,
        "sent": result["sent"],
        "not_sent": result["planned"] - result["sent"],  # paced: the server fell behind
        "accepted": accepted,
        "accepted_per_s": round(accepted / wall, 1) if wall else None,
        "not_2xx": {s: n for s, n in statuses.items() if not s.startswith("2")},
        "errors": result["errors"],
        "latency": latency_summary(result["latencies_ms"]),
        "service": latency_summary(result["service_ms"]),
        "wall_s": wall,
        "cpu_s": cpu_s,
        "cpu_cores": {name: round(sec / wall, 3) for name, sec in cpu_s.items()} if wall else {},
        "client_cpu_cores": round(result["cpu_s"] / wall, 3) if wall else None,
        "server_cpu_ms_per_update": round(server_cpu * 1000 / accepted, 2) if server_cpu and accepted else None,
        "rss_peak_mib": {name: mib(size) for name, size in rss.peak.items()},
        "machine_cpu_busy": round(busy, 3),
        # Everyone else on the machine (the benchmark's own processes taken out): on a
        # shared 2-core machine, what the figures competed with.
        "others_cpu_cores": round(
            max(0.0, busy * CORES - sum(cpu_s.get(k, 0) for k in OURS) / wall - result["cpu_s"] / wall), 2
        ) if wall else None,
    }


def warm_up(rig: Rig, targets: list[dict[str, Any]], p: WebParams) -> int:
    """Not measured: the first requests load Django's URL conf and open the database and
    broker connections of every worker."""
    plan = {
        "targets": targets, "mode": "closed", "connections": p.connections,
        "duration": p.warmup_s, "rate": 0, "first_user_id": _users.take(),
    }
    result = client_run(rig, plan, f"warmup-{time.monotonic_ns()}")
    for target, next_id in zip(targets, result["next_update_ids"], strict=True):
        target["first_update_id"] = next_id
    return sum(n for status, n in result["statuses"].items() if status.startswith("2"))


def ingest_phases(rig: Rig, targets: list[dict[str, Any]], p: WebParams, server: str, tag: str) -> Figures:
    warm = warm_up(rig, targets, p)
    closed = load_phase(rig, targets, mode="closed", connections=p.connections, duration=p.duration,
                        rate=0, server=server, tag=f"{tag}-closed")
    paced = load_phase(rig, targets, mode="paced", connections=p.connections, duration=p.duration,
                       rate=p.rate, server=server, tag=f"{tag}-paced")
    figures = {"closed": closed, "paced": paced, "warmup_accepted": warm}
    capacity = closed["accepted_per_s"] or 0
    if server == "web" and capacity < p.rate and not p.quick:
        # Beyond its capacity the paced latency is the queue's; at half of it, the view's.
        figures["light"] = load_phase(
            rig, targets, mode="paced", connections=p.connections, duration=p.duration,
            rate=round(capacity / 2, 1), server=server, tag=f"{tag}-light",
        )
    return figures


def missed(figures: Figures) -> bool:
    rate = figures["closed"]["accepted_per_s"] or 0
    p99 = figures["paced"]["latency"]["p99_ms"]
    return rate < TARGET_INGEST_PER_S or p99 is None or p99 > TARGET_INGEST_P99_MS


# --- ingest ------------------------------------------------------------------------------------


def ingest(ctx: Context, p: WebParams, port: int) -> Figures:
    """The view's cost alone: POSTs straight at gunicorn, no Celery worker running."""
    rig = rig_for(ctx, p, "ingest")

    def body(emulator: EmulatorClient) -> Figures:
        fleet, start = webhook_fleet(ctx, rig, emulator, p, p.bots)
        targets = hook_targets(fleet)
        classes = [p.worker_class] + ([c for c in WORKER_CLASSES if c != p.worker_class] if p.compare else [])
        result: Figures = {"params": asdict(p), "fleet": start_report(fleet, start), "botfleet": {}}
        for worker_class in classes if p.botfleet else []:
            result["botfleet"][worker_class] = _ingest_botfleet(rig, fleet, targets, p, port, worker_class)
        if p.baseline:
            try:
                result["baseline"] = _ingest_peer(rig, emulator, p)
            except Exception as error:  # e.g. tornado missing: Botfleet's figures still count
                result["baseline_error"] = f"{type(error).__name__}: {str(error)[-500:]}"
        result["tasks"] = fleets.task_health(fleet)
        _messages_forget(fleet)
        return result

    return with_rig(ctx, rig, body)


def _ingest_botfleet(
    rig: Rig, fleet: list[fleets.FleetBot], targets: list[dict[str, Any]], p: WebParams,
    port: int, worker_class: str,
) -> Figures:
    stored_before, queued_before = _stored(fleet), _queued(rig)
    web_start(rig, p, port, worker_class, f"ingest-{worker_class}")
    try:
        figures = ingest_phases(rig, targets, p, "web", worker_class)
        figures["profile"] = None
        if p.profile == "on" or (p.profile == "auto" and not p.quick and missed(figures)):
            figures["profile"] = _profile_web(rig, targets, p, worker_class)
    finally:
        rig.web_stop()
    web_log = rig.web.log() if rig.web else ""
    # Every 2xx must be a stored message and a task waiting in Redis for a worker.
    profile = figures["profile"] or {}
    figures["accepted_all_runs"] = (
        figures["closed"]["accepted"] + figures["paced"]["accepted"] + figures["warmup_accepted"]
        + figures.get("light", {}).get("accepted", 0) + profile.get("accepted", 0)
    )
    figures["stored_all_runs"] = _stored(fleet) - stored_before
    queued_after = _queued(rig)
    figures["queued_for_workers"] = (
        queued_after - queued_before if queued_before is not None and queued_after is not None else None
    )
    figures["web_log"] = log_summary([web_log])
    return figures


def _profile_web(rig: Rig, targets: list[dict[str, Any]], p: WebParams, tag: str) -> Figures:
    """py-spy on the gunicorn master and workers during one more closed loop."""
    spy = spy_start(rig, f"ingest-{tag}")
    if isinstance(spy, dict):
        return spy
    phase = load_phase(rig, targets, mode="closed", connections=p.connections,
                       duration=p.profile_s, rate=0, server="web", tag=f"{tag}-profiled")
    summary = spy_finish(*spy)
    summary["accepted_per_s_while_profiled"] = phase["accepted_per_s"]
    summary["accepted"] = phase["accepted"]
    return summary


def _ingest_peer(rig: Rig, emulator: EmulatorClient, p: WebParams) -> Figures:
    progress(f"ingest: starting the PTB webhook peer ({p.bots} bots)", force=True)
    given, targets = peer_start(rig, emulator, p.bots, mode="noop")
    try:
        figures = ingest_phases(rig, targets, p, "baseline", "peer")
    finally:
        figures_log = rig.baseline_stop()
    figures["given"] = given
    figures["errors_logged"] = peer_errors(figures_log)
    return figures


def peer_start(rig: Rig, emulator: EmulatorClient, count: int, *, mode: str) -> tuple[Figures, list[dict[str, Any]]]:
    """The PTB webhook peer on bots of its own (it sets their webhooks itself)."""
    infos = fleets.register_bots(emulator, count, f"Peer {rig.scenario}")
    workdir = rig.stack.workdir
    tokens_file, out_file = workdir / f"peer-tokens-{rig.scenario}.json", workdir / f"peer-hooks-{rig.scenario}.json"
    tokens_file.write_text(json.dumps([info["token"] for info in infos]))
    out_file.unlink(missing_ok=True)
    rig.baseline = procs.spawn(
        "ptb webhook peer",
        [sys.executable, "-m", "benchmarks.ptb_webhook", "--url", rig.emulator_url,
         "--tokens-file", str(tokens_file), "--out-file", str(out_file), "--mode", mode],
        env=rig.stack.env(), cwd=PROJECT_DIR, log_path=workdir / "logs" / f"{rig.scenario}-ptb-webhook.log",
    )
    procs.wait_for_log(rig.baseline, r"ptb webhook ready: \d+ bots", timeout=120)
    hooks = json.loads(out_file.read_text())
    targets = [
        {"url": h["url"], "secret": h["secret"], "first_update_id": FIRST_UPDATE_ID} for h in hooks["hooks"]
    ]
    tokens = [info["token"] for info in infos]
    return {**hooks["given"], "tokens": tokens}, targets


def peer_errors(log: str) -> dict[str, int]:
    for line in reversed(log.splitlines()):
        if line.startswith('{"errors"'):
            return json.loads(line)["errors"]
    return {"(no summary: the peer did not stop cleanly)": 1}


def _stored(fleet: list[fleets.FleetBot]) -> int:
    """Pushes kept for the workers (no worker runs here to drain them)."""
    from bots.models import PushedUpdate

    return PushedUpdate.objects.filter(bot_id__in=[b.bot_pk for b in fleet]).count()


def _queued(rig: Rig) -> int | None:
    """Tasks waiting in the `replies` queue (Redis list), or None if Redis cannot say."""
    import redis

    try:
        return int(redis.Redis.from_url(rig.stack.redis_url, socket_timeout=5).llen("replies"))
    except redis.RedisError:
        return None


def _messages_forget(fleet: list[fleets.FleetBot]) -> None:
    """The ingest's pushes wait for a worker that never comes: delete them, or the next
    scenario's supervisor would drain and answer them all (to a stopped emulator)."""
    from bots.models import PushedUpdate
    from conversations.models import Message

    PushedUpdate.objects.filter(bot_id__in=[b.bot_pk for b in fleet]).delete()
    Message.objects.filter(bot_id__in=[b.bot_pk for b in fleet]).delete()


# --- e2e ---------------------------------------------------------------------------------------


def e2e(ctx: Context, p: WebParams, port: int) -> Figures:
    """The emulator pushes to gunicorn; Celery workers answer through the emulator."""
    rig = rig_for(ctx, p, "e2e")

    def body(emulator: EmulatorClient) -> Figures:
        result: Figures = {"params": asdict(p)}
        if p.botfleet:
            result["botfleet"] = _e2e_botfleet(ctx, rig, emulator, p, port)
        if p.baseline:
            try:
                result["baseline"] = _e2e_peer(ctx, rig, emulator, p)
            except Exception as error:  # e.g. tornado missing: Botfleet's figures still count
                result["baseline_error"] = f"{type(error).__name__}: {str(error)[-500:]}"
        return result

    return with_rig(ctx, rig, body)


def _e2e_peer(ctx: Context, rig: Rig, emulator: EmulatorClient, p: WebParams) -> Figures:
    progress(f"e2e: starting the PTB webhook peer ({p.bots} bots)", force=True)
    given, _ = peer_start(rig, emulator, p.bots, mode="echo")
    peer_tokens = given.pop("tokens")
    try:
        theirs = _e2e_phases(ctx, rig, emulator, p, peer_tokens, "e2e peer")
        theirs["deliveries"] = deliveries(emulator, peer_tokens)
    finally:
        theirs_log = rig.baseline_stop()
    theirs["given"] = given
    theirs["errors_logged"] = peer_errors(theirs_log)
    return theirs


def _e2e_botfleet(ctx: Context, rig: Rig, emulator: EmulatorClient, p: WebParams, port: int) -> Figures:
    time_wait_before = time_wait_count()
    rig.beat_start()
    progress(f"e2e: starting {p.workers} worker(s)", force=True)
    rig.workers_start()
    web_start(rig, p, port, p.worker_class, "e2e")
    fleet, start = webhook_fleet(ctx, rig, emulator, p, p.bots)
    tokens = [b.token for b in fleet]
    ours: Figures = {"fleet": start_report(fleet, start)}
    ours.update(_e2e_phases(ctx, rig, emulator, p, tokens, "e2e"))
    ours["deliveries"] = deliveries(emulator, tokens)
    ours["reply_states"] = fleets.reply_states(fleet)
    ours["tasks"] = fleets.task_health(fleet)
    fleets.fleet_stop(fleet)
    rig.workers_stop()
    rig.beat_stop()
    rig.web_stop()
    ours["logs"] = log_summary(rig.worker_logs())
    ours["web_log"] = log_summary([rig.web.log() if rig.web else ""])
    # The peer comes next: let the sockets of this side's last requests go first.
    ours["time_wait_after"] = time_wait_settle(time_wait_before)
    return ours


def _e2e_phases(
    ctx: Context, rig: Rig, emulator: EmulatorClient, p: WebParams, tokens: list[str], label: str
) -> Figures:
    def burst(tokens: list[str], counter: traffic.ReplyCounter) -> tuple[list[traffic.Injected], float]:
        return traffic.inject_burst(emulator, tokens, p.messages, users=ctx.users, counter=counter, label=f"{label} burst")

    def paced(tokens: list[str], counter: traffic.ReplyCounter) -> tuple[list[traffic.Injected], float]:
        return traffic.inject_paced(emulator, tokens, rate=p.rate, duration=p.duration, users=ctx.users,
                                    counter=counter, label=f"{label} paced")

    figures = {}
    # Paced first: after a burst beyond the server's capacity, the emulator goes on
    # re-posting the updates it got no timely 2xx for, which would swamp a later phase.
    for name, inject in (("paced", paced), ("burst", burst)):
        figures[f"{name}_settle"] = deliveries_settle(emulator, tokens, timeout=p.drain_s)
        progress(f"{label}: {name}", force=True)
        # Botfleet's web and first worker under py-spy only when asked: a profiled run is slower.
        spies = {}
        if p.profile == "on" and rig.baseline is None:
            spies = {"web": spy_start(rig, f"e2e-{name}-web"),
                     "worker": spy_start(rig, f"e2e-{name}-worker", rig.workers[0].pid)}
        phase = measure(rig, emulator, tokens, inject, drain_s=p.drain_s, label=f"{label} {name}", system=True)
        phase["stages"] = {STAGE_RENAME.get(k, k): v for k, v in phase["stages"].items()}
        for who, spy in spies.items():
            phase[f"profile_{who}"] = spy if isinstance(spy, dict) else spy_finish(*spy)
        figures[name] = phase
    # How long the emulator (Telegram) still had pushes to make once every reply was in.
    figures["after_settle"] = deliveries_settle(emulator, tokens, timeout=min(p.drain_s, 90))
    return figures


def deliveries_settle(emulator: EmulatorClient, tokens: list[str], *, timeout: float) -> Figures:
    """Wait (bounded) until the emulator has no update left to push for these bots."""
    began = time.monotonic()
    while True:
        pending = sum(emulator.bot_status(token)["pending_update_count"] for token in tokens)
        waited = time.monotonic() - began
        if not pending or waited > timeout:
            return {"pending_updates": pending, "waited_s": round(waited, 1)}
        progress(f"waiting for the emulator's {pending} undelivered pushes to settle", every=2.0)
        time.sleep(1.0)


def time_wait_count() -> int:
    return sum(1 for c in psutil.net_connections("tcp") if c.status == psutil.CONN_TIME_WAIT)


def time_wait_settle(before: int, timeout: float = 75) -> Figures:
    """Wait (bounded) until the TCP sockets in TIME_WAIT are back near what they were
    before (`before`; a burst leaves thousands and Linux keeps each 60 s), so the next
    side starts on a machine as clean as this one did."""
    began, limit = time.monotonic(), before + 500
    while True:
        count = time_wait_count()
        waited = time.monotonic() - began
        if count <= limit or waited > timeout:
            return {"time_wait": count, "before": before, "waited_s": round(waited, 1)}
        progress(f"waiting for {count} TIME_WAIT sockets to clear", every=5.0)
        time.sleep(2.0)


def deliveries(emulator: EmulatorClient, tokens: list[str]) -> Figures:
    """The emulator's webhook delivery attempts: answered 2xx, and every other outcome
    (a non-2xx or no answer is retried, as Telegram does)."""
    outcomes: Counter[str] = Counter()
    for token in tokens:
        for attempt in emulator.webhook_deliveries(token):
            status = attempt["status"]
            if attempt["error"] is None:
                outcomes["2xx"] += 1
            else:
                outcomes[f"{status or 'no answer'}: {attempt['error'][:60]}"] += 1
    return dict(outcomes)


# --- idle ---------------------------------------------------------------------------------------


def idle(ctx: Context, p: WebParams, port: int) -> Figures:
    result: Figures = {"params": asdict(p)}
    if p.polling_bots:
        from benchmarks.idle import idle as polling_idle

        progress(f"idle: first the polling comparison ({p.polling_bots} bots)", force=True)
        result["polling"] = polling_idle(ctx, _polling_params(p))
    result["webhook"] = _webhook_idle(ctx, p, port)
    return result


def _polling_params(p: WebParams) -> Params:
    return Params(
        bots=p.polling_bots, messages=0, rate=0, duration=p.duration, workers=p.workers,
        concurrency=p.concurrency, baseline=False, drain_s=p.drain_s, outage_s=0,
        recovery_timeout_s=0, start_threads=p.start_threads, supervisor="beat",
        worker_loglevel=p.worker_loglevel, profile_workers=p.profile_workers, web=True,
    )


def _webhook_idle(ctx: Context, p: WebParams, port: int) -> Figures:
    from django.conf import settings

    from benchmarks.idle import _floor

    rig = rig_for(ctx, p, "idle-webhook")

    def body(emulator: EmulatorClient) -> Figures:
        figures: Figures = {
            "webhook_info_interval_s": settings.WEBHOOK_INFO_INTERVAL,
            "supervisor_interval_s": settings.SUPERVISOR_INTERVAL,
        }
        label = fleet_label(ctx, rig.scenario)
        progress(f"idle-webhook: creating {p.bots} webhook bots", force=True)
        fleet = fleets.fleet_create(emulator=emulator, count=p.bots, label=label, update_mode="webhook")
        rig.beat_start()
        progress(f"idle-webhook: starting {p.workers} worker(s) and gunicorn", force=True)
        rig.workers_start()
        web_start(rig, p, port, p.worker_class, "idle")
        figures["floor"] = _floor(rig)
        start = fleets.fleet_start(fleet, threads=p.start_threads, label="idle-webhook")
        figures["fleet"] = start_report(fleet, start)
        pks = [b.task_pk for b in fleet]
        windows: Figures = {}
        with RssSampler(rig.system_pids) as rss:
            windows["just_started"] = _window(rig, emulator, rss, p.duration, "just after Start")
            _checked_now(pks)
            windows["nothing_due"] = _window(rig, emulator, rss, p.duration, "no check due")
            _checked_spread(pks, settings.WEBHOOK_INFO_INTERVAL)
            windows["steady"] = _window(rig, emulator, rss, p.duration, "steady state")
        figures["windows"] = windows
        figures["pss_end_mib"] = mib(tree_pss(rig.system_pids()["system"]) or 0)
        figures["tasks"] = fleets.task_health(fleet)
        _stop_quickly(pks)  # no 10,000 deleteWebhook calls: the emulator goes away
        rig.workers_stop()
        rig.beat_stop()
        rig.web_stop()
        figures["logs"] = log_summary(rig.worker_logs())
        figures["web_log"] = log_summary([rig.web.log() if rig.web else ""])
        figures["redis_measured"] = bool(rig.system_pids()["redis"])
        return figures

    return with_rig(ctx, rig, body)


def _window(rig: Rig, emulator: EmulatorClient, rss: RssSampler, duration: float, label: str) -> Figures:
    rss.reset()
    machine, before = MachineCpu(), cpu_by_group(rig, system=True)
    start, began = time.time(), time.monotonic()
    while (elapsed := time.monotonic() - began) < duration:
        progress(lambda elapsed=elapsed: f"idle-webhook ({label}): {elapsed:.0f}/{duration:.0f} s, "
                 f"system RSS {mib(rss.last.get('system', 0))} MiB")
        time.sleep(min(0.5, max(0.0, duration - elapsed)))
    wall, end = time.monotonic() - began, time.time()
    cpu_s = cpu_delta(before, cpu_by_group(rig, system=True))
    calls = Counter(
        call["method"] for call in emulator.calls() if start <= call["time"] <= end
    )
    return {
        "window_s": round(wall, 1),
        "cpu_s": cpu_s,
        "cpu_cores": {name: round(sec / wall, 4) for name, sec in cpu_s.items()},
        "rss_peak_mib": {name: mib(size) for name, size in rss.peak.items()},
        "bot_api_calls": dict(calls),
        "machine_cpu_busy": round(machine.busy_fraction(), 3),
    }


def _checked_now(task_pks: list[int]) -> None:
    """Every webhook checked just now: no getWebhookInfo due for WEBHOOK_INFO_INTERVAL."""
    from django.utils import timezone

    from bots.models import BotTask

    _in_chunks(task_pks, lambda chunk: BotTask.objects.filter(pk__in=chunk).update(webhook_checked_at=timezone.now()))


def _checked_spread(task_pks: list[int], interval: float, buckets: int = 120) -> None:
    """The last checks spread evenly over the past interval, as after running for a long
    time: interval / buckets seconds apart, so each supervisor round finds its share due."""
    from datetime import timedelta

    from django.utils import timezone

    from bots.models import BotTask

    now = timezone.now()
    for bucket in range(buckets):
        chunk = task_pks[bucket::buckets]
        # Bucket 0 is due at once, the last one an interval from now.
        at = now - timedelta(seconds=interval * (1 - bucket / buckets))
        _in_chunks(chunk, lambda part, at=at: BotTask.objects.filter(pk__in=part).update(webhook_checked_at=at))


def _stop_quickly(task_pks: list[int]) -> None:
    from bots.models import BotTask

    _in_chunks(task_pks, lambda chunk: BotTask.objects.filter(pk__in=chunk).update(status="stopped"))


def _in_chunks(items: list[int], apply: Callable[[list[int]], object], size: int = 500) -> None:
    for n in range(0, len(items), size):
        apply(items[n:n + size])


SCENARIOS: dict[str, Callable[[Context, WebParams, int], Figures]] = {
    "ingest": ingest,
    "e2e": e2e,
    "idle": idle,
}

