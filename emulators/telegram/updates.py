"""Each bot's updates: the queue, getUpdates offsets and long polls, webhook delivery.

An update waits in its bot's queue until confirmed: by a getUpdates ``offset`` past
it, or by a webhook answering 2xx. A long poll waits on a future that the next
update resolves at once; a newer getUpdates ends the waiting one with 409, as on
Telegram. While a webhook is set, tasks on the emulator's loop POST pending updates
to it, oldest first, at most ``max_connections`` at once, retrying a failed one
(doubling waits) while it keeps its slot.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .._common.ops import control_op
from .errors import ApiError

JSON = dict[str, Any]

log = logging.getLogger("emulators.telegram")

# Update types a bot gets when it never gave allowed_updates (the Bot API's default).
DEFAULT_EXCLUDED = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
SECRET_TOKEN_HEADER = "X-Telegram-Bot-Api-Secret-Token"
CONFLICT_POLL = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
WEBHOOK_ACTIVE = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"


@dataclass
class Queue:
    """One bot's updates."""

    next_update_id: int
    pending: deque[JSON] = field(default_factory=deque)  # update_id order: confirming is popleft
    poller: asyncio.Future[str] | None = (
        None  # the waiting long poll: "wake" | "timeout" | "conflict"
    )
    allowed_updates: list[str] | None = None
    # Every update pushed: {update_id, type, injected_at, delivered_at, filtered, update}.
    log: list[JSON] = field(default_factory=list)
    log_by_id: dict[int, JSON] = field(default_factory=dict)
    webhook: JSON | None = None  # {url, max_connections, secret_token, ip_address}
    # Deliveries running, by id() of the pending update: a redelivered copy may share its id.
    in_flight: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    deliveries: list[JSON] = field(default_factory=list)  # {update_id, url, status, error, at}
    last_error: tuple[int, str] | None = None  # (unix time, Telegram's words)

    def polling(self) -> bool:
        return self.poller is not None and not self.poller.done()

    def wake(self, outcome: str = "wake") -> None:
        poller = self.poller
        if poller is not None and not poller.done():  # polling()
            poller.set_result(outcome)


def _confirmed(update_id: Any, offset: int) -> bool:
    """Below the offset. A hostile update id that is not a number (a test injects one)
    counts as below any offset that confirms something."""
    if isinstance(update_id, int) and not isinstance(update_id, bool):
        return update_id < offset
    return offset > 0


