"""One emulator's state: the world, the updates and what was sent, behind one facade.

* :class:`~.world.World` – bots, people, chats, the messages in them;
* :class:`~.updates.Updates` – each bot's queue, offsets, long polls, webhook delivery;
* :class:`~.sent.Sent` – what the bots did: calls, messages, edits, chat actions, drafts,
  files.

:class:`EmulatorState` composes them and adds what touches several: registering a
bot, what people do (each injection makes messages in the world and pushes an
update), faults and status. The control operations are the methods marked
``@control_op`` here and in the three parts; the HTTP routes, ``TelegramEmulator``
and ``EmulatorClient`` all come from them (``emulators._common.ops``).

Threading: the state belongs to the emulator's event loop and is only touched
there, so it needs no locks and a long poll can wait on a plain future.
"""

from __future__ import annotations

import base64
import binascii
import enum
import inspect
import math
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .._common.faults import FaultBase, QueuedFault
from .._common.ops import bound_ops, control_op, op_signatures, run_op
from .errors import ApiError
from .sent import Sent
from .text import detected, utf16_len
from .updates import CONFLICT_POLL, Updates
from .world import OUT_OF_GROUP, World, without_reply

JSON = dict[str, Any]

# The colours Telegram allows for a forum topic's icon.
FORUM_ICON_COLORS = (7322096, 16766590, 13338331, 9367192, 16749490, 16478047)


class FaultKind(enum.StrEnum):
    """What the next matching Bot API request(s) answer instead."""

    UNAUTHORIZED = "unauthorized"  # 401
    CONFLICT = "conflict"  # 409, another getUpdates
    TOO_MANY_REQUESTS = "too_many_requests"  # 429, parameters.retry_after and Retry-After
    SERVER_ERROR = "server_error"  # ``status`` 500 (default), 502, 503 or 504
    ERROR = "error"  # any ``status`` (default 400) and ``description``
    HTML = "html"  # a proxy's HTML error page, ``status`` (default 502)
    SLOW = "slow"  # the normal answer after ``delay`` seconds
    DROP_CONNECTION = "drop_connection"  # the socket closes without an answer


_STATUS = {
    FaultKind.UNAUTHORIZED: (401, "Unauthorized"),
    FaultKind.CONFLICT: (409, CONFLICT_POLL),
    FaultKind.SERVER_ERROR: (500, ""),
    FaultKind.ERROR: (400, "Bad Request: emulated error"),
    FaultKind.HTML: (502, "Bad Gateway"),
}
_PHRASES = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True, slots=True)
class Fault(FaultBase):
    """A fault for one bot's requests to ``method`` ("*": any); ``message`` is the
    Bot API's ``description``."""

    _kinds = FaultKind

    kind: FaultKind
    method: str = "*"
    status: int | None = None

    def error(self) -> ApiError:
        """The answer of a fault that is an error."""
        if self.kind is FaultKind.TOO_MANY_REQUESTS:
            retry_after = math.ceil(self.retry_after_seconds())
            return ApiError(
                429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
            )
        status, description = _STATUS[self.kind]
        status = self.status or status
        if self.kind is FaultKind.SERVER_ERROR:
            description = _PHRASES.get(status, _PHRASES[500])
        return ApiError(status, self.message or description)

    def to_dict(self) -> JSON:
        return {**FaultBase.to_dict(self), "method": self.method, "status": self.status}


