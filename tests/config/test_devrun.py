"""`bin/run` as a developer uses it: a port in use stops it in one line naming the
variable to set; a command from a second terminal uses its Redis; Ctrl-C stops the
worker before the emulator, so a normal shutdown records no error.

Each test runs the real bin/run in its own session, with its runtime files (SQLite, the
development key, the run file, the admin password) in a temporary BOTFLEET_VAR_DIR and on
free ports, and kills whatever is left of it at the end."""

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

ROOT = settings.BASE_DIR
# A developer's shell has none of what bin/test or a test exports.
NOT_IN_A_SHELL = (
    "DEBUG", "REDIS_URL", "BOTFLEET_EMBEDDED_REDIS", "DATABASE_URL", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS",
    "LOG_LEVEL", "SANDBOX_EMULATOR_URL", "GEMINI_API_KEY", "WEB_HOST", "WEB_PORT", "EMULATOR_PORT",
    "BOTFLEET_VAR_DIR", "DJANGO_SETTINGS_MODULE",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


class BinRun:
    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.var_dir = tmp_path / "var"
        self.var_dir.mkdir()
        self.log_path = tmp_path / "bin-run.log"
        shell = {k: v for k, v in os.environ.items() if k not in NOT_IN_A_SHELL}
        # A second terminal's (the database named too: this test's, even on CI's PostgreSQL run).
        self.shell_env = {
            **shell, "BOTFLEET_VAR_DIR": str(self.var_dir),
            "DATABASE_URL": f"sqlite:///{self.var_dir / 'db.sqlite3'}",
        }
        self.env = {
            **self.shell_env, "WEB_PORT": str(free_port()), "EMULATOR_PORT": str(free_port()),
            "WORKER_CONCURRENCY": "4", **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "BinRun":
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(ROOT / "bin" / "run")], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, as a terminal's foreground job
            )
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(text, self.output())
            if match:
                return match.group(0)
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"bin/run exited ({self.process.returncode}):\n{self.output()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not seen within {timeout}s:\n{self.output()[-3000:]}")

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def ctrl_c(self) -> None:
        """What the terminal does on Ctrl-C: SIGINT to the foreground process group."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # its children die with it (PDEATHSIG)
            self.process.wait(timeout=30)

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`.venv/bin/python manage.py ...` typed in a second terminal."""
        return subprocess.run(
            [sys.executable, "manage.py", *args], env=self.shell_env, cwd=ROOT,
            capture_output=True, text=True, timeout=60,
        )

    def tasks(self) -> list[tuple[int, str, str, str, int]]:
        with sqlite3.connect(self.var_dir / "db.sqlite3") as db:
            return db.execute(
                "SELECT id, status, poll_owner, last_error, error_count FROM bots_bottask ORDER BY id"
            ).fetchall()

    def polling(self, timeout: float) -> bool:
        """Whether a worker holds the demo task's lease (its long poll in flight) within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(status == "running" and owner for _, status, owner, _, _ in self.tasks()):
                time.sleep(1)  # past the lease: the poller's getUpdates is waiting
                return True
            time.sleep(0.2)
        return False


@pytest.fixture
def bin_run(tmp_path: Path) -> Iterator[BinRun]:
    run = BinRun(tmp_path)
    try:
        yield run
    finally:
        run.kill()


@pytest.mark.parametrize("variable", ["WEB_PORT", "EMULATOR_PORT"])
def test_a_port_in_use_stops_bin_run_in_one_line_naming_its_variable(variable: str, tmp_path: Path, busy_port: int) -> None:
    run = BinRun(tmp_path, **{variable: str(busy_port)}).start()
    try:
        code = run.wait(timeout=90)
    finally:
        run.kill()

    assert code == 1
    [line] = run.output().splitlines()
    assert line.startswith(f"[botfleet] port {busy_port} on 127.0.0.1 is already in use")
    assert f"set {variable} to a free port" in line
    assert list(run.var_dir.iterdir()) == []  # stopped before doing anything


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_bin_run_serves_a_second_terminal_and_stops_on_ctrl_c_with_no_error(bin_run: BinRun) -> None:
    bin_run.start()
    redis_url = bin_run.wait_for(r"redis://127\.0\.0\.1:\d+/0", timeout=150)
    bin_run.wait_for("Botfleet is up", timeout=150)
    assert bin_run.polling(timeout=60), bin_run.tasks()

    # A second terminal, none of bin/run's variables set: DEBUG on, and bin/run's Redis
    # (the worker takes the Start it enqueues and polls again).
    seen = bin_run.manage("shell", "-c", "from django.conf import settings; print(settings.DEBUG, settings.REDIS_URL)")
    stopped = bin_run.manage("stop_bot_background_task", "1")
    started = bin_run.manage("start_bot_background_task", "1")
    polling_again = started.returncode == 0 and bin_run.polling(timeout=30)

    bin_run.ctrl_c()
    code = bin_run.wait(timeout=90)

    assert code == 0
    shutdown = bin_run.output().split("[botfleet] stopping", 1)[1]
    assert re.search(r"\b(ERROR|CRITICAL|Traceback)\b|unreachable", shutdown) is None, shutdown
    assert shutdown.index("worker.1 stopped") < shutdown.index("Telegram emulator stopped")
    assert [(status, error, errors) for _, status, _, error, errors in bin_run.tasks()] == [("running", "", 0)]
    assert not (bin_run.var_dir / "run.json").exists()
    for port in (bin_run.env["WEB_PORT"], bin_run.env["EMULATOR_PORT"], redis_url.split(":")[-1].split("/")[0]):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", int(port))) != 0  # nothing left listening
    assert seen.stdout.split()[-2:] == ["True", redis_url], seen.stderr
    assert stopped.returncode == 0 and "Started: #1" in started.stdout, stopped.stderr + started.stderr
    assert polling_again
