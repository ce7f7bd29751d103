"""The system under test, set up and torn down by the benchmark itself.

`Stack` lives for the whole run: a scratch directory, the database (a temporary SQLite
file, or DATABASE_URL), Redis (embedded, or REDIS_URL) and Django in this process.
`Rig` lives for one scenario: a Telegram emulator process, K Celery workers, one
celery-beat, optionally the web process (gunicorn, as in production) and, for the
comparison, the python-telegram-bot peer process.

Poll timeout and lease grace: the product's own (`TELEGRAM_POLL_TIMEOUT`,
`POLL_LEASE_GRACE` in config/settings.py, or whatever the environment sets), unless
`--poll-timeout` is given; the reports print the values in force.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from benchmarks import procs, profiling
from benchmarks.report import profile_lines

PROJECT_DIR = Path(__file__).resolve().parent.parent
QUEUES = "polling,replies,scheduled,default"
WEB_WORKERS = 3  # gunicorn workers, as in the Dockerfile and docker-compose.yml


class Stack:
    def __init__(self, *, keep_files: bool, poll_timeout: int | None = None) -> None:
        self.keep_files = keep_files
        # None: the product's default (or the environment's TELEGRAM_POLL_TIMEOUT).
        self.poll_timeout_given = poll_timeout
        self.poll_timeout_from_env = "TELEGRAM_POLL_TIMEOUT" in os.environ
        self.run_id = uuid.uuid4().hex[:6]
        self.workdir = Path(tempfile.mkdtemp(prefix="botfleet-bench-"))
        self.database_url = ""
        self.database_given = bool(os.environ.get("DATABASE_URL"))
        self.redis_url = ""
        self._redis: object | None = None  # EmbeddedRedis, when we started one
        self._redis_pid: int | None = None
        self.django_ready = False
        self._secrets: dict[str, str] = {}

    # --- set-up ---------------------------------------------------------------

    def open(self) -> None:
        self.database_url = (
            os.environ.get("DATABASE_URL") or f"sqlite:///{self.workdir / 'db.sqlite3'}"
        )
        self.redis_url = os.environ.get("REDIS_URL") or self._embedded_redis_start()
        self._secrets = _production_secrets()
        self._migrate()
        self._django_setup()

    def _embedded_redis_start(self) -> str:
        from config.embedded_redis import EmbeddedRedis

        # Started from the main thread on purpose: its PDEATHSIG follows that thread.
        server = EmbeddedRedis().start()
        self._redis = server
        return server.url

    def _migrate(self) -> None:
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input"],
            cwd=PROJECT_DIR,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"migrate failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")

    def _django_setup(self) -> None:
        # The driver uses the same settings as the workers, except a quieter log.
        os.environ.update(self.env(LOG_LEVEL="ERROR"))
        import django

        django.setup()
        self.django_ready = True

    def env(self, **extra: object) -> dict[str, str]:
        """Environment for every process of the system (and for Django in the driver)."""
        base = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **self._secrets,
        }
        if self.poll_timeout_given is not None:
            base["TELEGRAM_POLL_TIMEOUT"] = str(self.poll_timeout_given)
        return {**base, **{key: str(value) for key, value in extra.items()}}

    def polling(self) -> dict[str, object]:
        """The poll timeout and lease grace every process of the run uses (the driver's
        Django settings: same environment as the workers), and where the timeout came from."""
        from django.conf import settings

        if self.poll_timeout_given is not None:
            source = "--poll-timeout"
        elif self.poll_timeout_from_env:
            source = "TELEGRAM_POLL_TIMEOUT in the environment"
        elif "TELEGRAM_POLL_TIMEOUT" in _dotenv(PROJECT_DIR / ".env"):
            source = "TELEGRAM_POLL_TIMEOUT in .env"
        else:
            source = "product default"
        return {
            "poll_timeout_s": settings.TELEGRAM_POLL_TIMEOUT,
            "poll_timeout_source": source,
            "lease_grace_s": settings.POLL_LEASE_GRACE,
        }

    def redis_pid(self) -> int | None:
        """Our embedded Redis server's pid (part of the system's footprint); None for a
        Redis given in REDIS_URL (not ours to measure: it may serve others too)."""
        if self._redis is None:
            return None
        if self._redis_pid is None:
            try:
                info = redis.Redis.from_url(self.redis_url, socket_timeout=5).info("server")
            except redis.RedisError:
                return None
            self._redis_pid = int(info["process_id"])
        return self._redis_pid

    @property
    def description(self) -> str:
        database = "DATABASE_URL" if self.database_given else "temporary SQLite file"
        return (
            f"database: {database}; Redis: {'embedded' if self._redis is not None else 'REDIS_URL'}"
        )

    # --- between scenarios -----------------------------------------------------------

    def redis_reset(self) -> bool:
        """Empty our own embedded Redis between scenarios (queued cycles, rate windows).
        A Redis given in REDIS_URL is never flushed: it may hold someone else's data."""
        if self._redis is None:
            return False
        try:
            redis.Redis.from_url(self.redis_url, socket_timeout=5).flushdb()
        except redis.RedisError:
            return False  # reported by whatever uses it next; never mask the error in flight
        return True

    # --- tear-down ---------------------------------------------------------------------

    def close(self) -> None:
        if self._redis is not None:
            self._redis.stop()  # type: ignore[attr-defined]
        if self.keep_files:
            print(f"[bench] logs and database kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _dotenv(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _production_secrets() -> dict[str, str]:
    """DEBUG off, as in production: with DEBUG on, Django keeps every SQL query of every
    connection in memory, which would inflate the workers' RSS and CPU. DEBUG off needs
    both keys; fresh ones are fine because the database is the benchmark's own."""
    if os.environ.get("DEBUG"):
        return {}  # the caller chose
    from cryptography.fernet import Fernet

    chosen = {
        "DEBUG": "false",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": os.environ.get("FIELD_ENCRYPTION_KEYS")
        or Fernet.generate_key().decode(),
    }
    return chosen


class Rig:
    """One scenario's processes. Everything started here is stopped by close()."""

    def __init__(
        self,
        stack: Stack,
        scenario: str,
        *,
        workers: int,
        concurrency: int,
        loglevel: str = "WARNING",
        profile: bool = False,
    ) -> None:
        self.stack = stack
        self.loglevel = loglevel
        self.profile = profile  # py-spy on every worker (benchmarks.profiling)
        self.scenario = scenario
        self.worker_count = workers
        self.concurrency = concurrency
        self.emulator: procs.Child | None = None
        self.emulator_url = ""
        self.workers: list[procs.Child] = []
        self.beat: procs.Child | None = None
        self.web: procs.Child | None = None
        self.baseline: procs.Child | None = None
        self._generation = 0  # worker generations (recovery starts a second one)
        self._added = 0  # single workers added later (worker_add)
        self._spies: list[tuple[str, Any]] = []  # --profile-workers: (tag, profiling.spy_start)

    def _log(self, name: str) -> Path:
        return self.stack.workdir / "logs" / f"{self.scenario}-{name}.log"

    def _env(self, **extra: object) -> dict[str, str]:
        return self.stack.env(**extra)

    # --- the emulator ----------------------------------------------------------------

    def emulator_start(self) -> str:
        self.emulator = procs.spawn(
            "telegram emulator",
            [sys.executable, "-m", "emulators.telegram", "--host", "127.0.0.1", "--port", "0"],
            env=self._env(),
            cwd=PROJECT_DIR,
            log_path=self._log("emulator"),
        )
        match = procs.wait_for_log(self.emulator, r"listening on (http://\S+)", timeout=30)
        self.emulator_url = match.group(1)
        return self.emulator_url

    # --- workers and beat ----------------------------------------------------------------

    def workers_start(self, timeout: float = 90) -> list[str]:
        """Start K workers and wait until each answers a broadcast ping (so it consumes)."""
        self._generation += 1
        names = [
            self._worker_spawn(f"{self._generation}-{n}", f"worker {n}")
            for n in range(1, self.worker_count + 1)
        ]
        self._wait_workers_ready(names, timeout)
        self._spies_start(self.workers[-len(names):])
        return names

    def worker_add(self, timeout: float = 90) -> procs.Child:
        """One more worker (a replacement for a killed one), ready when this returns."""
        self._added += 1
        name = self._worker_spawn(f"added{self._added}", f"added worker {self._added}")
        self._wait_workers_ready([name], timeout)
        self._spies_start(self.workers[-1:])
        return self.workers[-1]

    def _worker_spawn(self, tag: str, label: str) -> str:
        """The same command line as the Procfile's worker, logged to logs/<scenario>-worker<tag>.log."""
        name = f"bench{tag}-{self.stack.run_id}@%h"
        self.workers.append(
            procs.spawn(
                label,
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--pool",
                    "threads",
                    "--concurrency",
                    str(self.concurrency),
                    "--queues",
                    QUEUES,
                    "--hostname",
                    name,
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel",
                    self.loglevel,
                ],
                env=self._env(LOG_LEVEL=self.loglevel),
                cwd=PROJECT_DIR,
                log_path=self._log(f"worker{tag}"),
            )
        )
        return name.split("@")[0]

    def _spies_start(self, workers: list[procs.Child]) -> None:
        """--profile-workers: py-spy on each new worker from when it is ready until it
        exits: every thread, waiting ones too (where the wall-clock time goes), or with
        BENCH_PROFILE=cpu the running ones only (where the CPU goes)."""
        for worker in workers if self.profile else []:
            idle = os.environ.get("BENCH_PROFILE") != "cpu"
            spy = profiling.spy_start(self, worker.log_path.stem, worker.pid, idle=idle)
            self._spies.append((worker.log_path.stem, spy))

    def _spies_finish(self) -> None:
        """Each worker's samples summed up into logs/<scenario>-worker<tag>-stacks.txt."""
        for tag, spy in self._spies:
            summary = spy if isinstance(spy, dict) else profiling.spy_finish(*spy, profiling.WORKER_ROOTS)
            clock = "CPU" if os.environ.get("BENCH_PROFILE") == "cpu" else "wall clock"
            heading = f"py-spy on {tag}, {clock}, threads in {' or '.join(profiling.WORKER_ROOTS)}"
            lines = profile_lines(summary, heading, indent="", top=20)
            (self.stack.workdir / "logs" / f"{tag}-stacks.txt").write_text("\n".join(lines) + "\n")
        self._spies = []

    def _wait_workers_ready(self, names: list[str], timeout: float) -> None:
        from config.celery import app

        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while time.monotonic() < deadline:
            for worker in self.live_workers():
                if not worker.running():
                    raise RuntimeError(f"{worker.name} exited at start:\n{worker.log()[-2000:]}")
            for reply in app.control.ping(timeout=1.0) or []:
                seen.update(host.split("@")[0] for host in reply)
            if all(name in seen for name in names):
                return
        raise TimeoutError(f"workers not ready within {timeout:g}s (answered: {sorted(seen)})")

    def live_workers(self) -> list[procs.Child]:
        return [w for w in self.workers if w.running()]

    def workers_kill(self) -> None:
        for worker in self.live_workers():
            procs.kill(worker)

    def workers_stop(self) -> None:
        procs.stop_all(self.live_workers(), grace=15)

    def beat_start(self) -> None:
        """A real celery-beat: it fires `bots.tasks.supervise` every SUPERVISOR_INTERVAL."""
        self.beat = procs.spawn(
            "celery beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
                "--loglevel",
                "WARNING",
                "--pidfile",
                str(self.stack.workdir / f"beat-{self.scenario}.pid"),
            ],
            env=self._env(),
            cwd=PROJECT_DIR,
            log_path=self._log("beat"),
        )

    def beat_stop(self) -> None:
        if self.beat is not None:
            procs.stop(self.beat, grace=10)

    # --- the web process ---------------------------------------------------------------------

    def web_start(
        self,
        timeout: float = 60,
        *,
        workers: int = WEB_WORKERS,
        bind: str = "127.0.0.1:0",
        extra_args: tuple[str, ...] = (),
        log_name: str = "web",
    ) -> str:
        """The admin and dashboard as production serves them (the Dockerfile's command:
        gunicorn with 3 workers), on a free loopback port; part of the system's idle
        footprint. Returns its URL once every gunicorn worker has booted. (The webhook
        benchmark gives its own worker count, address and worker class.)"""
        log_path = self._log(log_name)
        booted_before = log_path.read_text(errors="replace").count("Booting worker") if log_path.exists() else 0
        self.web = procs.spawn(
            "web (gunicorn)",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                bind,
                "--workers",
                str(workers),
                *extra_args,
            ],
            env=self._env(),
            cwd=PROJECT_DIR,
            log_path=log_path,
        )
        url = procs.wait_for_log(self.web, r"Listening at: (http://\S+)", timeout=timeout).group(1)
        deadline = time.monotonic() + timeout
        while self.web.log().count("Booting worker") - booted_before < workers:
            if time.monotonic() > deadline or not self.web.running():
                raise RuntimeError(f"web did not boot {workers} workers:\n{self.web.log()[-2000:]}")
            time.sleep(0.1)
        return url

    def web_stop(self) -> None:
        if self.web is not None:
            procs.stop(self.web, grace=10)

    # --- the python-telegram-bot baseline --------------------------------------------------

    def baseline_start(
        self,
        tokens: list[str],
        poll_timeout: int,
        timeout: float = 120,
        *,
        gemini_url: str = "",
        gemini_key: str = "",
        model: str = "",
    ) -> dict[str, object]:
        """Start the PTB peer (AI mode when `gemini_url` is given); returns what it
        says it was given (its ready line)."""
        tokens_file = self.stack.workdir / f"baseline-tokens-{self.scenario}.json"
        tokens_file.write_text(json.dumps(tokens))  # a file, not argv: `ps` shows argv
        ai = ["--gemini-url", gemini_url, "--model", model] if gemini_url else []
        self.baseline = procs.spawn(
            "ptb baseline",
            [
                sys.executable,
                "-m",
                "benchmarks.ptb_baseline",
                "--url",
                self.emulator_url,
                "--tokens-file",
                str(tokens_file),
                "--poll-timeout",
                str(poll_timeout),
                *ai,
            ],
            env=self._env(GEMINI_API_KEY=gemini_key),  # the key in the environment, not argv
            cwd=PROJECT_DIR,
            log_path=self._log("ptb-baseline"),
        )
        match = procs.wait_for_log(self.baseline, r"ptb baseline ready: \d+ bots (\{.*\})", timeout=timeout)
        return json.loads(match.group(1))

    def baseline_stop(self) -> str:
        """Stop the baseline; returns its log (its last line is a JSON summary)."""
        if self.baseline is None:
            return ""
        procs.stop(self.baseline, grace=20)
        return self.baseline.log()

    # --- for the resource sampler ------------------------------------------------------------

    def pids(self) -> dict[str, list[int]]:
        groups = {
            "workers": [w.pid for w in self.live_workers()],
            "emulator": [self.emulator.pid] if self.emulator and self.emulator.running() else [],
            "beat": [self.beat.pid] if self.beat and self.beat.running() else [],
            "web": [self.web.pid] if self.web and self.web.running() else [],
            "baseline": [self.baseline.pid] if self.baseline and self.baseline.running() else [],
        }
        return groups

    def system_pids(self) -> dict[str, list[int]]:
        """`pids()` plus "redis" (ours, when embedded) and "system": everything Botfleet
        itself runs (workers, beat, web, Redis), summed as one group."""
        groups = self.pids()
        redis_pid = self.stack.redis_pid()
        groups["redis"] = [redis_pid] if redis_pid else []
        groups["system"] = [
            pid for name in ("workers", "beat", "web", "redis") for pid in groups[name]
        ]
        return groups

    def worker_logs(self) -> list[str]:
        return [w.log() for w in self.workers] + ([self.beat.log()] if self.beat else [])

    def close(self) -> None:
        """Workers before the emulator (so they do not log a storm of refused polls)."""
        procs.stop_all(self.live_workers(), grace=15)
        self._spies_finish()
        for child in (self.beat, self.web, self.baseline, self.emulator):
            if child is not None:
                procs.stop(child, grace=10)
