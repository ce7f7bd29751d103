"""The system under test, set up and torn down by the benchmark itself.

`Stack` lives for the whole run: a scratch directory, the database (a temporary SQLite
file, or DATABASE_URL), Redis (embedded, or REDIS_URL) and Django in this process.
`Rig` lives for one scenario: a Telegram emulator process, K Celery workers, one
celery-beat and, for the comparison, the python-telegram-bot baseline process.
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

import redis

from benchmarks import procs

PROJECT_DIR = Path(__file__).resolve().parent.parent
QUEUES = "polling,replies,scheduled,default"
LOAD_POLL_TIMEOUT = 10  # seconds per getUpdates long poll under load
IDLE_POLL_TIMEOUT = 20  # idle fleet: fewer requests per bot
LEASE_GRACE = 15


class Stack:
    def __init__(self, *, keep_files: bool) -> None:
        self.keep_files = keep_files
        self.run_id = uuid.uuid4().hex[:6]
        self.workdir = Path(tempfile.mkdtemp(prefix="botfleet-bench-"))
        self.database_url = ""
        self.database_given = bool(os.environ.get("DATABASE_URL"))
        self.redis_url = ""
        self._redis: object | None = None  # EmbeddedRedis, when we started one
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

    def env(self, **extra: object) -> dict[str, str]:
        """Environment for every process of the system (and for Django in the driver)."""
        base = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "TELEGRAM_POLL_TIMEOUT": str(LOAD_POLL_TIMEOUT),
            "POLL_LEASE_GRACE": str(LEASE_GRACE),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **self._secrets,
        }
        return {**base, **{key: str(value) for key, value in extra.items()}}

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
        poll_timeout: int,
        workers: int,
        concurrency: int,
        loglevel: str = "WARNING",
        profile: bool = False,
    ) -> None:
        self.stack = stack
        self.loglevel = loglevel
        self.profile = profile  # run workers under benchmarks.stack_sampler
        self.scenario = scenario
        self.poll_timeout = poll_timeout
        self.worker_count = workers
        self.concurrency = concurrency
        self.emulator: procs.Child | None = None
        self.emulator_url = ""
        self.workers: list[procs.Child] = []
        self.beat: procs.Child | None = None
        self.baseline: procs.Child | None = None
        self._generation = 0  # worker generations (recovery starts a second one)

    def _log(self, name: str) -> Path:
        return self.stack.workdir / "logs" / f"{self.scenario}-{name}.log"

    def _env(self, **extra: object) -> dict[str, str]:
        return self.stack.env(TELEGRAM_POLL_TIMEOUT=self.poll_timeout, **extra)

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
        names = []
        for n in range(1, self.worker_count + 1):
            name = f"bench{self._generation}-{n}-{self.stack.run_id}@%h"
            self.workers.append(
                procs.spawn(
                    f"worker {n}",
                    [
                        *self._python_prefix(f"worker{self._generation}-{n}"),
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
                    log_path=self._log(f"worker{self._generation}-{n}"),
                )
            )
            names.append(name.split("@")[0])
        self._wait_workers_ready(names, timeout)
        return names

    def _python_prefix(self, name: str) -> list[str]:
        if not self.profile:
            return [sys.executable, "-m"]
        out = self.stack.workdir / "logs" / f"{self.scenario}-{name}-stacks.txt"
        return [sys.executable, "-m", "benchmarks.stack_sampler", str(out), "--"]

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

    # --- the python-telegram-bot baseline --------------------------------------------------

    def baseline_start(
        self, tokens: list[str], poll_timeout: int, timeout: float = 120
    ) -> procs.Child:
        tokens_file = self.stack.workdir / f"baseline-tokens-{self.scenario}.json"
        tokens_file.write_text(json.dumps(tokens))  # a file, not argv: `ps` shows argv
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
            ],
            env=self._env(),
            cwd=PROJECT_DIR,
            log_path=self._log("ptb-baseline"),
        )
        procs.wait_for_log(self.baseline, r"ptb baseline ready", timeout=timeout)
        return self.baseline

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
            "baseline": [self.baseline.pid] if self.baseline and self.baseline.running() else [],
        }
        return groups

    def worker_logs(self) -> list[str]:
        return [w.log() for w in self.workers] + ([self.beat.log()] if self.beat else [])

    def close(self) -> None:
        """Workers before the emulator (so they do not log a storm of refused polls)."""
        procs.stop_all(self.live_workers(), grace=15)
        for child in (self.beat, self.baseline, self.emulator):
            if child is not None:
                procs.stop(child, grace=10)
