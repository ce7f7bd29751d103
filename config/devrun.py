"""bin/run's process runner: the development stack, started and stopped in order.

    python -m config.devrun preflight   # the ports bin/run needs are free (one line each if not)
    python -m config.devrun run         # Redis, the emulator, then the Procfile's other processes

Start order: Redis (embedded unless REDIS_URL is set), the Telegram emulator (the Procfile's
`telegram` line), then honcho with every other Procfile process (web, worker, beat, demo).
Stop order (Ctrl-C, SIGTERM, or any process ending): honcho's processes first, so the
worker ends its pollers while Telegram and Redis are still there and a normal shutdown
records no error on any task; then the emulator; then Redis.

While it runs, `var/run.json` (the run file) tells commands started elsewhere in this
checkout, e.g. `.venv/bin/python manage.py bot_status` in a second terminal, which Redis
bin/run uses and that DEBUG is on (config/settings.py reads it for what the environment
does not set). It is removed when bin/run stops, and ignored once its process is gone.
"""

import ctypes
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
RUN_FILE_NAME = "run.json"
EMULATOR = "telegram"  # the Procfile process this runner starts itself, before the others
PREFIX = "[botfleet]"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# What a command elsewhere may take from the run file: nothing secret.
RUN_FILE_VARIABLES = ("DEBUG", "REDIS_URL", "WEBHOOK_BASE_URL")


# --- the run file -------------------------------------------------------------------


def run_file(var_dir: Path) -> Path:
    return var_dir / RUN_FILE_NAME


def run_file_env(var_dir: Path) -> dict[str, str]:
    """The environment a running bin/run published in this checkout; empty when none
    runs (no file, an unreadable one, or one whose process is gone)."""
    try:
        data = json.loads(run_file(var_dir).read_text())
        pid = int(data["pid"])
        published = data["env"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(published, dict) or not _runner_alive(pid):
        return {}
    return {name: str(published[name]) for name in RUN_FILE_VARIABLES if name in published}


def _runner_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's: the command line below decides
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (not Linux): the pid is all we can check
    # A reused pid is some other program: its Redis URL would be a stale port.
    return b"config.devrun" in cmdline


def run_file_write(var_dir: Path, env: dict[str, str]) -> Path:
    path = run_file(var_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(f".{os.getpid()}.tmp")
    # 0600 from the start: a REDIS_URL may carry a password.
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"pid": os.getpid(), "env": env}, out)
    scratch.replace(path)
    return path


def run_file_remove(var_dir: Path) -> None:
    """Remove the run file if it is this process's (a second bin/run may have replaced it)."""
    path = run_file(var_dir)
    try:
        if int(json.loads(path.read_text())["pid"]) == os.getpid():
            path.unlink()
    except (OSError, ValueError, KeyError, TypeError):
        pass


def var_dir() -> Path:
    """Where settings keep runtime files (config/settings.py: VAR_DIR)."""
    return Path(os.environ.get("BOTFLEET_VAR_DIR") or ROOT / "var")


# --- ports --------------------------------------------------------------------------


def ports_wanted() -> list[tuple[str, str, str]]:
    """(variable, host, port) of every port bin/run binds, as the Procfile reads them."""
    return [
        ("WEB_PORT", os.environ.get("WEB_HOST") or "127.0.0.1", os.environ.get("WEB_PORT") or "8000"),
        ("EMULATOR_PORT", "127.0.0.1", os.environ.get("EMULATOR_PORT") or "8081"),
    ]


def port_problem(variable: str, host: str, port: str) -> str:
    """Why the server cannot listen on host:port, in one line naming the variable; "" when it can."""
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f"{PREFIX} {variable}={port} is not a port number (1-65535)."
    try:
        family = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the servers bind (runserver, aiohttp): a port in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, int(port)))
    except OSError as error:
        reason = "is already in use" if error.errno == errno.EADDRINUSE else f"cannot be used ({error.strerror})"
        return (
            f"{PREFIX} port {port} on {host} {reason}: stop what listens there, or set "
            f"{variable} to a free port, e.g. {variable}={_suggest(int(port))} bin/run"
        )
    return ""


def _suggest(port: int) -> int:
    for candidate in range(port + 1, min(port + 100, 65535)):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return candidate
    return port + 1


def preflight() -> int:
    problems = [line for line in (port_problem(*wanted) for wanted in ports_wanted()) if line]
    for line in problems:
        print(line, file=sys.stderr, flush=True)
    return 1 if problems else 0


# --- the processes ------------------------------------------------------------------


def procfile(path: Path) -> dict[str, str]:
    """name → command of each Procfile line (honcho's format: `name: command`)."""
    processes = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if match:
            processes[match.group(1)] = match.group(2)
    return processes


