"""The production topology, end to end, on this machine and without Docker (`bin/topology`).

    PostgreSQL (127.0.0.1:5432, a fresh database)   Redis (127.0.0.1:6379, a db of its own)
    gunicorn x 2 workers  <- the Telegram emulator pushes the webhook bots' updates here
    Celery workers w1, w2, w3 (threads pool, the Procfile's queues)  +  one celery beat
    the Telegram emulator (Bot API)  +  the Gemini emulator (real google-genai calls)

200 bots (100 polling, 100 webhook), each with a Gemini credential, started through
`bots.services.task_start`. Three rounds of private messages, one chat per bot; during
the second round one gunicorn worker and one whole Celery worker process are SIGKILLed.
Then it checks, with the product's default timings:

- every message was answered exactly once (per bot and chat, in the emulator);
- the polling bots were spread over all three workers, and pushed messages were answered
  by more than one worker;
- the killed worker's polling bots polled again from a live worker within 60 s.

Exit status: 0 all held, 1 something did not, 2 PostgreSQL or Redis does not answer,
130 interrupted. Every process started here is stopped, the database dropped and the
Redis db flushed on the way out, Ctrl-C and SIGTERM included.
"""

import argparse
import os
import platform
import re
import signal
import socket
import statistics
import sys
import time
import traceback
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from threading import Event
from typing import Any

import psutil
import psycopg
import redis

from benchmarks import fleet as fleets
from benchmarks import procs, traffic
from benchmarks.ai_load import API_KEY, MODEL, gemini_start
from benchmarks.ai_traffic import gemini_figures, reply_errors
from benchmarks.logscan import log_summary
from benchmarks.report import logs_line, progress
from benchmarks.runner import Interrupted, sigterm_as_interrupt
from benchmarks.stack import PROJECT_DIR, QUEUES, Rig, Stack
from emulators.gemini import GeminiEmulatorClient
from emulators.telegram import EmulatorClient

HOST = "127.0.0.1"
POSTGRES_PORT = 5432
REDIS_PORT = 6379
REDIS_DB = 14  # ours alone: flushed at the start and at the end
WORKERS = ("w1", "w2", "w3")  # Celery hostnames standing for three hosts
WORKER_CONCURRENCY = 32  # the Procfile's
WEB_WORKERS = 2  # gunicorn.conf.py's, as the Dockerfile and docker-compose run it
BOTS_PER_MODE = 100
ROUND_GAP_S = 20.0
# No reply is sent sooner than GEMINI_LATENCY_S after its message was written, so at the
# kill (KILL_AFTER_S into round 2, a second earlier) the round's replies are all still
# inside their AI call: the killed worker dies holding claimed messages, the case the
# reaper must recover exactly once. (A kill between a part's "handed to Telegram"
# stamp and Telegram's answer is failed as "interrupted" by design, never sent twice; a
# test that hit that window at random would flake.)
GEMINI_LATENCY_S = 3.0
KILL_AFTER_S = 2.0
REVIVAL_TARGET_S = 60.0
REVIVAL_WATCH_S = 90.0
# The reaper takes a dead worker's messages over after CLAIM_SECONDS (60) plus up to a
# supervisor interval (10), then the AI call: 150 s is generous and still bounded.
STRAGGLER_WAIT_S = 150.0
DUPLICATE_WAIT_S = 12.0  # more than one reaper round after the last reply
CLAIM_SAMPLE_S = 0.25  # far shorter than an AI call, so no answer goes unseen
REVIVED = re.compile(r"task (\d+): poller lease expired; revived")  # bots.supervisor's warning
# The timings this run proves: the product's defaults (config/settings.py), whatever the
# caller's shell sets. The header says so, or names what a .env file changed.
DEFAULT_TIMINGS = {
    "TELEGRAM_POLL_TIMEOUT": 50, "POLL_LEASE_RENEW_INTERVAL": 5, "POLL_LEASE_GRACE": 15,
    "SUPERVISOR_INTERVAL": 10, "CLAIM_SECONDS": 60, "CLAIM_RENEW_INTERVAL": 10,
}


# --- PostgreSQL and Redis ---------------------------------------------------------------


def _admin_connection() -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=HOST, port=POSTGRES_PORT, user="postgres", dbname="postgres",
        connect_timeout=3, autocommit=True,
    )


def _redis(db: int) -> "redis.Redis[bytes]":
    return redis.Redis(host=HOST, port=REDIS_PORT, db=db, socket_timeout=5)


def services_missing(redis_db: int) -> str:
    """One line naming the server that does not answer, or ""."""
    try:
        with _admin_connection() as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        return f"PostgreSQL does not answer on {HOST}:{POSTGRES_PORT} ({_first_line(error)})"
    try:
        _redis(redis_db).ping()
    except redis.RedisError as error:
        return f"Redis does not answer on {HOST}:{REDIS_PORT} ({_first_line(error)})"
    return ""


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def database_create() -> str:
    name = f"botfleet_topology_{os.getpid()}"
    with _admin_connection() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # a pid reused
        connection.execute(f'CREATE DATABASE "{name}"')
    return name


