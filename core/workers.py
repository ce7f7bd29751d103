"""Who this process is, for claims and leases, and the I/O loop's periodic chores."""

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

_identity: tuple[int, str] | None = None


def worker_id() -> str:
    """A name unique to this process (a fork gets its own): what claims and leases are
    owned by. At most 64 characters, the width of the columns that hold it."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        _identity = (pid, f"{socket.gethostname()[:40]}:{pid}:{secrets.token_hex(4)}")
    return _identity[1]


_chores: set["asyncio.Task[None]"] = set()


def chore_start(seconds: Callable[[], float], chore: Callable[[], Awaitable[object]], name: str) -> "asyncio.Task[None]":
    """On the I/O loop: run `chore` every `seconds()` until the process ends (or
    `chores_stop`)."""
    task = asyncio.get_running_loop().create_task(_every(seconds, chore, name))
    _chores.add(task)
    task.add_done_callback(_chores.discard)
    return task


def chores_running() -> bool:
    return bool(_chores)


async def chores_stop() -> None:
    """On the I/O loop: cancel every chore (tests; the process is quiescing)."""
    for task in list(_chores):
        task.cancel()


async def _every(seconds: Callable[[], float], chore: Callable[[], Awaitable[object]], name: str) -> None:
    """Run `chore` forever, `seconds()` apart. A failing round is logged and the next
    one runs as planned: a database blip must not end a heartbeat."""
    while True:
        await asyncio.sleep(seconds())
        try:
            await chore()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; trying again in %s s", name, seconds())
