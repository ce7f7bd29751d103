"""The load generator of the webhook benchmark: Telegram's side of a webhook, in a
process of its own (its CPU is measured apart), POSTing private-message updates to
webhook URLs with each bot's secret header, over many connections at once.

    python -m benchmarks.webhook_client PLAN.json RESULT.json

Started by `benchmarks.webhook_load`, never by hand. The plan (a file: it holds the
secrets, which `ps` must not show):

    {"targets": [{"url": ..., "secret": ..., "first_update_id": N}, ...],
     "mode": "closed" | "paced", "connections": 40, "duration": 20, "rate": 500,
     "first_user_id": N}

- closed: `connections` senders, each POSTing its next update as soon as the previous
  one was answered, for `duration` s: the most the server accepts (updates/s). By
  Little's law the latency is then connections / rate, whatever the server does, so
  latency is measured in the paced mode.
- paced: one update every 1/rate s on a fixed schedule, at most `connections` in
  flight (a late answer delays the sends behind it, as Telegram's max_connections
  does; sends still due at 1.5 x the duration are not made, and counted); latency counts from the scheduled send time, so the time spent waiting for a
  free connection is in it (no coordinated omission), and separately from the moment
  the request went out (`service_ms`).

Updates are round-robin over the targets, each from a user of its own (a private chat
of its own), `update_id` counting up per bot, shaped like Telegram's (from, chat,
date, text). (The driver warms the server up with a short closed loop of its own
first: Django's URL conf, database and broker connections.)

The result: counts of HTTP statuses and errors, the latencies of the 2xx answers (ms),
the measured wall time, this process's CPU seconds over it, and the next update id of
each target (the next run goes on from there).
"""

import asyncio
import itertools
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

REQUEST_TIMEOUT_S = 30.0
LATE_FACTOR = 1.5  # paced: stop sending once the schedule has slipped this much
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class Updates:
    """Realistic private-message updates, round-robin over the targets."""

    def __init__(self, targets: list[dict[str, Any]], first_user_id: int) -> None:
        self._targets = targets
        self._next_update = [int(t["first_update_id"]) for t in targets]
        self._turn = itertools.cycle(range(len(targets)))
        self._users = itertools.count(first_user_id)
        self._messages = itertools.count(1)

    @property
    def next_update_ids(self) -> list[int]:
        return list(self._next_update)

    def next(self) -> tuple[str, dict[str, str], bytes]:
        index = next(self._turn)
        target = self._targets[index]
        update_id = self._next_update[index]
        self._next_update[index] += 1
        user = next(self._users)
        n = next(self._messages)
        person = {"first_name": "Ada", "last_name": f"User{user}", "username": f"user{user}"}
        update = {
            "update_id": update_id,
            "message": {
                "message_id": n,
                "from": {"id": user, "is_bot": False, **person, "language_code": "en"},
                "chat": {"id": user, **person, "type": "private"},
                "date": int(time.time()),
                "text": f"Hello, this is message {n}: what would you recommend for dinner?",
            },
        }
        headers = {"Content-Type": "application/json", SECRET_HEADER: target["secret"]}
        return target["url"], headers, json.dumps(update).encode()


class Tally:
    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.latencies_ms: list[float] = []
        self.service_ms: list[float] = []

    def record(self, outcome: int | str, latency_ms: float, service_ms: float) -> None:
        if isinstance(outcome, int):
            self.statuses[str(outcome)] += 1
            if 200 <= outcome < 300:
                self.latencies_ms.append(round(latency_ms, 3))
                self.service_ms.append(round(service_ms, 3))
        else:
            self.errors[outcome] += 1


async def post(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes
) -> int | str:
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError as error:
        return f"{type(error).__name__}: {str(error)[:80]}"


async def closed_loop(
    session: aiohttp.ClientSession, updates: Updates, tally: Tally, connections: int, until: float
) -> int:
    sent = 0

    async def sender() -> None:
        nonlocal sent
        while time.monotonic() < until:
            url, headers, body = updates.next()
            began = time.monotonic()
            outcome = await post(session, url, headers, body)
            elapsed = (time.monotonic() - began) * 1000
            tally.record(outcome, elapsed, elapsed)
            sent += 1

    await asyncio.gather(*(sender() for _ in range(connections)))
    return sent


async def paced(
    session: aiohttp.ClientSession,
    updates: Updates,
    tally: Tally,
    connections: int,
    rate: float,
    duration: float,
) -> int:
    slots = asyncio.Semaphore(connections)
    total = max(1, int(rate * duration))
    began = time.monotonic()
    running: set[asyncio.Task[None]] = set()

    async def one(scheduled: float) -> None:
        try:
            url, headers, body = updates.next()
            started = time.monotonic()
            outcome = await post(session, url, headers, body)
            done = time.monotonic()
            tally.record(outcome, (done - scheduled) * 1000, (done - started) * 1000)
        finally:
            slots.release()

    # A server that falls far behind would stretch the run without end: sends still due
    # after this are not made, and counted (`not_sent`).
    give_up = began + duration * LATE_FACTOR + 2
    sent = 0
    for n in range(total):
        scheduled = began + n / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()  # all connections busy: this send waits (and it counts)
        if time.monotonic() > give_up:
            slots.release()
            break
        task = asyncio.create_task(one(scheduled))
        running.add(task)
        task.add_done_callback(running.discard)
        sent += 1
    if running:
        await asyncio.gather(*running)
    return sent


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    connections = int(plan["connections"])
    updates = Updates(plan["targets"], int(plan["first_user_id"]))
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        tally = Tally()
        cpu_before = _cpu_s()
        began = time.monotonic()
        started_at = time.time()
        if plan["mode"] == "closed":
            sent = await closed_loop(
                session, updates, tally, connections, began + float(plan["duration"])
            )
        else:
            sent = await paced(
                session, updates, tally, connections, float(plan["rate"]), float(plan["duration"])
            )
        wall = time.monotonic() - began
        cpu_s = _cpu_s() - cpu_before
    return {
        "mode": plan["mode"],
        "connections": connections,
        "offered_rate": plan.get("rate") if plan["mode"] == "paced" else None,
        "duration_s": plan["duration"],
        "sent": sent,
        "planned": max(1, int(float(plan["rate"]) * float(plan["duration"]))) if plan["mode"] == "paced" else sent,
        "wall_s": round(wall, 3),
        "started_at": started_at,
        "statuses": dict(tally.statuses),
        "errors": dict(tally.errors),
        "latencies_ms": tally.latencies_ms,
        "service_ms": tally.service_ms,
        "cpu_s": round(cpu_s, 3),
        "next_update_ids": updates.next_update_ids,
    }


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def main(argv: list[str]) -> int:
    plan_path, result_path = Path(argv[0]), Path(argv[1])
    plan = json.loads(plan_path.read_text())
    result = asyncio.run(run(plan))
    result_path.write_text(json.dumps(result))
    print(
        f"webhook client done: {result['sent']} sent in {result['wall_s']} s, "
        f"statuses {result['statuses']}, errors {result['errors']}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