def database_drop(name: str) -> None:
    # FORCE: a connection a killed process left open must not keep the database alive.
    with _admin_connection() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    """A loopback port free now. Chosen before gunicorn starts because every process
    needs it in WEBHOOK_BASE_URL (the workers compare Telegram's webhook URL with it)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def environment_prepare(*, database: str, redis_db: int, web_port: int) -> None:
    """What every process of the system gets (through Stack.env, which starts from this
    process's environment). Stack adds DEBUG=false with a fresh SECRET_KEY and Fernet
    key once DEBUG and the keys are out of the way."""
    for name in ("DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS", *DEFAULT_TIMINGS):
        os.environ.pop(name, None)
    os.environ.update(
        DATABASE_URL=f"postgres://postgres@{HOST}:{POSTGRES_PORT}/{database}",
        REDIS_URL=f"redis://{HOST}:{REDIS_PORT}/{redis_db}",
        SECURE_COOKIES="false",  # plain http on loopback
        ALLOWED_HOSTS=f"{HOST},localhost",
        WEBHOOK_BASE_URL=f"http://{HOST}:{web_port}",
    )


# --- the processes -----------------------------------------------------------------------


class TopologyRig(Rig):
    """The benchmarks' Rig with production's command lines: workers w1..w3@topology as
    the Procfile starts them (gossip and mingle on), and gunicorn with the Dockerfile's
    2 workers and access log, on a port chosen beforehand."""

    def __init__(self, stack: Stack, *, web_port: int) -> None:
        super().__init__(stack, "topology", workers=len(WORKERS), concurrency=WORKER_CONCURRENCY)
        self.web_port = web_port

    def _worker_spawn(self, tag: str, label: str) -> str:
        name = WORKERS[len(self.workers)]
        self.workers.append(
            procs.spawn(
                f"worker {name}",
                [
                    sys.executable, "-m", "celery", "-A", "config", "worker",
                    "--pool", "threads", "--concurrency", str(self.concurrency),
                    "--queues", QUEUES, "--hostname", f"{name}@topology",
                ],
                env=self._env(),
                cwd=PROJECT_DIR,
                log_path=self._log(f"worker-{name}"),
            )
        )
        return name

    def gunicorn_start(self, timeout: float = 60) -> str:
        """Not Rig.web_start: that one takes a free port of its own and 3 workers."""
        self.web = procs.spawn(
            "web (gunicorn)",
            [
                # The rest from gunicorn.conf.py (the working directory's), as in the image.
                sys.executable, "-m", "gunicorn",
                "--bind", f"{HOST}:{self.web_port}", "--workers", str(WEB_WORKERS),
                "--access-logfile", "-",
                # A control socket of its own: gunicorn's default (~/.gunicorn/gunicorn.ctl)
                # is shared by every gunicorn this user runs (tests, benchmarks).
                "--control-socket", str(self.stack.workdir / "gunicorn.ctl"),
            ],
            env=self._env(),
            cwd=PROJECT_DIR,
            log_path=self._log("web"),
        )
        url = f"http://{HOST}:{self.web_port}"
        _wait(lambda: _answers(f"{url}/healthz"), timeout, "gunicorn to answer /healthz", self.web)
        _wait(
            lambda: len(self.web_worker_pids()) >= WEB_WORKERS, timeout, "gunicorn's workers",
            self.web,
        )
        return url

    def web_worker_pids(self) -> list[int]:
        """The gunicorn master's children: its workers."""
        if self.web is None or not self.web.running():
            return []
        try:
            return sorted(child.pid for child in psutil.Process(self.web.pid).children())
        except psutil.Error:
            return []

    def worker_names(self) -> dict[int, str]:
        """Worker pid -> its name (w1...). The pid is in every claim and lease it holds
        (core.workers.worker_id: host:pid:random)."""
        return {child.pid: WORKERS[n] for n, child in enumerate(self.workers)}

    def live_pids(self) -> set[int]:
        return {child.pid for child in self.live_workers()}

    def children(self) -> list[procs.Child]:
        found = [self.emulator, self.web, self.beat, *self.workers]
        return [child for child in found if child is not None]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _wait(
    ready: Callable[[], bool], timeout: float, what: str, child: procs.Child | None = None
) -> None:
    """Until `ready()`; fails after `timeout` s, or at once when `child` exits."""
    if not _within(ready, timeout, child):
        raise TimeoutError(f"no {what} within {timeout:g} s")


def _within(ready: Callable[[], bool], timeout: float, child: procs.Child | None = None) -> bool:
    """Whether `ready()` came true within `timeout` s."""
    deadline = time.monotonic() + timeout
    while not ready():
        if child is not None and not child.running():
            raise RuntimeError(f"{child.name} exited:\n{child.log()[-2000:]}")
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def owner_pid(owner: str) -> int | None:
    """The pid in a worker id (host:pid:random); None for "" or another shape."""
    parts = owner.split(":")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


# --- the fleet -----------------------------------------------------------------------------


@dataclass
class Fleet:
    polling: list[fleets.FleetBot]
    webhook: list[fleets.FleetBot]
    users: dict[str, int] = field(default_factory=dict)  # token -> the one user writing to it
    start: fleets.StartReport = field(default_factory=fleets.StartReport)

    @property
    def bots(self) -> list[fleets.FleetBot]:
        return [*self.polling, *self.webhook]


def fleet_create(emulator: EmulatorClient, gemini_url: str) -> Fleet:
    """One persona, one Gemini credential on the Gemini emulator, 100 polling and 100
    webhook bots registered with the Telegram emulator, one task each (AI on)."""
    from django.db import transaction

    from bots.models import Bot, BotTask
    from conversations.models import Persona
    from credentials.models import AICredential

    infos = fleets.register_bots(emulator, 2 * BOTS_PER_MODE, "Topology")
    made: dict[str, list[fleets.FleetBot]] = defaultdict(list)
    with transaction.atomic():
        persona = Persona.objects.create(
            name="topology", instructions="You are a helpful assistant."
        )
        credential = AICredential.objects.create(
            name="topology gemini", provider=AICredential.Provider.GEMINI, api_key=API_KEY,
            base_url=gemini_url, model=MODEL, requests_per_minute=100_000,
        )
        for n, info in enumerate(infos):
            mode = Bot.UpdateMode.POLLING if n < BOTS_PER_MODE else Bot.UpdateMode.WEBHOOK
            name = f"topology {mode} {n % BOTS_PER_MODE + 1}"
            bot = Bot.objects.create(
                name=name, token=info["token"], api_base_url=emulator.base_url,
                persona=persona, credential=credential, update_mode=mode,
            )
            task = BotTask.objects.create(name=name, bot=bot, use_ai=True)
            made[mode].append(fleets.FleetBot(info["token"], info["id"], bot.pk, task.pk))
    return Fleet(polling=made[Bot.UpdateMode.POLLING], webhook=made[Bot.UpdateMode.WEBHOOK])


def fleet_up(fleet: Fleet, emulator: EmulatorClient, users: traffic.UserIds) -> None:
    """Every task started through task_start (the admin's Start), then bounded waits:
    each polling bot polling from a worker, each webhook bot's webhook set."""
    fleet.start = fleets.fleet_start(fleet.bots, threads=8, label="topology")
    if fleet.start.failures:
        failures = fleet.start.failures
        raise RuntimeError(f"{len(failures)} task(s) did not start: {failures[0]}")
    polled = traffic.wait_polled(
        emulator, [bot.telegram_id for bot in fleet.polling],
        since=min(fleet.start.started_at.values()), timeout=60, label="topology",
    )
    if len(polled) < len(fleet.polling):
        raise RuntimeError(f"only {len(polled)} of {len(fleet.polling)} polling bots polled")
    _wait(
        lambda: len(poll_owners(fleet)) == len(fleet.polling), 60,
        "a lease owner on every polling task",
    )
    unset = [bot for bot in fleet.webhook if not emulator.bot_status(bot.token)["webhook_url"]]
    if unset:
        raise RuntimeError(f"{len(unset)} webhook bot(s) have no webhook on the emulator")
    fleet.users = {bot.token: users.take() for bot in fleet.bots}


def poll_owners(fleet: Fleet) -> dict[int, str]:
    """Polling task pk -> the worker id holding its lease (tasks with an owner only)."""
    from bots.models import BotTask

    tasks = BotTask.objects.filter(pk__in=[bot.task_pk for bot in fleet.polling])
    rows = tasks.exclude(poll_owner="")
    return dict(rows.values_list("pk", "poll_owner"))


# --- watching the workers while the traffic runs ---------------------------------------------


class ClaimSampler:
    """Which worker answers each incoming message. The message log does not keep it: the
    claim (`claimed_by`) is released when the reply is queued. It is held for the whole
    AI call, though (GEMINI_LATENCY_S), so sampling the claims every CLAIM_SAMPLE_S sees
    every answer. Also samples the database's connections (a capacity figure)."""

    def __init__(self) -> None:
        self.first_claim: dict[int, str] = {}  # incoming message pk -> first worker id seen
        self.bot_of: dict[int, int] = {}  # message pk -> bot pk
        self.peak_connections = 0
        self._stop = Event()

    def run(self) -> None:
        from django.db import connection, connections

        from conversations.models import Message

        try:
            while not self._stop.wait(CLAIM_SAMPLE_S):
                rows = Message.objects.filter(
                    direction=Message.Direction.IN, reply_state=Message.ReplyState.GENERATING
                ).exclude(claimed_by="").values_list("pk", "bot_id", "claimed_by")
                for pk, bot_pk, owner in rows:
                    self.first_claim.setdefault(pk, owner)
                    self.bot_of[pk] = bot_pk
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    )
                    self.peak_connections = max(self.peak_connections, int(cursor.fetchone()[0]))
        finally:
            connections.close_all()  # this thread's connection: the database is dropped later

    def stop(self) -> None:
        self._stop.set()

    def answers_by_worker(self, bot_pks: Iterable[int], names: dict[int, str]) -> Counter[str]:
        wanted = set(bot_pks)
        return Counter(
            names.get(owner_pid(owner) or 0, owner)
            for pk, owner in self.first_claim.items()
            if self.bot_of[pk] in wanted
        )