class Updates:
    def __init__(
        self, rng: random.Random, bot_id: Callable[[str], int], *, retry_base: float = 0.5
    ) -> None:
        self.rng = rng
        self._bot_id = bot_id  # a token's bot; KeyError for an unknown one
        self.queues: dict[int, Queue] = {}
        # Webhook timing, seconds: the first retry waits retry_base, each next one twice as
        # long up to retry_cap; connecting and each read of the answer time out after timeout.
        self.retry_base, self.retry_cap, self.timeout = retry_base, 10.0, 10.0
        self.closing = False  # set on shutdown: getUpdates answers at once
        self._session: aiohttp.ClientSession | None = None

    def open(self, bot_id: int) -> None:
        # Telegram starts update ids at an arbitrary number, never at 1.
        self.queues[bot_id] = Queue(next_update_id=self.rng.randint(100_000_000, 900_000_000))

    def queue(self, token: str) -> Queue:
        return self.queues[self._bot_id(token)]

    def push(self, bot_id: int, kind: str, payload: JSON) -> JSON:
        """Queue an update with the next update_id (unless allowed_updates filters it out)."""
        queue = self.queues[bot_id]
        update_id = queue.next_update_id
        queue.next_update_id += 1
        # A copy of the top level: a later edit of the stored message must not change it.
        update = {"update_id": update_id, kind: dict(payload)}
        allowed = queue.allowed_updates
        delivered = kind in allowed if allowed else kind not in DEFAULT_EXCLUDED
        record = {
            "update_id": update_id,
            "type": kind,
            "injected_at": time.time(),
            "delivered_at": None,
            "filtered": not delivered,
            "update": update,
        }
        queue.log.append(record)
        queue.log_by_id[update_id] = record
        if delivered:
            queue.pending.append(update)
            queue.wake()
            self._pump(queue)
        return update

    # ---- control operations

    @control_op
    def updates(self, token: str) -> list[JSON]:
        """Every update pushed to the bot: ``{update_id, type, injected_at, delivered_at,
        filtered, update}`` (filtered: dropped by its allowed_updates)."""
        return list(self.queue(token).log)

    @control_op
    def webhook_deliveries(self, token: str) -> list[JSON]:
        """Webhook delivery attempts, oldest first: ``{update_id, url, status, error, at}``;
        status None when no answer came, error None for a 2xx answer."""
        return list(self.queue(token).deliveries)

    @control_op
    def inject_update(self, token: str, update: JSON) -> JSON:
        """Queue any update body (e.g. ``{"message": {...}}``); update_id is assigned."""
        kinds = [k for k in update if k != "update_id"]
        if len(kinds) != 1:
            raise ValueError("update must contain exactly one update type key")
        return self.push(self._bot_id(token), kinds[0], update[kinds[0]])

    @control_op
    def redeliver_update(self, token: str, update: JSON) -> JSON:
        """Queue a delivered update again with its own update_id, first: what Telegram does
        when the offset past it was never confirmed (a poller crashed first)."""
        queue = self.queue(token)
        queue.pending.appendleft(dict(update))
        queue.wake()
        self._pump(queue)
        return update

    @control_op
    def jump_update_id(self, token: str, by: int | None = None, to: int | None = None) -> int:
        """Make the next update_id jump (Telegram picks a new one after a week idle)."""
        queue = self.queue(token)
        if to is not None:
            queue.next_update_id = to
        else:
            queue.next_update_id += by if by is not None else self.rng.randint(100_000, 50_000_000)
        return queue.next_update_id

    # ---- getUpdates

    async def get_updates(
        self, bot_id: int, offset: int, limit: int, timeout: float, allowed: Any
    ) -> list[JSON]:
        """Confirm below ``offset`` (negative: keep the last -offset), then answer what is
        pending, or wait up to ``timeout`` seconds for it."""
        queue = self.queues[bot_id]
        if queue.webhook:
            raise ApiError(409, WEBHOOK_ACTIVE)
        if isinstance(allowed, list):  # remembered; [] means the default set
            queue.allowed_updates = [str(a) for a in allowed] or None
        queue.wake("conflict")  # a newer request ends the waiting one
        queue.poller = None
        if offset < 0:
            while len(queue.pending) > -offset:
                queue.pending.popleft()
        while queue.pending and _confirmed(queue.pending[0]["update_id"], offset):
            queue.pending.popleft()
        if not queue.pending and timeout > 0 and not self.closing:
            loop = asyncio.get_running_loop()
            queue.poller = poller = loop.create_future()

            def expire() -> None:
                if not poller.done():
                    poller.set_result("timeout")

            # call_later, not wait_for: no task per idle poll (1,000 bots poll at once).
            timer = loop.call_later(timeout, expire)
            try:
                outcome = await poller
            finally:
                timer.cancel()
                if queue.poller is poller:
                    queue.poller = None
            if outcome == "conflict":
                raise ApiError(409, CONFLICT_POLL)
            if queue.webhook:
                return []
        updates = list(itertools.islice(queue.pending, limit))
        now = time.time()
        for update in updates:
            self._delivered(queue, update, now)
        return updates

    def _delivered(self, queue: Queue, update: JSON, now: float) -> None:
        update_id = update.get("update_id")  # a hostile redelivered one may have no number
        record = queue.log_by_id.get(update_id) if isinstance(update_id, int) else None
        if record is not None and record["delivered_at"] is None:
            record["delivered_at"] = now

    # ---- webhooks

    def set_webhook(self, bot_id: int, hook: JSON | None, drop_pending: bool) -> None:
        """setWebhook (``hook``) or deleteWebhook (None): running deliveries stop; pending
        updates stay (for the new webhook or getUpdates) unless ``drop_pending``."""
        queue = self.queues[bot_id]
        self._stop(queue)
        if drop_pending:
            queue.pending.clear()
        queue.webhook, queue.last_error = hook, None
        if hook is not None:
            queue.wake("timeout")  # a webhook ends any long poll
            self._pump(queue)

    def webhook_info(self, bot_id: int) -> JSON:
        """getWebhookInfo."""
        queue = self.queues[bot_id]
        info: JSON = {
            "url": (queue.webhook or {}).get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(queue.pending),
        }
        if queue.webhook:
            info["max_connections"] = queue.webhook["max_connections"]
            if queue.webhook.get("ip_address"):
                info["ip_address"] = queue.webhook["ip_address"]
            if queue.allowed_updates:
                info["allowed_updates"] = list(queue.allowed_updates)
        if queue.last_error is not None:
            info["last_error_date"], info["last_error_message"] = queue.last_error
        return info

    def _stop(self, queue: Queue) -> None:
        # Freed here, not as each task ends: a new webhook may deliver the same updates
        # before the cancelled tasks ran their last step.
        for task in queue.in_flight.values():
            task.cancel()
        queue.in_flight.clear()

    def _pump(self, queue: Queue) -> None:
        """Start deliveries of pending updates, oldest first, up to max_connections."""
        hook = queue.webhook
        if hook is None or self.closing:
            return
        for update in queue.pending:
            if len(queue.in_flight) >= hook["max_connections"]:
                break
            key = id(update)
            if key not in queue.in_flight:
                task = asyncio.get_running_loop().create_task(self._deliver(queue, hook, update))
                queue.in_flight[key] = task
                task.add_done_callback(functools.partial(self._ended, queue, key))

    def _ended(self, queue: Queue, key: int, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # pragma: no cover
            log.error("webhook delivery crashed (emulator bug)", exc_info=task.exception())
        if queue.in_flight.get(key) is task:  # not when _stop freed the slot already
            del queue.in_flight[key]
            self._pump(queue)

    async def _deliver(self, queue: Queue, hook: JSON, update: JSON) -> None:
        """POST ``update`` until the webhook answers 2xx, waiting longer after each failure."""
        failures = 0
        while True:
            status, error = await self._post(hook, update)
            now = time.time()
            queue.deliveries.append(
                {
                    "update_id": update.get("update_id"),
                    "url": hook["url"],
                    "status": status,
                    "error": error,
                    "at": now,
                }
            )
            if error is None:
                break
            queue.last_error = (int(now), error)
            await asyncio.sleep(min(self.retry_base * 2**failures, self.retry_cap))
            failures += 1
        for index, pending in enumerate(queue.pending):
            if pending is update:
                del queue.pending[index]
                break
        self._delivered(queue, update, now)

    async def _post(self, hook: JSON, update: JSON) -> tuple[int | None, str | None]:
        """One attempt: ``(status, None)`` on 2xx, else ``(status or None, Telegram's words)``."""
        headers = {"Content-Type": "application/json"}
        if hook["secret_token"]:
            headers[SECRET_TOKEN_HEADER] = hook["secret_token"]
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout, sock_read=self.timeout
        )
        if self._session is None or self._session.closed:  # made on the emulator's loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),  # max_connections limits each bot
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        try:
            async with self._session.post(
                hook["url"],
                data=json_bytes(update),
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                await response.read()
        except aiohttp.ConnectionTimeoutError:
            return None, "Connection timed out"
        except TimeoutError:  # aiohttp's read timeouts are TimeoutErrors too
            return None, "Read timeout expired"
        except aiohttp.ClientConnectorDNSError as exc:
            return None, f"Failed to resolve host: {exc.os_error.strerror or exc.os_error}"
        except aiohttp.ClientOSError as exc:  # refused, reset, unreachable: the OS's words
            return None, os.strerror(exc.errno) if exc.errno else str(exc)
        except aiohttp.ClientError as exc:
            return None, str(exc) or type(exc).__name__
        if 200 <= response.status < 300:
            return response.status, None
        return (
            response.status,
            f"Wrong response from the webhook: {response.status} {response.reason or ''}".rstrip(),
        )

    # ---- lifecycle

    def resume(self) -> None:
        """The server (re)started: deliveries go on."""
        self.closing = False
        for queue in self.queues.values():
            self._pump(queue)

    def shutdown(self) -> None:
        """The server is stopping: answer waiting long polls, stop deliveries."""
        self.closing = True
        for queue in self.queues.values():
            self._stop(queue)
            queue.wake("timeout")

    async def close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def json_bytes(payload: Any) -> bytes:
    """Compact UTF-8 JSON, as Telegram sends; a lone surrogate (a hostile update) cannot
    be UTF-8, so such a body goes with \\uXXXX escapes."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(payload, separators=(",", ":")).encode("ascii")
