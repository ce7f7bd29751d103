"""All emulator state (bots, users, chats, updates, faults, records) and control operations.

Threading model: an :class:`EmulatorState` is owned by ONE asyncio event loop (the
emulator's). Every method here must run on that loop; that is what makes the
state safe without locks and lets long-polls wait on plain futures that an
injection resolves immediately. The in-process :class:`~.emulator.TelegramEmulator`
and the HTTP control API both funnel into :meth:`EmulatorState.call_control`,
so there is exactly one implementation of every control operation.

Webhooks: while a bot has one, its pending updates are POSTed to it by tasks on that
same loop (``_deliver``), through one lazily made aiohttp session per emulator.

Methods decorated with :func:`control_op` form the control API. Their arguments
and return values are JSON-friendly (ints, strings, dicts, lists) so they can be
called over HTTP unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import itertools
import json
import logging
import mimetypes
import os
import random
import string
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp

from .html_entities import Entity, utf16_len
from .text_format import message_entities_for

JSON = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])

# Update types delivered when a bot never specified allowed_updates (Bot API default).
DEFAULT_EXCLUDED_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

log = logging.getLogger("emulators.telegram")

SECRET_TOKEN_HEADER = "X-Telegram-Bot-Api-Secret-Token"

CONFLICT_POLL = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"

FaultKind = Literal[
    "unauthorized", "conflict", "too_many_requests", "server_error", "slow", "drop", "error",
    "html",
]
FAULT_KINDS: tuple[str, ...] = (
    "unauthorized",
    "conflict",
    "too_many_requests",
    "server_error",
    "slow",
    "drop",
    "error",
    "html",  # a proxy's HTML error page instead of Telegram's JSON (status, default 502)
)

MediaKind = Literal[
    "photo", "sticker", "voice", "document", "video", "audio", "animation", "video_note", "location"
]

ServiceKind = Literal[
    "new_chat_members", "left_chat_member", "new_chat_title", "group_chat_created", "pinned_message"
]

# Statuses of a bot that is not in a group (my_chat_member ``new_chat_member.status``).
OUT_OF_GROUP = frozenset({"left", "kicked"})

# The six colours Telegram allows for a forum topic icon (Bot API createForumTopic).
FORUM_ICON_COLORS = (7322096, 16766590, 13338331, 9367192, 16749490, 16478047)

# getFile refuses larger files ("file is too big"): the Bot API server's 20 MiB limit.
MAX_DOWNLOAD_FILE_SIZE = 20 * 1024 * 1024

# Media kind -> (default file size, MIME type, file_path directory) of the files send_media
# makes. Photos, stickers and video notes have no mime_type field in the Bot API.
MEDIA_FILES: dict[str, tuple[int, str, str]] = {
    "photo": (64_120, "image/jpeg", "photos"),
    "sticker": (23_456, "image/webp", "stickers"),
    "voice": (12_345, "audio/ogg", "voice"),
    "audio": (3_456_789, "audio/mpeg", "music"),
    "document": (45_678, "application/pdf", "documents"),
    "video": (456_789, "video/mp4", "videos"),
    "animation": (456_789, "video/mp4", "animations"),
    "video_note": (98_765, "video/mp4", "video_notes"),
}
NO_MIME_TYPE_FIELD = frozenset({"photo", "sticker", "video_note"})
# Telegram's extensions for its usual types (the system's MIME tables may prefer others).
_EXTENSIONS = {"image/jpeg": "jpg", "audio/ogg": "oga", "audio/mpeg": "mp3"}


def file_extension(mime_type: str) -> str:
    guessed = mimetypes.guess_extension(mime_type) or ".bin"
    return _EXTENSIONS.get(mime_type) or guessed.lstrip(".")


def control_op(fn: F) -> F:
    """Mark a method as a control operation (exposed in-process and under ``/_emulator/<name>``)."""
    fn.__emulator_control__ = True  # type: ignore[attr-defined]
    return fn


@dataclass
class Fault:
    """One queued fault; consumed by the next matching request, ``times`` times."""

    id: int
    kind: str
    method: str  # lower-cased Bot API method name, or "*" for any method
    times: int
    status: int
    description: str
    retry_after: int | None = None
    delay: float = 0.0

    def as_dict(self) -> JSON:
        return {
            "id": self.id,
            "kind": self.kind,
            "method": self.method,
            "times": self.times,
            "status": self.status,
            "description": self.description,
            "retry_after": self.retry_after,
            "delay": self.delay,
        }


@dataclass
class StoredFile:
    """A file in a bot's updates, for getFile and ``GET /file/bot<token>/<file_path>``."""

    file_id: str
    file_unique_id: str
    size: int
    mime_type: str
    directory: str  # of its file_path: "photos", "voice", ...
    content: bytes | None = None  # None: deterministic fake bytes of ``size``
    file_path: str | None = None  # given by the first getFile, as on Telegram

    def data(self) -> bytes:
        if self.content is not None:
            return self.content
        block = hashlib.sha256(self.file_unique_id.encode()).digest()
        return (block * (self.size // len(block) + 1))[: self.size]

    def new_path(self, number: int) -> str:
        return f"{self.directory}/file_{number}.{file_extension(self.mime_type)}"


@dataclass
class BotState:
    """Everything the emulator knows about one registered bot."""

    id: int
    token: str
    username: str
    first_name: str
    can_join_groups: bool = True
    can_read_all_group_messages: bool = False
    next_update_id: int = 1
    # Pending (unconfirmed) updates, in update_id order: confirming is popleft, O(1).
    pending: deque[JSON] = field(default_factory=deque)
    # The waiting long-poll, if any. Resolved with "wake" / "timeout" / "conflict".
    poller: asyncio.Future[str] | None = None
    # {url, max_connections, secret_token, ip_address} while a webhook is set.
    webhook: JSON | None = None
    # Running webhook deliveries, keyed by id() of the pending update dict: identity,
    # because a redelivered copy may share its update_id with one still pending.
    webhook_in_flight: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    webhook_deliveries: list[JSON] = field(default_factory=list)
    webhook_last_error: tuple[int, str] | None = None  # (unix time, Telegram's words)
    allowed_updates: list[str] | None = None
    # Per chat: message_id -> message dict (user and bot messages share the counter).
    messages: dict[int, dict[int, JSON]] = field(default_factory=dict)
    next_message_id: dict[int, int] = field(default_factory=dict)
    last_bot_message: dict[int, int] = field(default_factory=dict)
    sent: list[JSON] = field(default_factory=list)
    sent_by_chat: dict[int, list[JSON]] = field(default_factory=dict)
    sent_waiters: list[tuple[int, int | None, asyncio.Future[None]]] = field(default_factory=list)
    chat_actions: list[JSON] = field(default_factory=list)
    injected: list[JSON] = field(default_factory=list)
    injected_by_id: dict[int, JSON] = field(default_factory=dict)
    blocked_by: set[int] = field(default_factory=set)
    call_counts: dict[str, int] = field(default_factory=dict)
    call_waiters: list[tuple[str, int, asyncio.Future[None]]] = field(default_factory=list)
    commands: dict[str, list[JSON]] = field(default_factory=dict)
    callback_ids: set[str] = field(default_factory=set)
    # Per group chat: the bot's status once it changed. No entry means "member", so a
    # group that a test merely writes in has the bot in it, as before statuses existed.
    group_status: dict[int, str] = field(default_factory=dict)
    # Per forum chat: thread id -> its forum_topic_created message. Per bot because
    # message ids are (a thread id is the id of that service message).
    forum_topics: dict[int, dict[int, JSON]] = field(default_factory=dict)
    # Files of the media in its updates and sends, by file_id and (after getFile) file_path.
    files: dict[str, StoredFile] = field(default_factory=dict)
    file_paths: dict[str, StoredFile] = field(default_factory=dict)
    downloads: list[JSON] = field(default_factory=list)
    drafts: list[JSON] = field(default_factory=list)  # sendMessageDraft calls, oldest first

    def user(self) -> JSON:
        """The bot as it appears in ``from`` fields."""
        return {
            "id": self.id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    def me(self) -> JSON:
        """The bot as getMe returns it."""
        return {
            **self.user(),
            "can_join_groups": self.can_join_groups,
            "can_read_all_group_messages": self.can_read_all_group_messages,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def info(self) -> JSON:
        return {
            "id": self.id,
            "token": self.token,
            "username": self.username,
            "first_name": self.first_name,
            "user": self.me(),
        }


class EmulatorState:
    """Bots, users, chats, update queues, faults and records of one emulator instance."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        strict_html_ampersand: bool = True,
        call_log_size: int = 100_000,
        webhook_retry_base: float = 0.5,
    ) -> None:
        self.rng = random.Random(seed)
        self.strict_html_ampersand = strict_html_ampersand
        self.call_log_size = call_log_size
        # Webhook delivery timing in seconds (configure_webhooks): the first retry waits
        # retry_base, each further one twice as long, at most retry_cap.
        self.webhook_retry_base = webhook_retry_base
        self.webhook_retry_cap = 10.0
        self.webhook_timeout = 10.0
        self._webhook_session: aiohttp.ClientSession | None = None
        self._fault_ids = itertools.count(1)
        # Set on shutdown: getUpdates then answers at once instead of starting a long poll.
        self.closing = False
        self._reset_data()

    def _reset_data(self) -> None:
        self.bots_by_token: dict[str, BotState] = {}
        self.bots_by_id: dict[int, BotState] = {}
        self.users: dict[int, JSON] = {}
        self.chats: dict[int, JSON] = {}
        self.chats_by_username: dict[str, int] = {}
        # Basic group id -> the supergroup it was upgraded to (migrate_group).
        self.migrated_to: dict[int, int] = {}
        self.faults: dict[str, list[Fault]] = {}
        # Bounded so a long benchmark cannot grow memory without limit.
        self.call_log: deque[JSON] = deque(maxlen=self.call_log_size)
        self._next_user_id = 100_000_000 + self.rng.randint(0, 899_999_999)
        self._next_group_id = 4_000_000_000 + self.rng.randint(0, 99_999_999)
        self._user_seq = itertools.count(1)
        self._bot_seq = itertools.count(1)

    # ------------------------------------------------------------------ plumbing

    @classmethod
    def control_op_names(cls) -> list[str]:
        return sorted(
            name
            for name in dir(cls)
            if getattr(getattr(cls, name, None), "__emulator_control__", False)
        )

    async def call_control(self, op: str, kwargs: dict[str, Any]) -> Any:
        """Run control operation ``op``; the single entry point for both control paths."""
        fn = getattr(self, op, None) if not op.startswith("_") else None
        if fn is None or not getattr(fn, "__emulator_control__", False):
            raise AttributeError(f"unknown emulator control operation {op!r}")
        result = fn(**kwargs)
        if isinstance(result, Awaitable):
            result = await result
        return result

    def bot(self, token: str) -> BotState:
        bot = self.bots_by_token.get(token)
        if bot is None:
            raise KeyError(f"no bot registered with a token for bot id {bot_id_from_token(token)}")
        return bot

    def now(self) -> float:
        return time.time()

    # ------------------------------------------------------------------ bots / users / chats

    @control_op
    def add_bot(
        self,
        token: str | None = None,
        username: str | None = None,
        first_name: str | None = None,
        can_join_groups: bool = True,
        can_read_all_group_messages: bool = False,
    ) -> JSON:
        """Register a bot (generating a realistic token if none is given); idempotent per token."""
        if token is not None and token in self.bots_by_token:
            return self.bots_by_token[token].info()
        if token is None:
            bot_id = self.rng.randint(5_000_000_000, 8_999_999_999)
            while bot_id in self.bots_by_id:
                bot_id += 1
            alphabet = string.ascii_letters + string.digits + "_-"
            token = f"{bot_id}:AA" + "".join(self.rng.choice(alphabet) for _ in range(33))
        bot_id = bot_id_from_token(token)
        if bot_id is None:
            raise ValueError("token must look like '<bot_id>:<secret>'")
        if bot_id in self.bots_by_id:
            raise ValueError(f"bot id {bot_id} is already registered with another token")
        seq = next(self._bot_seq)
        username = username or f"emulated_{bot_id}_bot"
        bot = BotState(
            id=bot_id,
            token=token,
            username=username.lstrip("@"),
            first_name=first_name or f"Emulated Bot {seq}",
            can_join_groups=can_join_groups,
            can_read_all_group_messages=can_read_all_group_messages,
            # Telegram starts update ids at an arbitrary number, never at 1.
            next_update_id=self.rng.randint(100_000_000, 900_000_000),
        )
        self.bots_by_token[token] = bot
        self.bots_by_id[bot_id] = bot
        return bot.info()

    @control_op
    def bots(self) -> list[JSON]:
        """All registered bots (id, token, username, first_name, user)."""
        return [bot.info() for bot in self.bots_by_token.values()]

    @control_op
    def bot_status(self, token: str) -> JSON:
        """Queue/poll/webhook status of one bot (handy in tests and benchmarks)."""
        bot = self.bot(token)
        error_date, error_message = bot.webhook_last_error or (None, None)
        return {
            "id": bot.id,
            "pending_update_count": len(bot.pending),
            "polling": bot.poller is not None and not bot.poller.done(),
            "webhook_url": (bot.webhook or {}).get("url", ""),
            "webhook_in_flight": len(bot.webhook_in_flight),
            "webhook_last_error_date": error_date,
            "webhook_last_error_message": error_message,
            "next_update_id": bot.next_update_id,
            "sent_count": len(bot.sent),
            "blocked_by": sorted(bot.blocked_by),
        }

    @control_op
    def add_user(
        self,
        user_id: int | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        is_bot: bool = False,
        language_code: str | None = None,
    ) -> JSON:
        """Create (or update) a simulated user; its private chat has the same id."""
        if user_id is None:
            user_id = self._next_user_id
            self._next_user_id += self.rng.randint(1, 97)
        user = self.users.get(user_id) or {"id": user_id, "is_bot": is_bot, "first_name": ""}
        seq = next(self._user_seq)
        user["is_bot"] = is_bot
        user["first_name"] = (
            first_name or user["first_name"] or (f"Bot{seq}" if is_bot else f"User{seq}")
        )
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username.lstrip("@")
        if language_code:
            user["language_code"] = language_code
        self.users[user_id] = user
        chat: JSON = {"id": user_id, "type": "private", "first_name": user["first_name"]}
        for key in ("last_name", "username"):
            if key in user:
                chat[key] = user[key]
        self.chats[user_id] = chat
        if "username" in user:
            self.chats_by_username[user["username"].lower()] = user_id
        return dict(user)

    @control_op
    def add_group(
        self,
        chat_id: int | None = None,
        title: str | None = None,
        chat_type: Literal["group", "supergroup", "channel"] = "supergroup",
        username: str | None = None,
        is_forum: bool = False,
    ) -> JSON:
        """Create a group/supergroup/channel chat (negative id; supergroups use -100...).

        ``is_forum`` makes a supergroup with topics (``create_forum_topic``).
        """
        if chat_type not in ("group", "supergroup", "channel"):
            raise ValueError("chat_type must be 'group', 'supergroup' or 'channel'")
        if is_forum and chat_type != "supergroup":
            raise ValueError("only a supergroup can be a forum")
        if chat_id is None:
            self._next_group_id += self.rng.randint(1, 997)
            base = self._next_group_id
            chat_id = (
                -(1_000_000_000_000 + base) if chat_type != "group" else -(base % 1_000_000_000 + 1)
            )
        if chat_id >= 0:
            raise ValueError("group and channel chat ids are negative")
        chat: JSON = {
            "id": chat_id,
            "type": chat_type,
            "title": title or f"Test {chat_type} {abs(chat_id) % 10_000}",
        }
        if is_forum:
            chat["is_forum"] = True
        if username:
            chat["username"] = username.lstrip("@")
            self.chats_by_username[chat["username"].lower()] = chat_id
        self.chats[chat_id] = chat
        return dict(chat)

    def _user(self, user_id: int | None, **fields: Any) -> JSON:
        if user_id is not None and user_id in self.users:
            return self.users[user_id]
        return self.users[self.add_user(user_id=user_id, **fields)["id"]]

    def _group(
        self, chat_id: int | None, title: str | None = None, chat_type: str = "supergroup"
    ) -> JSON:
        if chat_id is not None and chat_id in self.migrated_to:
            # Nobody can write in an upgraded group any more; say where they went.
            raise ValueError(
                f"group {chat_id} was migrated to supergroup {self.migrated_to[chat_id]}; "
                "use the new chat id"
            )
        if chat_id is not None and chat_id in self.chats:
            chat = self.chats[chat_id]
            if chat["type"] == "private":
                raise ValueError(f"chat {chat_id} is a private chat, not a group")
            return chat
        return self.chats[self.add_group(chat_id=chat_id, title=title, chat_type=chat_type)["id"]]  # type: ignore[arg-type]

    def resolve_chat(self, chat_id: Any) -> JSON | None:
        """Look up a chat by id or ``@username`` as the Bot API accepts both."""
        if isinstance(chat_id, str):
            if chat_id.startswith("@"):
                found = self.chats_by_username.get(chat_id[1:].lower())
                return self.chats.get(found) if found is not None else None
            try:
                chat_id = int(chat_id)
            except ValueError:
                return None
        if isinstance(chat_id, bool) or not isinstance(chat_id, int):
            return None
        return self.chats.get(chat_id)

    def resolve_user_for_entity(self, user_id: int) -> JSON:
        user = self.users.get(user_id) or (
            self.bots_by_id[user_id].user() if user_id in self.bots_by_id else None
        )
        return dict(user) if user else {"id": user_id, "is_bot": False, "first_name": ""}

    # ------------------------------------------------------------------ messages & updates

    def new_message_id(self, bot: BotState, chat_id: int) -> int:
        message_id = bot.next_message_id.get(chat_id, 1)
        bot.next_message_id[chat_id] = message_id + 1
        return message_id

    def store_message(self, bot: BotState, message: JSON) -> None:
        bot.messages.setdefault(message["chat"]["id"], {})[message["message_id"]] = message

    def find_message(self, bot: BotState, chat_id: int, message_id: int) -> JSON | None:
        return bot.messages.get(chat_id, {}).get(message_id)

    def _user_message(self, bot: BotState, chat: JSON, sender: JSON, **content: Any) -> JSON:
        message: JSON = {
            "message_id": self.new_message_id(bot, chat["id"]),
            "from": dict(sender),
            "chat": dict(chat),
            "date": int(self.now()),
        }
        message.update({k: v for k, v in content.items() if v is not None})
        self.store_message(bot, message)
        return message

    def _require_in_group(self, bot: BotState, chat: JSON) -> None:
        """Refuse to inject into a group the bot is out of: Telegram would deliver nothing."""
        status = bot.group_status.get(chat["id"])
        if chat["type"] != "private" and status in OUT_OF_GROUP:
            raise ValueError(
                f"bot {bot.id} is not in chat {chat['id']} (status {status!r}); "
                "add it back with add_bot_to_group"
            )

    def _topic_fields(self, bot: BotState, chat: JSON, message_thread_id: int | None) -> JSON:
        """Fields of a user message posted in a forum topic (none for the General topic).

        Telegram makes every message in a topic a reply to the topic's
        ``forum_topic_created`` message unless it replies to something else.
        """
        if message_thread_id is None:
            return {}
        if not chat.get("is_forum"):
            raise ValueError(
                f"chat {chat['id']} is not a forum; create it with add_group(..., is_forum=True)"
            )
        topic = bot.forum_topics.get(chat["id"], {}).get(message_thread_id)
        if topic is None:
            raise LookupError(
                f"no forum topic {message_thread_id} in chat {chat['id']} for bot {bot.id}; "
                "create one with create_forum_topic"
            )
        return {
            "message_thread_id": message_thread_id,
            "is_topic_message": True,
            "reply_to_message": without_reply(topic),
        }

    def push_update(self, bot: BotState, kind: str, payload: JSON) -> JSON:
        """Queue an update for ``bot`` with the next update_id and wake its long-poll."""
        update_id = bot.next_update_id
        bot.next_update_id += 1
        # Snapshot the top level: later edits of the stored message must not rewrite
        # an update that is already queued (edits replace keys, never mutate nested).
        update = {"update_id": update_id, kind: dict(payload)}
        allowed = bot.allowed_updates
        delivered = kind in allowed if allowed else kind not in DEFAULT_EXCLUDED_UPDATES
        record = {
            "update_id": update_id,
            "type": kind,
            "injected_at": self.now(),
            "delivered_at": None,
            "filtered": not delivered,  # dropped because of allowed_updates, like Telegram
            "update": update,
        }
        bot.injected.append(record)
        bot.injected_by_id[update_id] = record
        if delivered:
            bot.pending.append(update)
            poller = bot.poller
            if poller is not None and not poller.done():
                poller.set_result("wake")
            self._pump_webhook(bot)
        return update

    def confirm_updates(self, bot: BotState, offset: int) -> None:
        """getUpdates ``offset`` semantics: forget updates below it (negative: keep the last -offset)."""
        pending = bot.pending
        if offset < 0:
            keep = -offset
            while len(pending) > keep:
                pending.popleft()
            return
        while pending and _confirmed(pending[0]["update_id"], offset):
            pending.popleft()

    def take_updates(self, bot: BotState, limit: int) -> list[JSON]:
        updates = list(itertools.islice(bot.pending, limit))
        if updates:
            now = self.now()
            for update in updates:
                record = bot.injected_by_id.get(update["update_id"])
                if record is not None and record["delivered_at"] is None:
                    record["delivered_at"] = now
        return updates

    def record_sent(self, bot: BotState, message: JSON, params: JSON, method: str) -> None:
        reply = message.get("reply_to_message")
        record = {
            "bot_id": bot.id,
            "method": method,
            "chat_id": message["chat"]["id"],
            "message_id": message["message_id"],
            "text": message.get("text", message.get("caption")),
            "parse_mode": params.get("parse_mode"),
            "entities": message.get("entities", message.get("caption_entities", [])),
            "reply_to_message_id": reply["message_id"] if reply else None,
            "message_thread_id": message.get("message_thread_id"),
            "reply_markup": params.get("reply_markup"),
            "time": self.now(),
            "message": dict(message),  # snapshot: editMessageText later changes the stored one
        }
        bot.sent.append(record)
        bot.sent_by_chat.setdefault(record["chat_id"], []).append(record)
        bot.last_bot_message[record["chat_id"]] = message["message_id"]
        if bot.sent_waiters:
            still_waiting = []
            for count, chat_id, fut in bot.sent_waiters:
                have = len(bot.sent) if chat_id is None else len(bot.sent_by_chat.get(chat_id, ()))
                if fut.done():
                    continue
                if have >= count:
                    fut.set_result(None)
                else:
                    still_waiting.append((count, chat_id, fut))
            bot.sent_waiters = still_waiting

    def log_call(self, token: str, method: str, params: JSON) -> JSON:
        """Append a call-log entry. The token is never stored, only the bot id."""
        entry = {
            "method": method,
            "bot_id": bot_id_from_token(token),
            "time": self.now(),
            "params": params,
            "status": None,
            "fault": None,
        }
        self.call_log.append(entry)
        bot = self.bots_by_token.get(token)
        if bot is not None:
            key = method.lower()
            bot.call_counts[key] = bot.call_counts.get(key, 0) + 1
            if bot.call_waiters:
                remaining = []
                for wanted, count, fut in bot.call_waiters:
                    if fut.done():
                        continue
                    if wanted == key and bot.call_counts[key] >= count:
                        fut.set_result(None)
                    else:
                        remaining.append((wanted, count, fut))
                bot.call_waiters = remaining
        return entry

    # ------------------------------------------------------------------ webhook delivery

    def install_webhook(self, bot: BotState, hook: JSON | None, drop_pending: bool) -> None:
        """setWebhook (``hook``) / deleteWebhook (None): the new one replaces any previous.

        Running deliveries stop; undelivered updates stay pending (for the new webhook or
        for getUpdates) unless ``drop_pending``.
        """
        self._stop_webhook(bot)
        if drop_pending:
            bot.pending.clear()
        bot.webhook = hook
        bot.webhook_last_error = None
        if hook is None:
            return
        # An active webhook ends any long poll, like Telegram does.
        if bot.poller is not None and not bot.poller.done():
            bot.poller.set_result("timeout")
        self._pump_webhook(bot)

    def resume_webhooks(self) -> None:
        """Restart deliveries after the server (re)started; shutdown stopped them."""
        for bot in self.bots_by_token.values():
            self._pump_webhook(bot)

    def _stop_webhook(self, bot: BotState) -> None:
        # Cleared here rather than as each task ends: a new webhook may start delivering
        # the same updates before the cancelled tasks have run their last step.
        for task in bot.webhook_in_flight.values():
            task.cancel()
        bot.webhook_in_flight.clear()

    def _pump_webhook(self, bot: BotState) -> None:
        """Start deliveries of pending updates, oldest first, at most max_connections at once."""
        hook = bot.webhook
        if hook is None or self.closing:
            return
        in_flight = bot.webhook_in_flight
        for update in bot.pending:
            if len(in_flight) >= hook["max_connections"]:
                break
            key = id(update)
            if key not in in_flight:
                task = asyncio.get_running_loop().create_task(self._deliver(bot, hook, update))
                in_flight[key] = task
                task.add_done_callback(functools.partial(self._delivery_ended, bot, key))

    def _delivery_ended(self, bot: BotState, key: int, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # pragma: no cover
            log.error("webhook delivery crashed (emulator bug)", exc_info=task.exception())
        # Not ours any more when _stop_webhook ran first (it freed the slots itself).
        if bot.webhook_in_flight.get(key) is task:
            del bot.webhook_in_flight[key]
            self._pump_webhook(bot)  # a slot is free: start the next pending update

    async def _deliver(self, bot: BotState, hook: JSON, update: JSON) -> None:
        """POST ``update`` until the webhook answers 2xx, backing off between attempts.

        The update keeps its connection slot while it waits, so with max_connections=1 a
        failing update holds back the later ones, as on Telegram.
        """
        failures = 0
        while True:
            status, error = await self._post_update(hook, update)
            now = self.now()
            bot.webhook_deliveries.append(
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
            bot.webhook_last_error = (int(now), error)
            await asyncio.sleep(min(self.webhook_retry_base * 2**failures, self.webhook_retry_cap))
            failures += 1
        for index, pending in enumerate(bot.pending):
            if pending is update:  # identity: a redelivered copy may share the update_id
                del bot.pending[index]
                break
        update_id = update.get("update_id")  # a redelivered hostile update may lack a number
        record = bot.injected_by_id.get(update_id) if isinstance(update_id, int) else None
        if record is not None and record["delivered_at"] is None:
            record["delivered_at"] = now

    async def _post_update(self, hook: JSON, update: JSON) -> tuple[int | None, str | None]:
        """One attempt: ``(status, None)`` on 2xx, else ``(status or None, Telegram's words)``."""
        headers = {"Content-Type": "application/json"}
        if hook["secret_token"]:
            headers[SECRET_TOKEN_HEADER] = hook["secret_token"]
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.webhook_timeout, sock_read=self.webhook_timeout
        )
        try:
            async with self._session().post(
                hook["url"],
                data=json_bytes(update),
                headers=headers,
                timeout=timeout,
                allow_redirects=False,  # Telegram does not follow them either
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
        return response.status, (
            f"Wrong response from the webhook: {response.status} {response.reason or ''}".rstrip()
        )

    def _session(self) -> aiohttp.ClientSession:
        # Made lazily: a session belongs to the loop it was created on (the emulator's).
        if self._webhook_session is None or self._webhook_session.closed:
            self._webhook_session = aiohttp.ClientSession(
                # No global cap: max_connections limits each bot.
                connector=aiohttp.TCPConnector(limit=0),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._webhook_session

    async def close_webhook_session(self) -> None:
        """Close the delivery session (server cleanup); the next delivery makes a new one."""
        session, self._webhook_session = self._webhook_session, None
        if session is not None:
            await session.close()

    # ------------------------------------------------------------------ injections

    @control_op
    def send_private_message(
        self,
        token: str,
        text: str,
        user_id: int | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        entities: list[Entity] | None = None,
    ) -> JSON:
        """A user writes ``text`` to the bot in their private chat (creating the user if needed)."""
        bot = self.bot(token)
        user = self._user(user_id, first_name=first_name, last_name=last_name, username=username)
        if user["id"] in bot.blocked_by:
            # Writing to a bot you blocked means restarting it: Telegram unblocks first.
            self.unblock_bot(token, user["id"])
        chat = self.chats[user["id"]]
        message = self._user_message(
            bot, chat, user, text=text, entities=message_entities_for(text, entities) or None
        )
        return self.push_update(bot, "message", message)

    @control_op
    def send_group_message(
        self,
        token: str,
        text: str,
        chat_id: int | None = None,
        user_id: int | None = None,
        mention_bot: Literal["username", "text_mention"] | None = None,
        text_mention_user_id: int | None = None,
        entities: list[Entity] | None = None,
        title: str | None = None,
        chat_type: Literal["group", "supergroup"] = "supergroup",
        first_name: str | None = None,
        username: str | None = None,
        message_thread_id: int | None = None,
    ) -> JSON:
        """A user writes in a group, optionally mentioning the bot or another user.

        ``mention_bot="username"`` adds ``@botname`` (a ``mention`` entity);
        ``mention_bot="text_mention"`` adds the bot's first name as a ``text_mention``
        carrying the bot user. ``text_mention_user_id`` adds a ``text_mention`` of that
        user (how Telegram mentions users without a username). Each mention replaces a
        ``{bot}`` / ``{user}`` placeholder in ``text`` if present, else is prepended.
        ``entities`` (optional) are extra entities in final-text UTF-16 offsets.
        ``message_thread_id`` posts in that topic of a forum (see ``create_forum_topic``).
        """
        bot = self.bot(token)
        chat = self._group(chat_id, title, chat_type)
        self._require_in_group(bot, chat)
        topic = self._topic_fields(bot, chat, message_thread_id)
        user = self._user(user_id, first_name=first_name, username=username)
        inserts: list[tuple[str, str, Entity]] = []
        if mention_bot is not None:
            if mention_bot == "username":
                inserts.append(("{bot}", "@" + bot.username, {"type": "mention"}))
            elif mention_bot == "text_mention":
                inserts.append(
                    ("{bot}", bot.first_name, {"type": "text_mention", "user": bot.user()})
                )
            else:
                raise ValueError("mention_bot must be 'username' or 'text_mention'")
        if text_mention_user_id is not None:
            target = self._user(text_mention_user_id)
            inserts.append(
                ("{user}", target["first_name"], {"type": "text_mention", "user": dict(target)})
            )
        text, mention_entities = _place_mentions(text, inserts)
        extra: list[Entity] = [*mention_entities, *(entities or [])]
        message = self._user_message(
            bot, chat, user, **topic, text=text, entities=message_entities_for(text, extra) or None
        )
        return self.push_update(bot, "message", message)

    @control_op
    def send_command(
        self,
        token: str,
        command: str = "start",
        args: str | None = None,
        chat_id: int | None = None,
        user_id: int | None = None,
        with_bot_username: bool | None = None,
        message_thread_id: int | None = None,
    ) -> JSON:
        """A ``/command [args]`` message with a ``bot_command`` entity.

        Private chat by default (``chat_id`` None or the user's id); in groups the
        command is addressed as ``/command@botname`` unless ``with_bot_username=False``.
        ``message_thread_id`` sends it in a forum topic.
        """
        bot = self.bot(token)
        command = command.lstrip("/")
        is_group = chat_id is not None and chat_id < 0
        suffix = (
            f"@{bot.username}"
            if (with_bot_username if with_bot_username is not None else is_group)
            else ""
        )
        cmd_text = f"/{command}{suffix}"
        text = f"{cmd_text} {args}" if args else cmd_text
        entity = {"type": "bot_command", "offset": 0, "length": utf16_len(cmd_text)}
        if is_group:
            return self.send_group_message(
                token,
                text,
                chat_id=chat_id,
                user_id=user_id,
                entities=[entity],
                message_thread_id=message_thread_id,
            )
        if message_thread_id is not None:
            raise ValueError("message_thread_id needs a forum group chat_id")
        if chat_id is not None:
            user_id = chat_id
        return self.send_private_message(token, text, user_id=user_id, entities=[entity])

    @control_op
    def send_bot_message(
        self,
        token: str,
        text: str,
        chat_id: int | None = None,
        sender_id: int | None = None,
        sender_username: str | None = None,
    ) -> JSON:
        """Another bot (``from.is_bot`` true) writes in a group."""
        sender = self._user(sender_id, is_bot=True, username=sender_username)
        if not sender["is_bot"]:
            raise ValueError(f"user {sender['id']} is not a bot")
        return self.send_group_message(token, text, chat_id=chat_id, user_id=sender["id"])

    @control_op
    def reply_to_bot(
        self,
        token: str,
        chat_id: int,
        text: str,
        message_id: int | None = None,
        user_id: int | None = None,
    ) -> JSON:
        """A user replies to one of the bot's messages (default: its last one in ``chat_id``)."""
        bot = self.bot(token)
        if message_id is None:
            message_id = bot.last_bot_message.get(chat_id)
            if message_id is None:
                raise LookupError(f"bot {bot.id} has not sent anything to chat {chat_id}")
        target = self.find_message(bot, chat_id, message_id)
        if target is None:
            raise LookupError(f"no message {message_id} in chat {chat_id} for bot {bot.id}")
        chat = self.chats[chat_id]
        self._require_in_group(bot, chat)
        if chat["type"] == "private":
            user = self.users[chat_id]
        else:
            user = self._user(user_id)
        # A reply stays in the topic of the message it answers.
        topic = (
            {"message_thread_id": target["message_thread_id"], "is_topic_message": True}
            if target.get("is_topic_message")
            else {}
        )
        message = self._user_message(
            bot,
            chat,
            user,
            **topic,
            text=text,
            entities=message_entities_for(text) or None,
            reply_to_message=without_reply(target),
        )
        return self.push_update(bot, "message", message)

    @control_op
    def edit_message(self, token: str, chat_id: int, message_id: int, text: str) -> JSON:
        """A user edits one of their earlier messages: an ``edited_message`` update."""
        bot = self.bot(token)
        message = self.find_message(bot, chat_id, message_id)
        if message is None:
            raise LookupError(f"no message {message_id} in chat {chat_id} for bot {bot.id}")
        if message.get("from", {}).get("id") == bot.id:
            raise ValueError("users cannot edit the bot's messages")
        self._require_in_group(bot, self.chats[chat_id])
        if "text" not in message:
            raise ValueError("only text messages can be edited with edit_message")
        message["text"] = text
        entities = message_entities_for(text)
        if entities:
            message["entities"] = entities
        else:
            message.pop("entities", None)
        message["edit_date"] = int(self.now())
        return self.push_update(bot, "edited_message", dict(message))

    @control_op
    def send_media(
        self,
        token: str,
        kind: MediaKind = "photo",
        chat_id: int | None = None,
        user_id: int | None = None,
        caption: str | None = None,
        message_thread_id: int | None = None,
        size: int | None = None,
        mime_type: str | None = None,
        content: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> JSON:
        """A message with media and no text (photo/sticker/voice/...; optional caption;
        optionally a reply to ``reply_to_message_id`` of the chat).

        Its files can be fetched (getFile, then ``GET /file/bot<token>/<file_path>``):
        ``size`` bytes of deterministic fake data (default: a typical size for ``kind``),
        or exactly ``content`` (base64). ``mime_type`` replaces the kind's usual one
        (not for photo/sticker/video_note, which have no mime_type field). A photo comes
        in three sizes; the largest is the file itself. ``message_thread_id`` posts it
        in a forum topic.
        """
        try:
            content_bytes = None if content is None else base64.b64decode(content, validate=True)
        except (binascii.Error, TypeError):
            raise ValueError("content must be a base64 string") from None
        bot = self.bot(token)
        topic: JSON = {}
        if chat_id is not None and chat_id < 0:
            chat = self._group(chat_id)
            self._require_in_group(bot, chat)
            topic = self._topic_fields(bot, chat, message_thread_id)
            user = self._user(user_id)
        elif message_thread_id is not None:
            raise ValueError("message_thread_id needs a forum group chat_id")
        else:
            user = self._user(chat_id if chat_id is not None else user_id)
            chat = self.chats[user["id"]]
        media = self.fake_media(bot, kind, size, mime_type, content_bytes)
        message_content: JSON = {**topic, kind: media}
        if caption is not None:
            if kind in ("sticker", "video_note", "location"):
                raise ValueError(f"{kind} messages have no caption")
            message_content["caption"] = caption
            message_content["caption_entities"] = message_entities_for(caption) or None
        if reply_to_message_id is not None:
            target = self.find_message(bot, chat["id"], reply_to_message_id)
            if target is None:
                raise LookupError(f"no message {reply_to_message_id} in chat {chat['id']} for bot {bot.id}")
            message_content["reply_to_message"] = without_reply(target)
        message = self._user_message(bot, chat, user, **message_content)
        return self.push_update(bot, "message", message)

    def fake_media(
        self,
        bot: BotState,
        kind: str,
        size: int | None = None,
        mime_type: str | None = None,
        content: bytes | None = None,
    ) -> Any:
        """Realistic-looking media objects whose files (unique ids) ``bot`` can fetch."""
        if kind == "location":
            if size is not None or mime_type is not None or content is not None:
                raise ValueError("a location has no file")
            return {"latitude": 52.52, "longitude": 13.405}
        if kind not in MEDIA_FILES:
            raise ValueError(f"unsupported media kind {kind!r}")
        default_size, default_mime, directory = MEDIA_FILES[kind]
        if mime_type is not None and kind in NO_MIME_TYPE_FIELD:
            raise ValueError(f"a {kind} has no mime_type in the Bot API")
        if content is not None:
            if size is not None and size != len(content):
                raise ValueError(f"size {size} is not the length of content ({len(content)})")
            size = len(content)
        size = default_size if size is None else int(size)
        if size < 1:
            raise ValueError("size must be >= 1")
        mime = mime_type or default_mime

        def stored(file_size: int, data: bytes | None = None) -> JSON:
            file = StoredFile(self._file_id(), self._file_id(16), file_size, mime, directory, data)
            bot.files[file.file_id] = file
            return {
                "file_id": file.file_id,
                "file_unique_id": file.file_unique_id,
                "file_size": file_size,
            }

        if kind == "photo":
            # Telegram sends a few scaled-down sizes; the last and largest is the file itself.
            thumbs = [(90, 67, size * 1_342 // 64_120), (320, 240, size * 17_403 // 64_120)]
            return [
                *({**stored(max(1, s)), "width": w, "height": h} for w, h, s in thumbs),
                {**stored(size, content), "width": 800, "height": 600},
            ]
        media = stored(size, content)
        if kind not in NO_MIME_TYPE_FIELD:
            media["mime_type"] = mime
        extra: dict[str, JSON] = {
            "sticker": {
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
                "emoji": "😀",
            },
            "voice": {"duration": 3},
            "audio": {"duration": 180, "title": "Song"},
            "document": {"file_name": f"report.{file_extension(mime)}"},
            "video": {"width": 640, "height": 360, "duration": 5},
            "animation": {"width": 640, "height": 360, "duration": 5},
            "video_note": {"length": 240, "duration": 4},
        }
        return {**media, **extra[kind]}

    def _file_id(self, length: int = 44) -> str:
        alphabet = string.ascii_letters + string.digits + "_-"
        return "AgAC" + "".join(self.rng.choice(alphabet) for _ in range(length - 4))

    @control_op
    def send_service_message(
        self,
        token: str,
        chat_id: int | None = None,
        kind: ServiceKind = "new_chat_members",
        user_ids: list[int] | None = None,
        include_bot: bool = False,
        title: str | None = None,
        user_id: int | None = None,
        message_id: int | None = None,
    ) -> JSON:
        """A service message in a group: members joined/left, title changed, group created, pin.

        ``user_id`` is the actor (who added/removed/renamed). For ``new_chat_members``,
        ``user_ids`` are the joining users (default: one new user) and ``include_bot``
        adds the bot itself, which also produces a ``my_chat_member`` update first.
        """
        bot = self.bot(token)
        chat = self._group(chat_id)
        if not (kind == "new_chat_members" and include_bot):
            self._require_in_group(bot, chat)
        actor = self._user(user_id)
        content: JSON
        if kind == "new_chat_members":
            members = [self._user(uid) for uid in (user_ids or ([] if include_bot else [None]))]
            member_dicts = [dict(m) for m in members]
            if include_bot:
                member_dicts.append(bot.user())
                # Being added back lifts the 403 of a kicked/left bot.
                before = bot.group_status.get(chat["id"])
                bot.group_status[chat["id"]] = "member"
                self.push_update(
                    bot,
                    "my_chat_member",
                    self._chat_member_update(
                        bot, chat, actor, before if before in OUT_OF_GROUP else "left", "member"
                    ),
                )
            content = {"new_chat_members": member_dicts}
        elif kind == "left_chat_member":
            leaving = self._user(user_ids[0] if user_ids else None)
            content = {"left_chat_member": dict(leaving)}
        elif kind == "new_chat_title":
            new_title = title or "Renamed chat"
            chat["title"] = new_title
            content = {"new_chat_title": new_title}
        elif kind == "group_chat_created":
            content = {"group_chat_created": True}
        elif kind == "pinned_message":
            target_id = message_id or bot.last_bot_message.get(chat["id"])
            target = self.find_message(bot, chat["id"], target_id) if target_id else None
            if target is None:
                raise LookupError("pinned_message needs message_id of a known message in this chat")
            content = {"pinned_message": without_reply(target)}
        else:
            raise ValueError(f"unsupported service message kind {kind!r}")
        message = self._user_message(bot, chat, actor, **content)
        return self.push_update(bot, "message", message)

    def _chat_member_update(
        self, bot: BotState, chat: JSON, actor: JSON, old: str, new: str
    ) -> JSON:
        return {
            "chat": dict(chat),
            "from": dict(actor),
            "date": int(self.now()),
            "old_chat_member": chat_member(bot.user(), old, chat),
            "new_chat_member": chat_member(bot.user(), new, chat),
        }

    @control_op
    def press_button(
        self,
        token: str,
        chat_id: int,
        data: str,
        message_id: int | None = None,
        user_id: int | None = None,
    ) -> JSON:
        """A user presses an inline-keyboard button: a ``callback_query`` update."""
        bot = self.bot(token)
        message_id = message_id or bot.last_bot_message.get(chat_id)
        message = self.find_message(bot, chat_id, message_id) if message_id else None
        if message is None:
            raise LookupError(f"no bot message to press a button on in chat {chat_id}")
        chat = self.chats[chat_id]
        self._require_in_group(bot, chat)
        user = self.users[chat_id] if chat["type"] == "private" else self._user(user_id)
        query_id = str(self.rng.randint(10**18, 10**19 - 1))
        bot.callback_ids.add(query_id)
        payload = {
            "id": query_id,
            "from": dict(user),
            "message": dict(message),
            "chat_instance": str(abs(hash((bot.id, chat_id))) % 10**19),
            "data": data,
        }
        return self.push_update(bot, "callback_query", payload)

    @control_op
    def inject_update(self, token: str, update: JSON) -> JSON:
        """Queue an arbitrary update body, e.g. ``{"inline_query": {...}}``; update_id is assigned."""
        bot = self.bot(token)
        kinds = [k for k in update if k != "update_id"]
        if len(kinds) != 1:
            raise ValueError("update must contain exactly one update type key")
        return self.push_update(bot, kinds[0], update[kinds[0]])

    @control_op
    def redeliver_update(self, token: str, update: JSON) -> JSON:
        """Queue an already delivered update again, keeping its update_id: what Telegram
        does when the offset past it was never confirmed (a poller crashed first)."""
        bot = self.bot(token)
        # Oldest first, as getUpdates returns them; a redelivered update is older than
        # anything still pending.
        bot.pending.appendleft(dict(update))
        poller = bot.poller
        if poller is not None and not poller.done():
            poller.set_result("wake")
        self._pump_webhook(bot)
        return update

    @control_op
    def block_bot(self, token: str, user_id: int, notify: bool = True) -> JSON | None:
        """The user blocks the bot: later sends to them get 403. Emits ``my_chat_member`` if notify."""
        bot = self.bot(token)
        user = self._user(user_id)
        if user["id"] in bot.blocked_by:
            return None
        bot.blocked_by.add(user["id"])
        if notify:
            return self.push_update(
                bot,
                "my_chat_member",
                self._chat_member_update(bot, self.chats[user["id"]], user, "member", "kicked"),
            )
        return None

    @control_op
    def unblock_bot(self, token: str, user_id: int, notify: bool = True) -> JSON | None:
        """The user unblocks (restarts) the bot."""
        bot = self.bot(token)
        if user_id not in bot.blocked_by:
            return None
        bot.blocked_by.discard(user_id)
        if notify:
            user = self.users[user_id]
            return self.push_update(
                bot,
                "my_chat_member",
                self._chat_member_update(bot, self.chats[user_id], user, "kicked", "member"),
            )
        return None

    # ------------------------------------------------------------------ groups: membership, topics, migration

    @control_op
    def remove_bot_from_group(
        self, token: str, chat_id: int, user_id: int | None = None, kicked: bool = True
    ) -> JSON | None:
        """User ``user_id`` removes the bot from a group: a ``my_chat_member`` update
        (member/administrator -> ``kicked``, or ``left`` with ``kicked=False``); from then
        on sends to the chat get 403. Returns None if the bot was already out."""
        bot = self.bot(token)
        chat = self._group(chat_id)
        before = bot.group_status.get(chat["id"], "member")
        if before in OUT_OF_GROUP:
            return None
        after = "kicked" if kicked else "left"
        bot.group_status[chat["id"]] = after
        actor = self._user(user_id)
        return self.push_update(
            bot, "my_chat_member", self._chat_member_update(bot, chat, actor, before, after)
        )

    @control_op
    def add_bot_to_group(
        self,
        token: str,
        chat_id: int | None = None,
        status: Literal["member", "administrator"] = "member",
        user_id: int | None = None,
    ) -> JSON | None:
        """User ``user_id`` adds the bot to a group (or promotes it): ``my_chat_member``
        (left/kicked -> ``status``), plus the ``new_chat_members`` service message when
        the bot joins. Lifts the 403 of a removed bot. Returns the my_chat_member update,
        or None if the status does not change."""
        if status not in ("member", "administrator"):
            raise ValueError("status must be 'member' or 'administrator'")
        bot = self.bot(token)
        chat = self._group(chat_id)
        # Groups are implicitly joined for plain injections, but "adding" the bot
        # describes a join: without a recorded status it starts from "left".
        before = bot.group_status.get(chat["id"], "left")
        if before == status:
            return None
        bot.group_status[chat["id"]] = status
        actor = self._user(user_id)
        update = self.push_update(
            bot, "my_chat_member", self._chat_member_update(bot, chat, actor, before, status)
        )
        if before in OUT_OF_GROUP:
            message = self._user_message(bot, chat, actor, new_chat_members=[bot.user()])
            self.push_update(bot, "message", message)
        return update

    @control_op
    def create_forum_topic(
        self,
        token: str,
        chat_id: int,
        name: str,
        user_id: int | None = None,
        icon_color: int | None = None,
    ) -> int:
        """A user creates a topic in a forum supergroup; returns its ``message_thread_id``.

        Pushes the ``forum_topic_created`` service message, whose message_id is the
        thread id (as on Telegram). Use the id with ``send_group_message`` & co.
        """
        bot = self.bot(token)
        chat = self._group(chat_id)
        if not chat.get("is_forum"):
            raise ValueError(
                f"chat {chat_id} is not a forum; create it with add_group(..., is_forum=True)"
            )
        self._require_in_group(bot, chat)
        if not 1 <= len(name) <= 128:
            raise ValueError("a topic name has 1-128 characters")
        if icon_color is None:
            icon_color = self.rng.choice(FORUM_ICON_COLORS)
        elif icon_color not in FORUM_ICON_COLORS:
            raise ValueError(f"icon_color must be one of {FORUM_ICON_COLORS}")
        actor = self._user(user_id)
        # Thread id 1 is the General topic on Telegram: a created topic never gets it.
        bot.next_message_id[chat["id"]] = max(bot.next_message_id.get(chat["id"], 1), 2)
        message = self._user_message(
            bot, chat, actor, forum_topic_created={"name": name, "icon_color": icon_color}
        )
        thread_id: int = message["message_id"]
        message["message_thread_id"] = thread_id
        message["is_topic_message"] = True
        bot.forum_topics.setdefault(chat["id"], {})[thread_id] = message
        self.push_update(bot, "message", message)
        return thread_id

    @control_op
    def migrate_group(self, token: str, chat_id: int, user_id: int | None = None) -> int:
        """A user upgrades basic group ``chat_id`` to a supergroup; returns the new chat id.

        Pushes the two service messages Telegram sends: ``migrate_to_chat_id`` in the old
        group, then ``migrate_from_chat_id`` in the new supergroup. Afterwards sends to the
        old id answer 400 "group chat was upgraded to a supergroup chat" with
        ``parameters.migrate_to_chat_id`` (PTB's ``ChatMigrated``).
        """
        bot = self.bot(token)
        old = self.chats.get(chat_id)
        if old is None or old["type"] != "group":
            raise ValueError(f"chat {chat_id} is not a basic group")
        if chat_id in self.migrated_to:
            raise ValueError(f"group {chat_id} was already migrated to {self.migrated_to[chat_id]}")
        self._require_in_group(bot, old)
        new = self.chats[self.add_group(title=old["title"], chat_type="supergroup")["id"]]
        self.migrated_to[chat_id] = new["id"]
        if chat_id in bot.group_status:  # an administrator stays one
            bot.group_status[new["id"]] = bot.group_status[chat_id]
        actor = self._user(user_id)
        self.push_update(
            bot, "message", self._user_message(bot, old, actor, migrate_to_chat_id=new["id"])
        )
        self.push_update(
            bot, "message", self._user_message(bot, new, actor, migrate_from_chat_id=chat_id)
        )
        return int(new["id"])

    @control_op
    def jump_update_id(self, token: str, by: int | None = None, to: int | None = None) -> int:
        """Make the next update_id jump (Telegram picks a random one after a week idle)."""
        bot = self.bot(token)
        if to is not None:
            bot.next_update_id = to
        else:
            bot.next_update_id += by if by is not None else self.rng.randint(100_000, 50_000_000)
        return bot.next_update_id

    # ------------------------------------------------------------------ faults

    @control_op
    def add_fault(
        self,
        token: str,
        kind: FaultKind,
        method: str = "*",
        times: int = 1,
        status: int | None = None,
        retry_after: int | None = None,
        delay: float | None = None,
        description: str | None = None,
    ) -> JSON:
        """Queue a fault for the next ``times`` requests of ``token`` to ``method`` ("*" = any).

        Kinds: ``unauthorized`` (401), ``conflict`` (409), ``too_many_requests`` (429 with
        ``retry_after``, default 5 s), ``server_error`` (``status`` 500/502/503/504, default 500),
        ``slow`` (answer normally after ``delay`` seconds, default 1), ``drop`` (close the
        connection without a response), ``error`` (any ``status`` + ``description``).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}"
            )
        if times < 1:
            raise ValueError("times must be >= 1")
        defaults: dict[str, tuple[int, str]] = {
            "unauthorized": (401, "Unauthorized"),
            "conflict": (409, CONFLICT_POLL),
            "too_many_requests": (429, ""),
            "server_error": (500, ""),
            "slow": (200, ""),
            "drop": (0, ""),
            "error": (400, "Bad Request: emulated error"),
            "html": (502, "Bad Gateway"),
        }
        fault_status, fault_description = defaults[kind]
        if kind in ("server_error", "error", "html") and status is not None:
            fault_status = status
        if kind == "too_many_requests":
            retry_after = 5 if retry_after is None else int(retry_after)
            fault_description = f"Too Many Requests: retry after {retry_after}"
        if kind == "server_error":
            phrases = {
                500: "Internal Server Error",
                502: "Bad Gateway",
                503: "Service Unavailable",
                504: "Gateway Timeout",
            }
            fault_description = phrases.get(fault_status, "Internal Server Error")
        fault = Fault(
            id=next(self._fault_ids),
            kind=kind,
            method="*" if method in ("*", "", None) else method.lower(),
            times=int(times),
            status=fault_status,
            description=description or fault_description,
            retry_after=retry_after,
            delay=float(delay if delay is not None else (1.0 if kind == "slow" else 0.0)),
        )
        self.faults.setdefault(token, []).append(fault)
        return fault.as_dict()

    @control_op
    def clear_faults(self, token: str | None = None) -> int:
        """Drop queued faults of one bot (or all); returns how many were dropped."""
        if token is None:
            dropped = sum(len(v) for v in self.faults.values())
            self.faults.clear()
            return dropped
        return len(self.faults.pop(token, []))

    @control_op
    def pending_faults(self, token: str) -> list[JSON]:
        return [f.as_dict() for f in self.faults.get(token, [])]

    def take_fault(self, token: str, method: str) -> Fault | None:
        """Consume the first queued fault matching this request, honouring ``times``."""
        queue = self.faults.get(token)
        if not queue:
            return None
        key = method.lower()
        for index, fault in enumerate(queue):
            if fault.method == "*" or fault.method == key:
                fault.times -= 1
                if fault.times <= 0:
                    del queue[index]
                return fault
        return None

    # ------------------------------------------------------------------ records

    @control_op
    def sent_messages(self, token: str, chat_id: int | None = None) -> list[JSON]:
        """Everything the bot sent (oldest first): chat_id, message_id, text, parse_mode, entities, ..."""
        bot = self.bot(token)
        return list(bot.sent if chat_id is None else bot.sent_by_chat.get(chat_id, ()))

    @control_op
    def chat_actions(self, token: str, chat_id: int | None = None) -> list[JSON]:
        """sendChatAction calls of the bot: ``{chat_id, action, time}``."""
        bot = self.bot(token)
        return [a for a in bot.chat_actions if chat_id is None or a["chat_id"] == chat_id]

    @control_op
    def drafts(self, token: str, chat_id: int | None = None) -> list[JSON]:
        """sendMessageDraft calls of the bot, oldest first: ``{chat_id, draft_id, text, entities,
        parse_mode, message_thread_id, at}`` (text "" is the "Thinking..." placeholder)."""
        bot = self.bot(token)
        return [d for d in bot.drafts if chat_id is None or d["chat_id"] == chat_id]

    @control_op
    def file_downloads(self, token: str) -> list[JSON]:
        """Files the bot downloaded, oldest first: ``{file_id, file_path, bytes, at}``."""
        return list(self.bot(token).downloads)

    def download_file(self, token: str, file_path: str) -> StoredFile | None:
        """The file behind ``/file/bot<token>/<file_path>`` (None: not this bot's), recorded."""
        bot = self.bots_by_token.get(token)
        file = bot.file_paths.get(file_path) if bot is not None else None
        if bot is not None and file is not None:
            record = {"file_id": file.file_id, "file_path": file_path, "bytes": file.size}
            bot.downloads.append({**record, "at": self.now()})
        return file

    @control_op
    def calls(
        self, token: str | None = None, method: str | None = None, limit: int | None = None
    ) -> list[JSON]:
        """Bot API call log ``{method, bot_id, time, params, status, fault}`` (never the token)."""
        bot_id = bot_id_from_token(token) if token is not None else None
        key = method.lower() if method else None
        result = [
            entry
            for entry in self.call_log
            if (bot_id is None or entry["bot_id"] == bot_id)
            and (key is None or entry["method"].lower() == key)
        ]
        return result[-limit:] if limit else result

    @control_op
    def updates(self, token: str) -> list[JSON]:
        """Injected updates of a bot: ``{update_id, type, injected_at, delivered_at, filtered, update}``."""
        return list(self.bot(token).injected)

    @control_op
    def webhook_deliveries(self, token: str) -> list[JSON]:
        """Webhook delivery attempts, oldest first: ``{update_id, url, status, error, at}``.

        ``status`` is the HTTP status (None when no answer came), ``error`` Telegram's
        ``last_error_message`` for a failed attempt (None for a 2xx answer).
        """
        return list(self.bot(token).webhook_deliveries)

    @control_op
    def configure_webhooks(
        self,
        retry_base: float | None = None,
        retry_cap: float | None = None,
        timeout: float | None = None,
    ) -> JSON:
        """Set webhook delivery timing in seconds (for all bots); returns the settings.

        ``retry_base``: wait before the first retry (then doubling, up to ``retry_cap``);
        ``timeout``: for connecting and for each read of the answer.
        """
        settings = {"retry_base": retry_base, "retry_cap": retry_cap, "timeout": timeout}
        for name, value in settings.items():
            if value is not None:
                if value <= 0:
                    raise ValueError(f"{name} must be > 0")
                setattr(self, f"webhook_{name}", float(value))
        return {
            "retry_base": self.webhook_retry_base,
            "retry_cap": self.webhook_retry_cap,
            "timeout": self.webhook_timeout,
        }

    @control_op
    def stats(self) -> JSON:
        """Cheap global counters (for benchmarks and health checks)."""
        return {
            "bots": len(self.bots_by_token),
            "users": len(self.users),
            "chats": len(self.chats),
            "active_polls": sum(
                1
                for b in self.bots_by_token.values()
                if b.poller is not None and not b.poller.done()
            ),
            "pending_updates": sum(len(b.pending) for b in self.bots_by_token.values()),
            "sent_messages": sum(len(b.sent) for b in self.bots_by_token.values()),
            "calls_logged": len(self.call_log),
        }

    @control_op
    async def wait_for_sent(
        self, token: str, count: int, chat_id: int | None = None, timeout: float = 10.0
    ) -> list[JSON]:
        """Return the bot's sent messages once at least ``count`` exist (optionally in ``chat_id``)."""
        bot = self.bot(token)

        def current() -> list[JSON]:
            return self.sent_messages(token, chat_id)

        if len(current()) >= count:
            return current()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        bot.sent_waiters.append((count, chat_id, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            got = current()
            texts = [r["text"] for r in got[-3:]]
            where = f" in chat {chat_id}" if chat_id is not None else ""
            raise TimeoutError(
                f"timed out after {timeout}s waiting for {count} message(s) sent by bot {bot.id}{where}; "
                f"got {len(got)} (last: {texts!r})"
            ) from None
        return current()

    @control_op
    async def wait_for_calls(
        self, token: str, method: str, count: int = 1, timeout: float = 10.0
    ) -> int:
        """Wait until the bot has called ``method`` at least ``count`` times in total."""
        bot = self.bot(token)
        key = method.lower()
        if bot.call_counts.get(key, 0) >= count:
            return bot.call_counts[key]
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        bot.call_waiters.append((key, count, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"timed out after {timeout}s waiting for bot {bot.id} to call {method} {count} time(s); "
                f"got {bot.call_counts.get(key, 0)}"
            ) from None
        return bot.call_counts[key]

    @control_op
    def reset(self) -> None:
        """Forget everything (bots, users, chats, queues, faults, records); wakes waiting polls."""
        self.release_waiters()
        self._reset_data()

    def shutdown(self) -> None:
        """Stop accepting long polls and release the waiting ones (server is stopping)."""
        self.closing = True
        self.release_waiters()

    def release_waiters(self) -> None:
        """End every waiting long-poll (answered ``[]``), webhook delivery and control waiter."""
        for bot in self.bots_by_token.values():
            self._stop_webhook(bot)
            if bot.poller is not None and not bot.poller.done():
                bot.poller.set_result("timeout")
            for _c, _chat, fut in bot.sent_waiters:
                if not fut.done():
                    fut.cancel()
            for _m, _n, fut in bot.call_waiters:
                if not fut.done():
                    fut.cancel()


# ---------------------------------------------------------------------- helpers


def json_bytes(payload: Any) -> bytes:
    """Compact UTF-8 JSON, as Telegram sends and answers."""
    # A lone UTF-16 surrogate (a hostile update's text) cannot be UTF-8: send that body
    # with JSON's \uXXXX escapes instead, as a server that escapes non-ASCII would.
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(payload, separators=(",", ":")).encode("ascii")  # \uXXXX escapes


def without_reply(message: JSON) -> JSON:
    """A message as it appears inside ``reply_to_message``/``pinned_message`` (no nesting)."""
    return {k: v for k, v in message.items() if k != "reply_to_message"}


def chat_member(user: JSON, status: str, chat: JSON) -> JSON:
    """A ChatMember object with the fields the Bot API sends for ``status``."""
    body: JSON = {"status": status, "user": dict(user)}
    if status == "kicked":
        body["until_date"] = 0  # 0: banned forever
    elif status == "administrator":
        # The rights Telegram suggests when a bot is made an administrator.
        body.update(
            can_be_edited=False,
            is_anonymous=False,
            can_manage_chat=True,
            can_delete_messages=True,
            can_manage_video_chats=True,
            can_restrict_members=True,
            can_promote_members=False,
            can_change_info=True,
            can_invite_users=True,
            can_post_stories=False,
            can_edit_stories=False,
            can_delete_stories=False,
            can_pin_messages=True,
        )
        if chat["type"] == "supergroup":
            body["can_manage_topics"] = True  # only sent for supergroups
    return body


def _confirmed(update_id: Any, offset: int) -> bool:
    """Below the offset. A hostile update id that is not a number (a test injects one to
    see the bot survive it) counts as below any offset that confirms something."""
    if isinstance(update_id, int) and not isinstance(update_id, bool):
        return update_id < offset
    return offset > 0


def bot_id_from_token(token: str | None) -> int | None:
    """The numeric bot id before the colon, or None for malformed tokens."""
    if not token:
        return None
    head, sep, _ = token.partition(":")
    return int(head) if sep and head.isdigit() else None


def _place_mentions(text: str, inserts: list[tuple[str, str, Entity]]) -> tuple[str, list[Entity]]:
    """Replace ``{bot}``/``{user}`` placeholders by mention texts and build their entities.

    A mention whose placeholder is absent is prepended (``"@bot_name rest of text"``).
    Offsets are computed on the final text, in UTF-16 code units.
    """
    for placeholder, _mention, _entity in reversed(inserts):
        if placeholder not in text:
            text = f"{placeholder} {text}"
    by_placeholder = {placeholder: (mention, entity) for placeholder, mention, entity in inserts}
    out: list[str] = []
    offset16 = 0
    entities: list[Entity] = []
    rest = text
    while True:
        hits = [(rest.find(p), p) for p in by_placeholder if p in rest]
        if not hits:
            break
        index, placeholder = min(hits)
        mention, template = by_placeholder.pop(placeholder)
        before = rest[:index]
        out.append(before)
        offset16 += utf16_len(before)
        length = utf16_len(mention)
        entities.append({**template, "offset": offset16, "length": length})
        out.append(mention)
        offset16 += length
        rest = rest[index + len(placeholder) :]
    out.append(rest)
    return "".join(out), entities