@dataclass
class Kill:
    """The Celery worker SIGKILLed, and what it held at that moment."""

    name: str
    pid: int
    at: float  # time.time(), the emulator's clock too
    pollers: dict[int, str] = field(default_factory=dict)  # task pk -> bot token
    claimed_in: int = 0  # incoming messages it was answering
    claimed_out: int = 0  # outgoing parts it was sending


def worker_kill(rig: TopologyRig, fleet: Fleet) -> Kill:
    """SIGKILL the worker holding the most polling bots: its whole process, as a host
    that crashed (no shutdown hook runs, nothing is handed over)."""
    from conversations.models import Message

    names, owners = rig.worker_names(), poll_owners(fleet)
    held = Counter(owner_pid(owner) for owner in owners.values())
    pid = max(rig.live_pids(), key=lambda p: (held[p], -p))
    tokens = {bot.task_pk: bot.token for bot in fleet.polling}
    victim = next(child for child in rig.workers if child.pid == pid)
    owner_id = next((owner for owner in owners.values() if owner_pid(owner) == pid), "")
    claimed = Message.objects.filter(claimed_by=owner_id) if owner_id else Message.objects.none()
    kill = Kill(
        name=names[pid], pid=pid, at=time.time(),
        pollers={task: tokens[task] for task, owner in owners.items() if owner_pid(owner) == pid},
        claimed_in=claimed.filter(direction=Message.Direction.IN).count(),
        claimed_out=claimed.filter(direction=Message.Direction.OUT).count(),
    )
    kill.at = time.time()
    procs.kill(victim)
    return kill


