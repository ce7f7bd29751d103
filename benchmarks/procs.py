"""Child processes the benchmark owns: started in a session (process group) of their
own, logged to a file, and always stopped by killing the whole group.

Why a group: `celery worker` may fork helpers, and a SIGKILL to the leader alone
would leave them behind. Why PR_SET_PDEATHSIG: if the driver itself is SIGKILLed (no
`finally` runs), the kernel still kills the children. The death signal is tied to
the *thread* that forked, so children must be spawned from the main thread only.
"""

import ctypes
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    # Runs in the child between fork and exec.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the explicit stop() still cleans up
        pass


@dataclass
class Child:
    name: str
    popen: "subprocess.Popen[bytes]"
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def spawn(name: str, args: list[str], *, env: dict[str, str], cwd: Path, log_path: Path) -> Child:
    """Start `args` in a new session, stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    return Child(name=name, popen=popen, log_path=log_path)


def wait_for_log(child: Child, pattern: str, timeout: float) -> re.Match[str]:
    """Wait until the child's log matches `pattern`; fail early if it exits."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = regex.search(child.log())
        if match:
            return match
        if not child.running():
            raise RuntimeError(
                f"{child.name} exited early (code {child.popen.returncode}):\n{child.log()[-2000:]}"
            )
        time.sleep(0.05)
    raise TimeoutError(f"{child.name}: no {pattern!r} in its log within {timeout:g}s")


def _signal_group(child: Child, sig: int) -> None:
    try:
        os.killpg(child.pid, sig)  # the child leads its own session: pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


def kill(child: Child) -> None:
    """SIGKILL the whole group: no chance to finish, hand over or re-queue anything."""
    _signal_group(child, signal.SIGKILL)
    try:
        child.popen.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def stop(child: Child, grace: float = 10.0) -> None:
    """SIGTERM the group, wait up to `grace` seconds, then SIGKILL whatever is left."""
    if child.running():
        _signal_group(child, signal.SIGTERM)
        try:
            child.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # Helpers the leader forked may outlive it (same group): kill those too.
    kill(child)


def stop_all(children: list[Child], grace: float = 10.0) -> None:
    """Stop several children in parallel (SIGTERM all, one shared grace, then SIGKILL)."""
    for child in children:
        if child.running():
            _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for child in children:
        kill(child)
