"""The world the emulator simulates: bots, people, chats, and the messages in them.

Like all emulator state, it lives on the emulator's loop (see ``state.py``).
Ids look like Telegram's: users from 10^8 up, basic groups negative, supergroups
``-100...``; message ids count per chat and per bot (a forum topic's thread id is
the id of its ``forum_topic_created`` message).
"""

from __future__ import annotations

import itertools
import random
import string
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from .._common.ops import control_op

JSON = dict[str, Any]

# The bot's statuses out of a group (my_chat_member ``new_chat_member.status``).
OUT_OF_GROUP = frozenset({"left", "kicked"})


@dataclass
class Bot:
    id: int
    token: str
    username: str
    first_name: str
    # Per group: the bot's status once it changed. No entry means "member", so a group
    # a test merely writes in has the bot in it.
    group_status: dict[int, str] = field(default_factory=dict)
    blocked_by: set[int] = field(default_factory=set)  # users (private chats)
    # Per chat: message id -> message (the bot's and the users' share the counter).
    messages: dict[int, dict[int, JSON]] = field(default_factory=dict)
    next_message_id: dict[int, int] = field(default_factory=dict)
    last_bot_message: dict[int, int] = field(default_factory=dict)
    # Per forum: thread id -> the topic's forum_topic_created message.
    forum_topics: dict[int, dict[int, JSON]] = field(default_factory=dict)
    commands: dict[str, list[JSON]] = field(default_factory=dict)  # setMyCommands, by scope

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
            "can_join_groups": True,
            "can_read_all_group_messages": False,
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


def bot_id_from_token(token: str | None) -> int | None:
    """The number before the colon, or None for a malformed token."""
    head, sep, _ = (token or "").partition(":")
    return int(head) if sep and head.isdigit() else None


def chat_member(user: JSON, status: str, chat: JSON) -> JSON:
    """A ChatMember with the fields the Bot API sends for ``status``."""
    body: JSON = {"status": status, "user": dict(user)}
    if status == "kicked":
        body["until_date"] = 0  # banned for good
    elif status == "administrator":
        body.update(
            {"can_be_edited": False, "is_anonymous": False, "can_manage_chat": True}
            | dict.fromkeys(("can_delete_messages", "can_manage_video_chats"), True)
            | dict.fromkeys(("can_restrict_members", "can_change_info"), True)
            | dict.fromkeys(("can_invite_users", "can_pin_messages"), True)
            | dict.fromkeys(("can_promote_members", "can_post_stories"), False)
            | dict.fromkeys(("can_edit_stories", "can_delete_stories"), False)
        )
        if chat["type"] == "supergroup":
            body["can_manage_topics"] = True
    return body


def without_reply(message: JSON) -> JSON:
    """A message as it appears inside ``reply_to_message`` (no nesting)."""
    return {k: v for k, v in message.items() if k != "reply_to_message"}