def revival_watch(
    kill: Kill, rig: TopologyRig, emulator: EmulatorClient, stopping: Event
) -> dict[int, float]:
    """Seconds from the kill until each of the dead worker's polling bots polls again:
    its lease held by a live worker (the database), a getUpdates after the kill and a
    long poll in flight (the emulator). Bounded by REVIVAL_WATCH_S."""
    from django.db import connections

    from bots.models import BotTask

    revived: dict[int, float] = {}
    try:
        while (
            len(revived) < len(kill.pollers) and time.time() - kill.at < REVIVAL_WATCH_S
            and not stopping.is_set()
        ):
            pending = [task for task in kill.pollers if task not in revived]
            owners = dict(BotTask.objects.filter(pk__in=pending).values_list("pk", "poll_owner"))
            live = rig.live_pids()
            for task, owner in owners.items():
                token = kill.pollers[task]
                if owner_pid(owner) in live and _polling_since(emulator, token, kill.at):
                    revived[task] = time.time() - kill.at
            stopping.wait(0.5)
    finally:
        connections.close_all()
    return revived


def _polling_since(emulator: EmulatorClient, token: str, since: float) -> bool:
    last = emulator.calls(token=token, method="getUpdates", limit=1)
    return bool(last) and last[0]["time"] > since and bool(emulator.bot_status(token)["polling"])


@dataclass
class WebKill:
    pid: int
    respawned_s: float | None  # until the master had WEB_WORKERS workers again


def web_worker_kill(rig: TopologyRig) -> int:
    """SIGKILL one gunicorn worker (the master stays and forks a new one)."""
    pid = rig.web_worker_pids()[0]
    os.kill(pid, signal.SIGKILL)
    return pid


def web_respawn_wait(rig: TopologyRig, pid: int, killed_at: float, stopping: Event) -> WebKill:
    deadline = killed_at + 30
    while time.monotonic() < deadline and not stopping.is_set():
        pids = rig.web_worker_pids()
        if pid not in pids and len(pids) >= WEB_WORKERS:
            return WebKill(pid, time.monotonic() - killed_at)
        stopping.wait(0.1)
    return WebKill(pid, None)


# --- traffic -----------------------------------------------------------------------------


@dataclass
class Traffic:
    """What was sent and done, in order."""

    sent: list[traffic.Injected] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)  # seconds from the first message
    began: float = 0.0  # time.time() of the first message
    last_sent_at: float = 0.0
    kill: Kill | None = None
    kill_offset_s: float = 0.0  # from round 2's first message to the worker kill
    web: WebKill | None = None
    web_kill_offset_s: float = 0.0  # from round 2's first message to the gunicorn kill
    revived: dict[int, float] = field(default_factory=dict)  # task pk -> kill to polling (s)