def _death_signal() -> Callable[[], None]:
    """What a child runs before exec: SIGTERM when this runner dies, even by SIGKILL, so
    nothing is left behind. Prepared here: the child of a threaded parent must not import
    or load anything between fork and exec."""
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:  # not Linux: the runner's own stop still ends its children
        return lambda: None
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _echo(name: str, stream: IO[bytes], seen: Callable[[str], None]) -> None:
    """Print a child's output the way honcho prints its processes'."""
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        seen(line)
        print(f"{time.strftime('%H:%M:%S')} {name + '.1':<10} | {line}", flush=True)


class Child:
    """A process of this runner: its own session (a Ctrl-C in the terminal reaches
    this runner only, which stops everything in order), ended when the runner dies."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], *, echo: bool) -> None:
        self.name = name
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.echo: threading.Thread | None = None
        self.process = subprocess.Popen(
            args, env=env, cwd=ROOT, start_new_session=True, preexec_fn=_death_signal(),
            stdout=subprocess.PIPE if echo else None, stderr=subprocess.STDOUT if echo else None,
        )
        if echo:
            assert self.process.stdout is not None
            self.echo = threading.Thread(
                target=_echo, args=(name, self.process.stdout, self._seen), daemon=True
            )
            self.echo.start()

    def _seen(self, line: str) -> None:
        self.lines = [*self.lines[-20:], line]
        if "listening on" in line:
            self.ready.set()

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.running():
            self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.echo is not None:
            self.echo.join(timeout=5)  # its last lines ("... stopped") printed before ours


class Runner:
    def __init__(self) -> None:
        self.stopping = False
        self.failed = False  # a process ended on its own: not a clean stop
        self.children: list[Child] = []  # in start order; stopped in reverse

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            print(f"\n{PREFIX} stopping: the web, worker, beat and demo first, then the "
                  "emulator, then Redis", flush=True)
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)
        env = {**os.environ}
        redis_server: Any = None
        var = var_dir()
        try:
            if not env.get("REDIS_URL"):
                from config.embedded_redis import EmbeddedRedis

                redis_server = EmbeddedRedis().start()
                env.update(REDIS_URL=redis_server.url, BOTFLEET_EMBEDDED_REDIS="1")
                print(f"{PREFIX} embedded Redis on {redis_server.url} (set REDIS_URL to use "
                      "your own)", flush=True)
            # Webhook bots work on a laptop too: the emulator pushes to this web process.
            env.setdefault(
                "WEBHOOK_BASE_URL",
                f"http://{env.get('WEB_HOST') or '127.0.0.1'}:{env.get('WEB_PORT') or '8000'}",
            )
            run_file_write(var, {n: env[n] for n in RUN_FILE_VARIABLES if env.get(n)})
            return self._processes(env)
        finally:
            for child in reversed(self.children):
                child.stop()
            if redis_server is not None:
                redis_server.stop()
            run_file_remove(var)

    def _processes(self, env: dict[str, str]) -> int:
        processes = procfile(ROOT / "Procfile")
        emulator = Child(EMULATOR, ["sh", "-c", "exec " + processes.pop(EMULATOR)], env, echo=True)
        self.children.append(emulator)
        if not self._wait_ready(emulator, timeout=60):
            return 0 if self.stopping else 1
        honcho = Child(
            "honcho", ["honcho", "--procfile", "Procfile", "start", *processes], env, echo=False
        )
        self.children.append(honcho)
        asked = False
        while honcho.running():
            if self.stopping and not asked:
                asked = True
                honcho.process.send_signal(signal.SIGTERM)  # honcho stops all of its own
            if not emulator.running() and not self.stopping:
                print(f"{PREFIX} the Telegram emulator stopped (code "
                      f"{emulator.process.returncode}): stopping everything", flush=True)
                self.stopping = self.failed = True
            time.sleep(0.1)
        if self.stopping and not self.failed:
            return 0  # Ctrl-C or SIGTERM, and everything stopped in order
        return honcho.process.returncode or 1

    def _wait_ready(self, emulator: Child, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not emulator.ready.wait(0.1):
            if self.stopping:
                return False
            if not emulator.running() or time.monotonic() > deadline:
                _, host, port = ports_wanted()[1]
                last = emulator.lines[-1] if emulator.lines else "no output"
                print(f"{PREFIX} the Telegram emulator did not start on {host}:{port} "
                      f"(EMULATOR_PORT): {last}", file=sys.stderr, flush=True)
                return False
        return True


def main(argv: list[str]) -> int:
    dotenv = ROOT / ".env"
    if dotenv.exists():
        # As settings and honcho do: WEB_PORT or REDIS_URL set there count here too.
        import environ

        environ.Env.read_env(dotenv)
    if argv == ["preflight"]:
        return preflight()
    if argv == ["run"]:
        return Runner().run()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