class World:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.bots_by_token: dict[str, Bot] = {}
        self.bots_by_id: dict[int, Bot] = {}
        self.users: dict[int, JSON] = {}
        self.chats: dict[int, JSON] = {}
        self.chats_by_username: dict[str, int] = {}
        self.migrated_to: dict[int, int] = {}  # basic group -> its supergroup
        self._next_user_id = 100_000_000 + rng.randint(0, 899_999_999)
        self._next_group_id = 4_000_000_000 + rng.randint(0, 99_999_999)
        self._seq = itertools.count(1)

    # ---- bots

    def new_bot(self, token: str | None, username: str | None, first_name: str | None) -> Bot:
        if token is None:
            new_id = self.rng.randint(5_000_000_000, 8_999_999_999)
            while new_id in self.bots_by_id:
                new_id += 1
            alphabet = string.ascii_letters + string.digits + "_-"
            token = f"{new_id}:AA" + "".join(self.rng.choice(alphabet) for _ in range(33))
        bot_id = bot_id_from_token(token)
        if bot_id is None:
            raise ValueError("token must look like '<bot_id>:<secret>'")
        if bot_id in self.bots_by_id:
            raise ValueError(f"bot id {bot_id} is already registered with another token")
        bot = Bot(
            id=bot_id,
            token=token,
            username=(username or f"emulated_{bot_id}_bot").lstrip("@"),
            first_name=first_name or f"Emulated Bot {next(self._seq)}",
        )
        self.bots_by_token[token] = bot
        self.bots_by_id[bot_id] = bot
        return bot

    def bot(self, token: str) -> Bot:
        bot = self.bots_by_token.get(token)
        if bot is None:
            raise KeyError(f"no bot registered with a token for bot id {bot_id_from_token(token)}")
        return bot

    @control_op
    def bots(self) -> list[JSON]:
        """All registered bots: ``{id, token, username, first_name, user}``."""
        return [bot.info() for bot in self.bots_by_token.values()]

    # ---- people and chats

    @control_op
    def add_user(
        self,
        user_id: int | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        is_bot: bool = False,
    ) -> JSON:
        """Create (or update) a user; its private chat has the same id."""
        if user_id is None:
            user_id = self._next_user_id
            self._next_user_id += self.rng.randint(1, 97)
        user = self.users.get(user_id) or {"id": user_id, "is_bot": is_bot, "first_name": ""}
        seq = next(self._seq)
        user["is_bot"] = is_bot
        user["first_name"] = (
            first_name or user["first_name"] or f"{'Bot' if is_bot else 'User'}{seq}"
        )
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username.lstrip("@")
            self.chats_by_username[user["username"].lower()] = user_id
        self.users[user_id] = user
        names: JSON = {k: user[k] for k in ("first_name", "last_name", "username") if k in user}
        self.chats[user_id] = {"id": user_id, "type": "private", **names}
        return dict(user)

    @control_op
    def add_group(
        self,
        chat_id: int | None = None,
        title: str | None = None,
        chat_type: Literal["group", "supergroup"] = "supergroup",
        username: str | None = None,
        is_forum: bool = False,
    ) -> JSON:
        """Create a group (negative id; a supergroup's starts -100); ``is_forum`` makes a
        supergroup with topics (``create_forum_topic``)."""
        if chat_type not in ("group", "supergroup"):
            raise ValueError("chat_type must be 'group' or 'supergroup'")
        if is_forum and chat_type != "supergroup":
            raise ValueError("only a supergroup can be a forum")
        if chat_id is None:
            self._next_group_id += self.rng.randint(1, 997)
            base = self._next_group_id
            chat_id = -(1_000_000_000_000 + base) if chat_type != "group" else -(base % 10**9 + 1)
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
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

    def user(self, user_id: int | None, **fields: Any) -> JSON:
        """The user, created first if unknown."""
        if user_id is not None and user_id in self.users:
            return self.users[user_id]
        return self.users[self.add_user(user_id=user_id, **fields)["id"]]

    def group(
        self, chat_id: int | None, title: str | None = None, chat_type: Any = "supergroup"
    ) -> JSON:
        """The group, created first if unknown; never one that moved to a supergroup."""
        if chat_id in self.migrated_to:
            raise ValueError(
                f"group {chat_id} was migrated to supergroup {self.migrated_to[chat_id]}; use the new chat id"
            )
        if chat_id is not None and chat_id in self.chats:
            if self.chats[chat_id]["type"] == "private":
                raise ValueError(f"chat {chat_id} is a private chat, not a group")
            return self.chats[chat_id]
        return self.chats[self.add_group(chat_id=chat_id, title=title, chat_type=chat_type)["id"]]

    def resolve_chat(self, ref: Any) -> JSON | None:
        """A chat by id or ``@username``, as the Bot API takes ``chat_id``."""
        if isinstance(ref, str):
            if ref.startswith("@"):
                found = self.chats_by_username.get(ref[1:].lower())
                return self.chats.get(found) if found is not None else None
            ref = int(ref) if ref.lstrip("-").isdigit() else None
        if isinstance(ref, bool) or not isinstance(ref, int):
            return None
        return self.chats.get(ref)

    def require_in_group(self, bot: Bot, chat: JSON) -> None:
        """Refuse to inject into a group the bot is out of: Telegram would deliver nothing."""
        status = bot.group_status.get(chat["id"])
        if chat["type"] != "private" and status in OUT_OF_GROUP:
            raise ValueError(
                f"bot {bot.id} is not in chat {chat['id']} (status {status!r}); add it back with add_bot_to_group"
            )

    # ---- messages

    def message(self, bot: Bot, chat: JSON, sender: JSON, **content: Any) -> JSON:
        """A new message in ``chat`` as ``bot`` sees it, stored under the next id."""
        chat_id = chat["id"]
        message_id = bot.next_message_id.get(chat_id, 1)
        bot.next_message_id[chat_id] = message_id + 1
        message: JSON = {
            "message_id": message_id,
            "from": dict(sender),
            "chat": dict(chat),
            "date": int(time.time()),
        }
        message.update({k: v for k, v in content.items() if v not in (None, [])})
        bot.messages.setdefault(chat_id, {})[message_id] = message
        return message

    def find_message(self, bot: Bot, chat_id: int, message_id: int | None) -> JSON | None:
        return bot.messages.get(chat_id, {}).get(message_id) if message_id else None

    def topic(self, bot: Bot, chat: JSON, thread_id: int) -> JSON | None:
        """The ``forum_topic_created`` message of a thread, if the chat has that topic."""
        return bot.forum_topics.get(chat["id"], {}).get(thread_id)

    def in_topic(self, bot: Bot, chat: JSON, thread_id: int | None) -> JSON:
        """The fields of a user message posted in a forum topic (none for the General topic):
        Telegram makes it a reply to the topic's first message."""
        if thread_id is None:
            return {}
        if not chat.get("is_forum"):
            raise ValueError(
                f"chat {chat['id']} is not a forum; create it with add_group(..., is_forum=True)"
            )
        topic = self.topic(bot, chat, thread_id)
        if topic is None:
            raise LookupError(
                f"no forum topic {thread_id} in chat {chat['id']}; create one with create_forum_topic"
            )
        return {
            "message_thread_id": thread_id,
            "is_topic_message": True,
            "reply_to_message": without_reply(topic),
        }

    def member_update(self, bot: Bot, chat: JSON, actor: JSON, old: str, new: str) -> JSON:
        """A ``my_chat_member`` payload: the bot's status in ``chat`` went from old to new."""
        return {
            "chat": dict(chat),
            "from": dict(actor),
            "date": int(time.time()),
            "old_chat_member": chat_member(bot.user(), old, chat),
            "new_chat_member": chat_member(bot.user(), new, chat),
        }