class Driver:
    """Three rounds of one private message to every bot, each bot's user writing in the
    same chat every round, ROUND_GAP_S apart; the kills inside round 2."""

    def __init__(
        self, rig: TopologyRig, fleet: Fleet, emulator: EmulatorClient,
        background: ThreadPoolExecutor, stopping: Event,
    ) -> None:
        self.rig, self.fleet, self.emulator = rig, fleet, emulator
        self.background, self.stopping = background, stopping
        self.run = Traffic()
        self.counter = traffic.ReplyCounter(emulator)  # every reply from now on
        self._t0 = 0.0
        self._respawn: Future[WebKill] | None = None  # the watchers started at the kills
        self._revival: Future[dict[int, float]] | None = None

    def drive(self) -> Traffic:
        self._t0, self.run.began = time.monotonic(), time.time()
        self._round_one()
        self._round_two()
        self._round_three()
        self._replies_wait()
        return self.run

    def _round_one(self) -> None:
        self._round_begins(0, "a message to each of the 200 bots")
        self._send(self.fleet.bots, "round 1")
        # Round 1 answered before round 2, so the kill finds the workers busy with round 2
        # only. Not fatal when late: the count at the end says what is missing.
        if not _within(lambda: self.counter.count() >= len(self.run.sent), 60):
            progress("round 1 not fully answered within 60 s; going on", force=True)

    def _round_two(self) -> None:
        """A quarter of the bots of each mode, then one gunicorn worker SIGKILLed while
        the emulator pushes those updates, another quarter, the Celery worker kill
        KILL_AFTER_S into the round, then the other half of the bots."""
        polling, webhook = self.fleet.polling, self.fleet.webhook
        quarter, half = BOTS_PER_MODE // 4, BOTS_PER_MODE // 2
        began, began_at = self._round_begins(1, "messages; gunicorn and Celery workers SIGKILLed")
        self._send(polling[:quarter] + webhook[:quarter], "round 2")
        web_pid, web_killed = web_worker_kill(self.rig), time.monotonic()
        self.run.web_kill_offset_s = web_killed - began
        self._respawn = self.background.submit(
            web_respawn_wait, self.rig, web_pid, web_killed, self.stopping
        )
        self._send(polling[quarter:half] + webhook[quarter:half], "round 2")
        time.sleep(max(0.0, began + KILL_AFTER_S - time.monotonic()))
        kill = self.run.kill = worker_kill(self.rig, self.fleet)
        self.run.kill_offset_s = kill.at - began_at
        self._revival = self.background.submit(
            revival_watch, kill, self.rig, self.emulator, self.stopping
        )
        self._send(polling[half:] + webhook[half:], "round 2")

    def _round_three(self) -> None:
        self._round_begins(2, "a message to each of the 200 bots")
        self._send(self.fleet.bots, "round 3")

    def _round_begins(self, index: int, what: str) -> tuple[float, float]:
        """Wait for the round's time; returns it (monotonic, wall clock)."""
        time.sleep(max(0.0, self._t0 + index * ROUND_GAP_S - time.monotonic()))
        now = time.monotonic()
        self.run.rounds.append(now - self._t0)
        progress(f"round {index + 1}: {what}", force=True)
        return now, time.time()

    def _send(self, bots: list[fleets.FleetBot], label: str) -> None:
        """One message to each bot from its user, several at a time (one HTTP round trip
        after another would stretch a round over seconds)."""
        users = self.fleet.users
        with ThreadPoolExecutor(8, thread_name_prefix="send") as pool:
            futures = [
                pool.submit(
                    traffic.inject_one, self.emulator, bot.token, users[bot.token],
                    f"{label} to bot {bot.bot_pk}.",
                )
                for bot in bots
            ]
            self.run.sent.extend(future.result() for future in futures)
        self.run.last_sent_at = time.time()

    def _replies_wait(self) -> None:
        """Until there are as many replies as messages (at most STRAGGLER_WAIT_S after
        the last message), then DUPLICATE_WAIT_S more for a late duplicate to show."""
        expected, deadline = len(self.run.sent), self.run.last_sent_at + STRAGGLER_WAIT_S
        while self.counter.count() < expected and time.time() < deadline:
            progress(
                lambda: self.counter.rate_line("replies (a dead worker's after 60-70 s)", expected),
                every=5,
            )
            time.sleep(1.0)
        progress(f"waiting {DUPLICATE_WAIT_S:g} s for a late duplicate", force=True)
        time.sleep(DUPLICATE_WAIT_S)
        if self._respawn is not None and self._revival is not None:
            self.run.web, self.run.revived = self._respawn.result(), self._revival.result()


@dataclass
class Answers:
    """The emulator's view: replies per bot and chat against the messages sent there."""

    chats: int = 0
    sent: int = 0
    replies: int = 0
    missing: int = 0
    duplicated: int = 0
    by_mode: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    ai: int = 0  # replies that are the AI's answer to one of the chat's messages
    out_of_order: Counter[str] = field(default_factory=Counter)  # chats per mode whose
    # replies came in another order than their messages
    last_reply_at: float = 0.0
    problems: list[str] = field(default_factory=list)


def answers_count(emulator: EmulatorClient, fleet: Fleet, run: Traffic) -> Answers:
    result = Answers()
    texts: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))  # token -> chat
    for item in run.sent:
        texts[item.token][item.chat_id].append(item.text)
    webhook_tokens = {bot.token for bot in fleet.webhook}
    for token, chats in texts.items():
        replies: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for message in emulator.sent_messages(token):
            if message.get("method", "sendMessage") == "sendMessage":
                replies[message["chat_id"]].append(message)
        mode = "webhook" if token in webhook_tokens else "polling"
        for chat_id, sent in chats.items():
            _chat_count(result, mode, sent, replies.get(chat_id, []))
    return result


def _chat_count(
    result: Answers, mode: str, texts: list[str], replies: list[dict[str, Any]]
) -> None:
    said = [(reply.get("text") or "") for reply in replies]
    result.chats += 1
    result.sent += len(texts)
    result.replies += len(replies)
    missing, extra = max(0, len(texts) - len(replies)), max(0, len(replies) - len(texts))
    result.missing += missing
    result.duplicated += extra
    result.by_mode[mode].update(
        sent=len(texts), replies=len(replies), missing=missing, duplicated=extra
    )
    # The Gemini emulator answers "[gemini-emulator:<model>] You said: <the last user text>".
    answered = [
        n for line in said for n, text in enumerate(texts) if line.endswith(f"You said: {text}")
    ]
    result.ai += len(answered)
    if answered != sorted(answered):
        result.out_of_order[mode] += 1
    if replies:
        result.last_reply_at = max(result.last_reply_at, max(reply["time"] for reply in replies))
    if (missing or extra) and len(result.problems) < 5:
        result.problems.append(f"{mode} chat: {len(texts)} sent, {len(replies)} replies: {said}")


@dataclass
class Verdict:
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def add(self, what: str, held: bool) -> None:
        self.checks.append((what, held))

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(held for _, held in self.checks)


def database_figures(fleet: Fleet) -> dict[str, Any]:
    """The message log's view: reply states, take-overs, interrupted sends."""
    from conversations.models import Message

    bot_pks = [bot.bot_pk for bot in fleet.bots]
    incoming = Message.objects.filter(bot_id__in=bot_pks, direction=Message.Direction.IN)
    outgoing = Message.objects.filter(bot_id__in=bot_pks, direction=Message.Direction.OUT)
    return {
        "reply_states": fleets.reply_states(fleet.bots),
        "taken_over": incoming.filter(attempts__gt=0).count(),
        "interrupted": outgoing.filter(
            send_state=Message.SendState.FAILED, error__icontains="interrupted"
        ).count(),
        "reply_errors": reply_errors(bot_pks),
        "tasks": fleets.task_health(fleet.bots),
    }


