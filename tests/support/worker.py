"""A real Celery worker in a child process, pointed at the test database."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

# One folder per test run (two runs side by side must not read each other's logs).
LOG_DIR = settings.VAR_DIR / "test-logs" / f"run-{os.getpid()}"
QUEUES = "polling,replies,scheduled,default"
# Short polls and leases so stops, revivals and failures show within seconds.
RUNTIME_SETTINGS = {
    "TELEGRAM_POLL_TIMEOUT": 1, "POLL_LEASE_RENEW_INTERVAL": 0.5, "POLL_LEASE_GRACE": 3,
    "CLAIM_SECONDS": 3, "CLAIM_RENEW_INTERVAL": 0.5, "OUTBOX_MAX_INLINE_WAIT": 10,
    "AI_CIRCUIT_COOLDOWN": 2, "AI_RETRY_BUDGET": 8,
}


def test_database_url() -> str:
    """The URL of the database the tests run on, for processes started by tests."""
    cfg = connection.settings_dict
    if cfg["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{cfg['NAME']}"
    auth = cfg["USER"] + (f":{cfg['PASSWORD']}" if cfg["PASSWORD"] else "")
    return f"postgres://{auth}@{cfg['HOST'] or '127.0.0.1'}:{cfg['PORT'] or 5432}/{cfg['NAME']}"


class WorkerProcess:
    def __init__(self, concurrency: int = 16, extra_env: dict[str, str] | None = None) -> None:
        self.name = f"test-{uuid.uuid4().hex[:8]}"
        self.concurrency = concurrency
        self.extra_env = extra_env or {}
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path: Path = LOG_DIR / f"worker-{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> "WorkerProcess":
        env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "LOG_LEVEL": "DEBUG",  # the most a log can say: the end-of-run leak check reads it
            **{name: str(value) for name, value in RUNTIME_SETTINGS.items()},
            **self.extra_env,
        }
        args = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "threads",
            "--concurrency", str(self.concurrency), "--queues", QUEUES,
            "--hostname", f"{self.name}@%h", "--loglevel", "DEBUG",
            "--without-gossip", "--without-mingle",
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()  # a worker that never got ready must not outlive the test
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker exited early; see {self.log_path}:\n{self.log()}")
            if "ready." in self.log():
                return
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready in {timeout}s; see {self.log_path}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the worker gets no chance to finish or re-queue anything."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