class EmulatorState:
    _parts: ClassVar[tuple[type, ...]] = (World, Updates, Sent)

    def __init__(
        self,
        *,
        seed: int | None = None,
        call_log_size: int = 100_000,
        webhook_retry_base: float = 0.5,
    ) -> None:
        rng = random.Random(seed)
        self.rng = rng
        self.world = World(rng)
        self.updates = Updates(
            rng, lambda token: self.world.bot(token).id, retry_base=webhook_retry_base
        )
        self.sent = Sent(rng, lambda token: self.world.bot(token).id, call_log_size)
        self.faults: dict[str, deque[QueuedFault[Fault]]] = {}  # token -> its faults, in order
        self.ops = bound_ops(self, self.world, self.updates, self.sent)

    @classmethod
    def op_signatures(cls) -> dict[str, inspect.Signature]:
        return op_signatures(cls, *cls._parts)

    async def call(self, op: str, kwargs: dict[str, Any]) -> Any:
        return await run_op(self.ops, op, kwargs)

    def shutdown(self) -> None:
        """The server is stopping: answer waiting long polls, end deliveries and waits."""
        self.updates.shutdown()
        self.sent.release()

    # ---------------------------------------------------------------- bots

    @control_op
    def add_bot(
        self, token: str | None = None, username: str | None = None, first_name: str | None = None
    ) -> JSON:
        """Register a bot (with a realistic token if none is given); a known token is left
        as it is. Returns ``{id, token, username, first_name, user}``."""
        if token is not None and token in self.world.bots_by_token:
            return self.world.bots_by_token[token].info()
        bot = self.world.new_bot(token, username, first_name)
        self.updates.open(bot.id)
        self.sent.open(bot.id)
        return bot.info()

    @control_op
    def bot_status(self, token: str) -> JSON:
        """``{id, pending_update_count, polling, webhook_url, webhook_in_flight,
        webhook_last_error_date, webhook_last_error_message, next_update_id, sent_count, blocked_by}``."""
        bot = self.world.bot(token)
        queue = self.updates.queues[bot.id]
        error_date, error_message = queue.last_error or (None, None)
        return {
            "id": bot.id,
            "pending_update_count": len(queue.pending),
            "polling": queue.polling(),
            "webhook_url": (queue.webhook or {}).get("url", ""),
            "webhook_in_flight": len(queue.in_flight),
            "webhook_last_error_date": error_date,
            "webhook_last_error_message": error_message,
            "next_update_id": queue.next_update_id,
            "sent_count": len(self.sent.logs[bot.id].messages),
            "blocked_by": sorted(bot.blocked_by),
        }

    @control_op
    def stats(self) -> JSON:
        """Global counters (benchmarks)."""
        queues = self.updates.queues.values()
        return {
            "bots": len(self.world.bots_by_token),
            "users": len(self.world.users),
            "chats": len(self.world.chats),
            "active_polls": sum(q.polling() for q in queues),
            "pending_updates": sum(len(q.pending) for q in queues),
            "sent_messages": sum(len(log.messages) for log in self.sent.logs.values()),
            "calls_logged": len(self.sent.calls_log),
        }

    # ---------------------------------------------------------------- faults

    @control_op
    def add_fault(
        self,
        token: str,
        kind: str,
        method: str = "*",
        times: int | None = 1,
        status: int | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
        description: str | None = None,
    ) -> JSON:
        """Make the bot's next ``times`` requests to ``method`` ("*": any; None: until
        cleared) fail as ``kind`` (:class:`FaultKind`), in the order faults were added."""
        fault = Fault(
            FaultKind(kind),
            times=times,
            retry_after=retry_after,
            delay=delay,
            message=description,
            method=(method or "*").lower(),
            status=status,
        )
        self.faults.setdefault(token, deque()).append(QueuedFault(fault, times))
        return fault.to_dict()

    @control_op
    def clear_faults(self, token: str | None = None) -> int:
        """Drop the queued faults of one bot (or all); returns how many."""
        if token is not None:
            return len(self.faults.pop(token, ()))
        dropped = sum(len(queue) for queue in self.faults.values())
        self.faults.clear()
        return dropped

    def take_fault(self, token: str, method: str) -> Fault | None:
        """The first fault queued for this request, one use of it consumed."""
        queue = self.faults.get(token)
        if queue is None:
            return None
        for entry in queue:
            if entry.fault.method in ("*", method.lower()):
                if entry.use():
                    queue.remove(entry)
                return entry.fault
        return None

    # ---------------------------------------------------------------- what people do

    def _message(
        self,
        token: str,
        chat: JSON,
        sender: JSON,
        text: str | None = None,
        entities: list[JSON] | None = None,
        **content: Any,
    ) -> JSON:
        """A user message in ``chat``, pushed as a ``message`` update."""
        bot = self.world.bot(token)
        if text is not None:
            content.update(text=text, entities=detected(text, entities))
        message = self.world.message(bot, chat, sender, **content)
        return self.updates.push(bot.id, "message", message)

    @control_op
    def send_private_message(
        self,
        token: str,
        text: str,
        user_id: int | None = None,
        first_name: str | None = None,
        username: str | None = None,
        entities: list[JSON] | None = None,
    ) -> JSON:
        """A user writes to the bot in their private chat (made if new); returns the update.
        Writing to a bot one blocked unblocks it first, as restarting it does."""
        bot = self.world.bot(token)
        user = self.world.user(user_id, first_name=first_name, username=username)
        if user["id"] in bot.blocked_by:
            bot.blocked_by.discard(user["id"])
            chat = self.world.chats[user["id"]]
            self.updates.push(
                bot.id,
                "my_chat_member",
                self.world.member_update(bot, chat, user, "kicked", "member"),
            )
        return self._message(token, self.world.chats[user["id"]], user, text, entities)

    @control_op
    def send_group_message(
        self,
        token: str,
        text: str,
        chat_id: int | None = None,
        user_id: int | None = None,
        mention_bot: Literal["username", "text_mention"] | None = None,
        first_name: str | None = None,
        message_thread_id: int | None = None,
        entities: list[JSON] | None = None,
    ) -> JSON:
        """A user writes in a group (made if new; in a forum topic with ``message_thread_id``).

        ``mention_bot`` mentions the bot where ``{bot}`` stands in ``text`` (else first):
        ``"username"`` as ``@name`` (a ``mention``), ``"text_mention"`` as its first name
        carrying the bot user. ``entities`` (UTF-16 offsets in the final text) are added.
        """
        bot = self.world.bot(token)
        chat = self.world.group(chat_id)
        self.world.require_in_group(bot, chat)
        topic = self.world.in_topic(bot, chat, message_thread_id)
        user = self.world.user(user_id, first_name=first_name)
        entities = list(entities or [])
        if mention_bot is not None:
            if mention_bot not in ("username", "text_mention"):
                raise ValueError("mention_bot must be 'username' or 'text_mention'")
            mention = "@" + bot.username if mention_bot == "username" else bot.first_name
            entity: JSON = (
                {"type": "mention"}
                if mention_bot == "username"
                else {"type": "text_mention", "user": bot.user()}
            )
            if "{bot}" not in text:
                text = "{bot} " + text
            before, _, after = text.partition("{bot}")
            text = before + mention + after
            entities.append({**entity, "offset": utf16_len(before), "length": utf16_len(mention)})
        return self._message(token, chat, user, text, entities, **topic)

    @control_op
    def send_command(
        self,
        token: str,
        command: str = "start",
        args: str | None = None,
        chat_id: int | None = None,
        user_id: int | None = None,
        with_bot_username: bool | None = None,
    ) -> JSON:
        """``/command [args]`` with its ``bot_command`` entity, privately (``chat_id`` None
        or the user's) or in a group, where it is ``/command@botname`` unless
        ``with_bot_username=False``."""
        bot = self.world.bot(token)
        is_group = chat_id is not None and chat_id < 0
        suffix = (
            f"@{bot.username}"
            if (is_group if with_bot_username is None else with_bot_username)
            else ""
        )
        command_text = f"/{command.lstrip('/')}{suffix}"
        text = f"{command_text} {args}" if args else command_text
        entity = {"type": "bot_command", "offset": 0, "length": utf16_len(command_text)}
        if is_group:
            return self.send_group_message(
                token, text, chat_id=chat_id, user_id=user_id, entities=[entity]
            )
        return self.send_private_message(token, text, user_id=chat_id or user_id, entities=[entity])

    @control_op
    def send_bot_message(self, token: str, text: str, chat_id: int | None = None) -> JSON:
        """Another bot (``from.is_bot``) writes in a group."""
        sender = self.world.add_user(is_bot=True)
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
        """A user replies to one of the bot's messages (default: its last one in the chat),
        in the topic of that message."""
        bot = self.world.bot(token)
        message_id = message_id or bot.last_bot_message.get(chat_id)
        target = self.world.find_message(bot, chat_id, message_id)
        if target is None:
            raise LookupError(f"no bot message {message_id} in chat {chat_id} for bot {bot.id}")
        chat = self.world.chats[chat_id]
        self.world.require_in_group(bot, chat)
        user = self.world.users[chat_id] if chat["type"] == "private" else self.world.user(user_id)
        topic = (
            {"message_thread_id": target["message_thread_id"], "is_topic_message": True}
            if target.get("is_topic_message")
            else {}
        )
        return self._message(
            token, chat, user, text, reply_to_message=without_reply(target), **topic
        )

    @control_op
    def edit_message(self, token: str, chat_id: int, message_id: int, text: str) -> JSON:
        """A user edits their text message: an ``edited_message`` update with ``edit_date``."""
        bot = self.world.bot(token)
        message = self.world.find_message(bot, chat_id, message_id)
        if message is None or "text" not in message or message["from"].get("id") == bot.id:
            raise LookupError(
                f"no text message {message_id} of a user in chat {chat_id} for bot {bot.id}"
            )
        self.world.require_in_group(bot, self.world.chats[chat_id])
        entities = detected(text)
        message.pop("entities", None)
        message.update(
            text=text, edit_date=int(time.time()), **({"entities": entities} if entities else {})
        )
        return self.updates.push(bot.id, "edited_message", message)

    @control_op
    def send_media(
        self,
        token: str,
        kind: str = "photo",
        chat_id: int | None = None,
        user_id: int | None = None,
        caption: str | None = None,
        size: int | None = None,
        mime_type: str | None = None,
        content: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> JSON:
        """A user sends media (photo, sticker, voice, audio, document, video, animation,
        video_note), privately or in a group (negative ``chat_id``), with an optional caption,
        optionally replying to a message of the chat. Its file is ``size`` fake bytes or
        exactly ``content`` (base64), for getFile and the file URL."""
        try:
            data = None if content is None else base64.b64decode(content, validate=True)
        except (binascii.Error, TypeError):
            raise ValueError("content must be a base64 string") from None
        bot = self.world.bot(token)
        if chat_id is not None and chat_id < 0:
            chat = self.world.group(chat_id)
            self.world.require_in_group(bot, chat)
            user = self.world.user(user_id)
        else:
            user = self.world.user(chat_id or user_id)
            chat = self.world.chats[user["id"]]
        fields: JSON = {kind: self.sent.media(bot.id, kind, size, mime_type, data)}
        if caption is not None:
            if kind in ("sticker", "video_note"):
                raise ValueError(f"a {kind} has no caption")
            fields.update(caption=caption, caption_entities=detected(caption))
        if reply_to_message_id is not None:
            target = self.world.find_message(bot, chat["id"], reply_to_message_id)
            if target is None:
                raise LookupError(
                    f"no message {reply_to_message_id} in chat {chat['id']} for bot {bot.id}"
                )
            fields["reply_to_message"] = without_reply(target)
        return self._message(token, chat, user, **fields)

    @control_op
    def send_service_message(
        self,
        token: str,
        chat_id: int | None = None,
        kind: str = "new_chat_members",
        user_id: int | None = None,
    ) -> JSON:
        """A service message in a group: ``new_chat_members`` (a new user joined),
        ``left_chat_member`` or ``new_chat_title``."""
        bot = self.world.bot(token)
        chat = self.world.group(chat_id)
        self.world.require_in_group(bot, chat)
        actor = self.world.user(user_id)
        if kind == "new_chat_members":
            fields: JSON = {"new_chat_members": [dict(self.world.user(None))]}
        elif kind == "left_chat_member":
            fields = {"left_chat_member": dict(self.world.user(None))}
        elif kind == "new_chat_title":
            chat["title"] = f"{chat['title']} (renamed)"
            fields = {"new_chat_title": chat["title"]}
        else:
            raise ValueError(f"unsupported service message kind {kind!r}")
        return self._message(token, chat, actor, **fields)

    @control_op
    def block_bot(self, token: str, user_id: int, notify: bool = True) -> JSON | None:
        """The user blocks the bot: sends to them get 403 (until they write again);
        a ``my_chat_member`` update unless ``notify`` is false."""
        bot = self.world.bot(token)
        user = self.world.user(user_id)
        if user["id"] in bot.blocked_by:
            return None
        bot.blocked_by.add(user["id"])
        if not notify:
            return None
        update = self.world.member_update(
            bot, self.world.chats[user["id"]], user, "member", "kicked"
        )
        return self.updates.push(bot.id, "my_chat_member", update)

    def _membership(
        self, token: str, chat_id: int | None, status: str, user_id: int | None, default: str
    ) -> tuple[JSON | None, str]:
        """Set the bot's status in a group; the my_chat_member update (None: no change)."""
        bot = self.world.bot(token)
        chat = self.world.group(chat_id)
        before = bot.group_status.get(chat["id"], default)
        if before == status:
            return None, before
        bot.group_status[chat["id"]] = status
        update = self.world.member_update(bot, chat, self.world.user(user_id), before, status)
        return self.updates.push(bot.id, "my_chat_member", update), before

    @control_op
    def remove_bot_from_group(
        self, token: str, chat_id: int, user_id: int | None = None, kicked: bool = True
    ) -> JSON | None:
        """A user removes the bot from a group (``kicked``, or ``left``): ``my_chat_member``,
        and sends to the chat get 403. None if it was out already."""
        status = self.world.bot(token).group_status.get(chat_id)
        if status in OUT_OF_GROUP:
            return None
        return self._membership(token, chat_id, "kicked" if kicked else "left", user_id, "member")[
            0
        ]

    @control_op
    def add_bot_to_group(
        self,
        token: str,
        chat_id: int | None = None,
        status: Literal["member", "administrator"] = "member",
        user_id: int | None = None,
    ) -> JSON | None:
        """A user adds the bot to a group (or promotes it): ``my_chat_member``, and the
        ``new_chat_members`` message when it joins. None if the status does not change."""
        if status not in ("member", "administrator"):
            raise ValueError("status must be 'member' or 'administrator'")
        update, before = self._membership(token, chat_id, status, user_id, "left")
        if update is not None and before in OUT_OF_GROUP:
            chat = self.world.chats[update["my_chat_member"]["chat"]["id"]]
            actor = update["my_chat_member"]["from"]
            self._message(token, chat, actor, new_chat_members=[self.world.bot(token).user()])
        return update

    @control_op
    def create_forum_topic(
        self, token: str, chat_id: int, name: str, user_id: int | None = None
    ) -> int:
        """A user opens a topic in a forum; returns its ``message_thread_id`` (the id of its
        ``forum_topic_created`` message, as on Telegram)."""
        bot = self.world.bot(token)
        chat = self.world.group(chat_id)
        if not chat.get("is_forum"):
            raise ValueError(
                f"chat {chat_id} is not a forum; create it with add_group(..., is_forum=True)"
            )
        self.world.require_in_group(bot, chat)
        # Thread 1 is the General topic: a created topic never gets it.
        bot.next_message_id[chat_id] = max(bot.next_message_id.get(chat_id, 1), 2)
        created = {"name": name, "icon_color": self.rng.choice(FORUM_ICON_COLORS)}
        message = self.world.message(
            bot, chat, self.world.user(user_id), forum_topic_created=created
        )
        message.update(message_thread_id=message["message_id"], is_topic_message=True)
        bot.forum_topics.setdefault(chat_id, {})[message["message_id"]] = message
        self.updates.push(bot.id, "message", message)
        return int(message["message_id"])

    @control_op
    def migrate_group(self, token: str, chat_id: int, user_id: int | None = None) -> int:
        """A basic group becomes a supergroup; returns the new chat id. Pushes Telegram's two
        service messages (``migrate_to_chat_id`` in the old, ``migrate_from_chat_id`` in the
        new); sends to the old id then get 400 with ``parameters.migrate_to_chat_id``."""
        bot = self.world.bot(token)
        old = self.world.chats.get(chat_id)
        if old is None or old["type"] != "group" or chat_id in self.world.migrated_to:
            raise ValueError(f"chat {chat_id} is not a basic group (or was migrated already)")
        self.world.require_in_group(bot, old)
        new = self.world.chats[self.world.add_group(title=old["title"])["id"]]
        self.world.migrated_to[chat_id] = new["id"]
        if chat_id in bot.group_status:  # an administrator stays one
            bot.group_status[new["id"]] = bot.group_status[chat_id]
        actor = self.world.user(user_id)
        self._message(token, old, actor, migrate_to_chat_id=new["id"])
        self._message(token, new, actor, migrate_from_chat_id=chat_id)
        return int(new["id"])