def webhook_figures(emulator: EmulatorClient, fleet: Fleet, web_log: str) -> dict[str, Any]:
    """The pushes as the emulator made them: attempts that failed (and why: a gunicorn
    worker died under them, or the push waited too long), seconds from a message to
    gunicorn's 200 for it; and gunicorn's answers (its access log)."""
    errors: Counter[str] = Counter()
    push_s: list[float] = []
    for bot in fleet.webhook:
        written = {u["update_id"]: u["injected_at"] for u in emulator.updates(bot.token)}
        for delivery in emulator.webhook_deliveries(bot.token):
            if delivery["error"] is not None:
                errors[delivery["error"]] += 1
            elif delivery["update_id"] in written:
                push_s.append(delivery["at"] - written[delivery["update_id"]])
    statuses = Counter(re.findall(r'"POST /telegram/webhook/\d+/ [^"]*" (\d{3})', web_log))
    return {
        "failed_attempts": dict(errors),
        "gunicorn_statuses": dict(sorted(statuses.items())),
        "push_s_median": round(statistics.median(push_s), 2) if push_s else None,
        "push_s_max": round(max(push_s), 2) if push_s else None,
    }


# --- the report ---------------------------------------------------------------------------


@dataclass
class Findings:
    """Everything the report says, gathered once the traffic is over."""

    rig: TopologyRig
    fleet: Fleet
    run: Traffic
    answers: Answers
    owners_before: Counter[str]  # worker name -> polling leases it held before the kill
    sampler: ClaimSampler
    db: dict[str, Any]
    webhooks: dict[str, Any]
    gemini: dict[str, Any]

    @property
    def kill(self) -> Kill:
        assert self.run.kill is not None  # the report is only made after the kill
        return self.run.kill


def _spread(counts: Counter[str]) -> str:
    return ", ".join(f"{name} {counts.get(name, 0)}" for name in WORKERS)


def header_lines(database: str, redis_db: int, web_url: str, fleet: Fleet) -> list[str]:
    from django.conf import settings

    return [
        "== Botfleet production topology ==",
        f"  {time.strftime('%Y-%m-%d %H:%M:%S')}, {platform.node()}, {psutil.cpu_count()} "
        f"cores, Python {platform.python_version()}",
        f"  PostgreSQL {HOST}:{POSTGRES_PORT}/{database}; Redis {HOST}:{REDIS_PORT} db {redis_db}; "
        f"gunicorn x {WEB_WORKERS} at {web_url}; Celery workers {', '.join(WORKERS)} "
        f"(threads x {WORKER_CONCURRENCY}); one beat; Telegram and Gemini emulators",
        f"  DEBUG {settings.DEBUG}; {_timings_origin()}: poll timeout "
        f"{settings.TELEGRAM_POLL_TIMEOUT} s, "
        f"lease renew {settings.POLL_LEASE_RENEW_INTERVAL:g} s, grace {settings.POLL_LEASE_GRACE:g} s, "
        f"supervisor {settings.SUPERVISOR_INTERVAL:g} s, "
        f"claims {settings.CLAIM_SECONDS:g} s (renewed every {settings.CLAIM_RENEW_INTERVAL:g} s)",
        f"  {len(fleet.polling)} polling + {len(fleet.webhook)} webhook bots, one Gemini "
        f"credential; all started through task_start in {fleet.start.wall_s:.1f} s",
        "",
    ]


def _timings_origin() -> str:
    from django.conf import settings

    changed = [name for name, value in DEFAULT_TIMINGS.items() if getattr(settings, name) != value]
    return f"NOT the defaults ({', '.join(changed)} changed, by .env?)" if changed else "product defaults"


def traffic_section(f: Findings, verdict: Verdict) -> list[str]:
    run, kill, web, hooks = f.run, f.kill, f.run.web, f.webhooks
    respawned = web is not None and web.respawned_s is not None
    lines = ["== traffic =="]
    lines += [
        f"  round {n} at +{offset:.1f} s: {len(f.fleet.bots)} messages, one per bot, in the "
        "bot's one chat"
        for n, offset in enumerate(run.rounds, start=1)
    ]
    lines += [
        f"  gunicorn worker pid {web.pid if web else '?'} SIGKILLed "
        f"{run.web_kill_offset_s:.1f} s into round 2: "
        + (f"respawned in {web.respawned_s:.1f} s" if web and web.respawned_s is not None
           else "NOT respawned within 30 s"),
        f"  Celery worker {kill.name} (pid {kill.pid}) SIGKILLed {run.kill_offset_s:.1f} s into "
        f"round 2, holding {len(kill.pollers)} polling leases, {kill.claimed_in} incoming "
        f"messages being answered and {kill.claimed_out} outgoing parts",
        f"  webhook pushes: written to gunicorn's 200 median {hooks['push_s_median']} s, "
        f"max {hooks['push_s_max']} s; failed attempts, retried by the emulator: "
        f"{hooks['failed_attempts'] or 'none'}; gunicorn answered {hooks['gunicorn_statuses']}",
        f"  Gemini emulator (latency {GEMINI_LATENCY_S:g} s): {f.gemini['requests']} requests, "
        f"statuses {f.gemini['statuses']} (None: the caller died first)",
        "",
    ]
    verdict.add("the gunicorn worker was respawned", respawned)
    return lines


def exactly_once_section(f: Findings, verdict: Verdict) -> list[str]:
    a, db = f.answers, f.db
    lines = [
        "== exactly once: the Telegram emulator's sent messages, per bot and chat ==",
        f"  {a.sent} messages in {a.chats} chats; {a.replies} replies; missing {a.missing}, "
        f"duplicated {a.duplicated}",
    ]
    lines += [
        f"    {mode}: {n['sent']} sent, {n['replies']} replies, missing {n['missing']}, "
        f"duplicated {n['duplicated']}"
        for mode, n in sorted(a.by_mode.items())
    ]
    lines += [
        f"  AI answers naming their own message: {a.ai} of {a.replies}",
        f"  last reply {a.last_reply_at - f.kill.at:.1f} s after the Celery worker kill "
        f"({a.last_reply_at - f.run.began:.1f} s after the first message)"
        if a.replies else "  no reply at all",
        f"  message log: {db['reply_states']}; taken over by the reaper: {db['taken_over']}; "
        f"sends failed as interrupted: {db['interrupted']}",
    ]
    if a.out_of_order:
        lines.append(
            f"  note: chats answered in another order than written: {dict(a.out_of_order)} (a "
            "message taken over once its claim lapsed is answered after the chat's later ones)"
        )
    if db["reply_errors"]:
        lines.append(f"  errors recorded on replies: {db['reply_errors']}")
    lines += [f"  ! {problem}" for problem in a.problems]
    lines.append("")
    verdict.add(
        "every message answered exactly once",
        a.sent == len(f.run.sent) and a.missing == 0 and a.duplicated == 0,
    )
    return lines


def spread_section(f: Findings, verdict: Verdict) -> list[str]:
    names = f.rig.worker_names()
    pushed = f.sampler.answers_by_worker([bot.bot_pk for bot in f.fleet.webhook], names)
    polled = f.sampler.answers_by_worker([bot.bot_pk for bot in f.fleet.polling], names)
    verdict.add(
        "polling bots spread over all 3 workers",
        all(f.owners_before.get(name, 0) > 0 for name in WORKERS),
    )
    verdict.add(
        "pushed (webhook) messages answered by more than one worker",
        sum(1 for count in pushed.values() if count) > 1,
    )
    return [
        "== spread over the worker processes ==",
        f"  polling tasks by lease (poll_owner) before the kill: {_spread(f.owners_before)}",
        f"  pushed (webhook) messages by the worker that answered them: {_spread(pushed)} "
        f"({sum(pushed.values())} of {f.answers.by_mode['webhook']['sent']} seen)",
        f"  polled messages by the worker that answered them: {_spread(polled)} "
        f"({sum(polled.values())} of {f.answers.by_mode['polling']['sent']} seen)",
        "  (the message log keeps no trace of who answered: a claim is cleared once the reply "
        f"is queued; these are the claims seen every {CLAIM_SAMPLE_S:g} s during the "
        f"{GEMINI_LATENCY_S:g} s AI calls)",
        f"  peak PostgreSQL connections to the database: {f.sampler.peak_connections}",
        "",
    ]


def revival_section(f: Findings, verdict: Verdict) -> list[str]:
    kill, seconds = f.kill, sorted(f.run.revived.values())
    all_back = bool(kill.pollers) and len(seconds) == len(kill.pollers)
    verdict.add(
        f"the killed worker's polling bots polling again within {REVIVAL_TARGET_S:g} s",
        all_back and seconds[-1] <= REVIVAL_TARGET_S,
    )
    lines = [f"== revival of {kill.name}'s {len(kill.pollers)} polling bots =="]
    if seconds:
        lines.append(
            f"  {len(seconds)} of {len(kill.pollers)} polling again, each lease held by a live "
            f"worker; kill to polling: median {statistics.median(seconds):.1f} s, max "
            f"{seconds[-1]:.1f} s (target <= {REVIVAL_TARGET_S:g} s)"
        )
    else:
        lines.append(f"  none polling again within {REVIVAL_WATCH_S:g} s")
    revivals = Counter(
        int(task) for child in f.rig.children() for task in REVIVED.findall(child.log())
    )
    others = {task: n for task, n in revivals.items() if task not in kill.pollers}
    lines.append(
        f"  revivals the supervisor logged: {sum(revivals.values())} of {len(revivals)} tasks"
        + (f"; of bots whose worker was alive (a lease renewal late by more than the grace): "
           f"{sum(others.values())}, tasks {sorted(others)[:10]}" if others else "")
    )
    return [*lines, ""]


def logs_section(f: Findings) -> list[str]:
    logs = log_summary([child.log() for child in f.rig.children()])
    return [
        "== logs ==",
        *logs_line("workers, beat, web, Telegram emulator", logs).splitlines(),
        f"  tasks: {f.db['tasks']}",
        "",
    ]


def report(f: Findings, header: list[str]) -> tuple[list[str], Verdict]:
    verdict = Verdict()
    lines = [
        *header,
        *traffic_section(f, verdict),
        *exactly_once_section(f, verdict),
        *spread_section(f, verdict),
        *revival_section(f, verdict),
        *logs_section(f),
        "== verdict ==",
    ]
    lines += [f"  {'ok  ' if held else 'FAIL'} {what}" for what, held in verdict.checks]
    return lines, verdict


# --- the command -----------------------------------------------------------------------------


@dataclass
class Resources:
    """Everything to undo, filled in as it is made."""

    redis_db: int
    database: str = ""
    stack: Stack | None = None
    rig: TopologyRig | None = None
    gemini: procs.Child | None = None
    clients: list[EmulatorClient | GeminiEmulatorClient] = field(default_factory=list)
    sampler: ClaimSampler | None = None
    stopping: Event = field(default_factory=Event)  # tells the watcher threads to end
    background: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(4, thread_name_prefix="watch")
    )

    def logs(self) -> list[Path]:
        children = self.rig.children() if self.rig else []
        if self.gemini is not None:
            children.append(self.gemini)
        return [child.log_path for child in children]

    def close(self, *, keep_files: bool) -> None:
        """Processes in the reverse order of their start (workers, beat, gunicorn, the
        Telegram emulator, the Gemini emulator), then the database and the Redis db."""
        self.stopping.set()
        if self.sampler is not None:
            self.sampler.stop()
        self.background.shutdown(wait=True, cancel_futures=True)
        if self.rig is not None:
            _step("stop the processes", self.rig.close)
        if self.gemini is not None:
            gemini = self.gemini
            _step("stop the Gemini emulator", lambda: procs.stop(gemini, grace=5))
        for client in self.clients:
            client.close()
        if self.stack is not None and self.stack.django_ready:
            from django.db import connections

            connections.close_all()
        if self.database:
            _step(f"drop database {self.database}", lambda: database_drop(self.database))
        _step(f"flush Redis db {self.redis_db}", lambda: _redis(self.redis_db).flushdb())
        if self.stack is not None:
            self.stack.keep_files = keep_files
            self.stack.close()


def _step(what: str, action: Callable[[], object]) -> None:
    """One clean-up step; a failure is said and the next steps still run."""
    try:
        action()
    except Exception as error:
        print(f"[topology] could not {what}: {type(error).__name__}: {error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.topology", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--redis-db", type=int, default=REDIS_DB,
        help=f"the Redis db number to use; flushed at the start and the end (default {REDIS_DB})",
    )
    parser.add_argument(
        "--keep-files", action="store_true", help="keep the logs even when every check held"
    )
    args = parser.parse_args(argv)

    missing = services_missing(args.redis_db)
    if missing:
        print(f"topology: {missing}", flush=True)
        return 2
    sigterm_as_interrupt()
    began, res, status = time.monotonic(), Resources(redis_db=args.redis_db), 1
    try:
        status = _run(res)
    except (KeyboardInterrupt, Interrupted):
        print("topology: interrupted; stopping everything", file=sys.stderr, flush=True)
        status = 130
    except Exception as error:
        traceback.print_exc()
        print(f"topology: FAIL: {type(error).__name__}: {error}", flush=True)
    finally:
        logs = res.logs()
        res.close(keep_files=args.keep_files or status != 0)
        if status != 0 and logs:
            print("logs:", *[f"  {path}" for path in logs], sep="\n", flush=True)
        print(f"elapsed: {time.monotonic() - began:.0f} s", flush=True)
    return status


def _run(res: Resources) -> int:
    _redis(res.redis_db).flushdb()
    progress("creating the database; migrating", force=True)
    res.database = database_create()
    web_port = free_port()
    environment_prepare(database=res.database, redis_db=res.redis_db, web_port=web_port)
    res.stack = Stack(keep_files=False)
    # Runtime files in the run's own directory: nothing read from or left in the
    # checkout's var/ (a running bin/run's run file, for one).
    os.environ["BOTFLEET_VAR_DIR"] = str(res.stack.workdir / "var")
    res.stack.open()  # the secrets, `manage.py migrate`, then Django in this process

    progress("starting the Gemini and Telegram emulators, gunicorn, beat, 3 workers", force=True)
    res.gemini, gemini_url = gemini_start(res.stack, "topology", GEMINI_LATENCY_S)
    res.rig = rig = TopologyRig(res.stack, web_port=web_port)
    emulator = EmulatorClient(rig.emulator_start(), timeout=60)
    gemini = GeminiEmulatorClient(gemini_url, timeout=60)
    res.clients += [emulator, gemini]
    web_url = rig.gunicorn_start()
    rig.beat_start()
    rig.workers_start()

    progress("creating and starting 200 bots", force=True)
    fleet = fleet_create(emulator, gemini_url)
    fleet_up(fleet, emulator, traffic.UserIds())
    header = header_lines(res.database, res.redis_db, web_url, fleet)
    names = rig.worker_names()
    owners_before = Counter(names.get(owner_pid(o) or 0, o) for o in poll_owners(fleet).values())
    res.sampler = sampler = ClaimSampler()
    res.background.submit(sampler.run)

    run = Driver(rig, fleet, emulator, res.background, res.stopping).drive()
    sampler.stop()
    findings = Findings(
        rig=rig, fleet=fleet, run=run, answers=answers_count(emulator, fleet, run),
        owners_before=owners_before, sampler=sampler, db=database_figures(fleet),
        webhooks=webhook_figures(emulator, fleet, rig.web.log() if rig.web else ""),
        gemini=gemini_figures(gemini),
    )
    lines, verdict = report(findings, header)
    print("\n".join(lines))
    print(f"topology: {'PASS' if verdict.passed else 'FAIL'}", flush=True)
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
