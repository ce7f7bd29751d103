"""Synchronous control-API surface shared by the in-process emulator and the HTTP client.

:class:`ControlAPI` declares every control operation once, with types and docs;
subclasses only implement :meth:`ControlAPI._invoke` (run on the emulator loop, or
POST to ``/_emulator/<op>``). The behaviour itself lives in
:class:`~.state.EmulatorState`; a test asserts the two lists of operations match.
"""

from __future__ import annotations

from typing import Any, Literal

JSON = dict[str, Any]


class ControlAPI:
    """Typed, blocking wrappers around :class:`~.state.EmulatorState` control operations."""

    def _invoke(self, op: str, kwargs: dict[str, Any], *, timeout: float | None = None) -> Any:
        raise NotImplementedError

    # ---------------------------------------------------------------- setup

    def add_bot(
        self,
        token: str | None = None,
        username: str | None = None,
        first_name: str | None = None,
        can_join_groups: bool = True,
        can_read_all_group_messages: bool = False,
    ) -> JSON:
        """Register a bot; returns ``{id, token, username, first_name, user}``."""
        return self._invoke("add_bot", _args(locals()))

    def bots(self) -> list[JSON]:
        """All registered bots."""
        return self._invoke("bots", {})

    def bot_status(self, token: str) -> JSON:
        """``{id, pending_update_count, polling, webhook_url, webhook_in_flight,
        webhook_last_error_date, webhook_last_error_message, next_update_id, sent_count, blocked_by}``."""
        return self._invoke("bot_status", _args(locals()))

    def add_user(
        self,
        user_id: int | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        is_bot: bool = False,
        language_code: str | None = None,
    ) -> JSON:
        """Create/update a user (its private chat id == user id); returns the User dict."""
        return self._invoke("add_user", _args(locals()))

    def add_group(
        self,
        chat_id: int | None = None,
        title: str | None = None,
        chat_type: Literal["group", "supergroup", "channel"] = "supergroup",
        username: str | None = None,
        is_forum: bool = False,
    ) -> JSON:
        """Create a group chat (negative id; ``is_forum`` for a supergroup with topics); returns the Chat dict."""
        return self._invoke("add_group", _args(locals()))

    # ---------------------------------------------------------------- injections

    def send_private_message(
        self,
        token: str,
        text: str,
        user_id: int | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        entities: list[JSON] | None = None,
    ) -> JSON:
        """A user writes to the bot privately; returns the Update dict."""
        return self._invoke("send_private_message", _args(locals()))

    def send_group_message(
        self,
        token: str,
        text: str,
        chat_id: int | None = None,
        user_id: int | None = None,
        mention_bot: Literal["username", "text_mention"] | None = None,
        text_mention_user_id: int | None = None,
        entities: list[JSON] | None = None,
        title: str | None = None,
        chat_type: Literal["group", "supergroup"] = "supergroup",
        first_name: str | None = None,
        username: str | None = None,
        message_thread_id: int | None = None,
    ) -> JSON:
        """A user writes in a group (or a forum topic), optionally mentioning the bot (``{bot}``/``{user}`` placeholders)."""
        return self._invoke("send_group_message", _args(locals()))

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
        """``/command`` with a ``bot_command`` entity (``/command@bot`` in groups; optionally in a forum topic)."""
        return self._invoke("send_command", _args(locals()))

    def send_bot_message(
        self,
        token: str,
        text: str,
        chat_id: int | None = None,
        sender_id: int | None = None,
        sender_username: str | None = None,
    ) -> JSON:
        """Another bot writes in a group (``from.is_bot`` true)."""
        return self._invoke("send_bot_message", _args(locals()))

    def reply_to_bot(
        self,
        token: str,
        chat_id: int,
        text: str,
        message_id: int | None = None,
        user_id: int | None = None,
    ) -> JSON:
        """A user replies to a bot message (default: the bot's last one in the chat)."""
        return self._invoke("reply_to_bot", _args(locals()))

    def edit_message(self, token: str, chat_id: int, message_id: int, text: str) -> JSON:
        """A user edits their message: ``edited_message`` update with ``edit_date``."""
        return self._invoke("edit_message", _args(locals()))

    def send_media(
        self,
        token: str,
        kind: str = "photo",
        chat_id: int | None = None,
        user_id: int | None = None,
        caption: str | None = None,
        message_thread_id: int | None = None,
        size: int | None = None,
        mime_type: str | None = None,
        content: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> JSON:
        """Photo/sticker/voice/document/video/audio/animation/video_note/location message; its
        file has ``size`` fake bytes or exactly ``content`` (base64), fetchable via getFile;
        optionally a reply to ``reply_to_message_id``."""
        return self._invoke("send_media", _args(locals()))

    def send_service_message(
        self,
        token: str,
        chat_id: int | None = None,
        kind: str = "new_chat_members",
        user_ids: list[int] | None = None,
        include_bot: bool = False,
        title: str | None = None,
        user_id: int | None = None,
        message_id: int | None = None,
    ) -> JSON:
        """Service message (new_chat_members, left_chat_member, new_chat_title, ...)."""
        return self._invoke("send_service_message", _args(locals()))

    def press_button(
        self,
        token: str,
        chat_id: int,
        data: str,
        message_id: int | None = None,
        user_id: int | None = None,
    ) -> JSON:
        """Inline button press: ``callback_query`` update."""
        return self._invoke("press_button", _args(locals()))

    def inject_update(self, token: str, update: JSON) -> JSON:
        """Queue any update body; ``update_id`` is assigned by the emulator."""
        return self._invoke("inject_update", _args(locals()))

    def redeliver_update(self, token: str, update: JSON) -> JSON:
        """Queue a delivered update again with its own update_id (an unconfirmed offset)."""
        return self._invoke("redeliver_update", _args(locals()))

    def block_bot(self, token: str, user_id: int, notify: bool = True) -> JSON | None:
        """User blocks the bot (sends to them then fail with 403)."""
        return self._invoke("block_bot", _args(locals()))

    def unblock_bot(self, token: str, user_id: int, notify: bool = True) -> JSON | None:
        """User unblocks the bot."""
        return self._invoke("unblock_bot", _args(locals()))

    def remove_bot_from_group(
        self, token: str, chat_id: int, user_id: int | None = None, kicked: bool = True
    ) -> JSON | None:
        """The bot is removed from a group (``kicked``, or ``left``): my_chat_member; sends then get 403."""
        return self._invoke("remove_bot_from_group", _args(locals()))

    def add_bot_to_group(
        self,
        token: str,
        chat_id: int | None = None,
        status: Literal["member", "administrator"] = "member",
        user_id: int | None = None,
    ) -> JSON | None:
        """The bot is added to (or promoted in) a group: my_chat_member (+ new_chat_members on joining)."""
        return self._invoke("add_bot_to_group", _args(locals()))

    def create_forum_topic(
        self,
        token: str,
        chat_id: int,
        name: str,
        user_id: int | None = None,
        icon_color: int | None = None,
    ) -> int:
        """A user creates a forum topic (``forum_topic_created`` message); returns its message_thread_id."""
        return self._invoke("create_forum_topic", _args(locals()))

    def migrate_group(self, token: str, chat_id: int, user_id: int | None = None) -> int:
        """A basic group is upgraded to a supergroup (two service messages); returns the new chat id."""
        return self._invoke("migrate_group", _args(locals()))

    def jump_update_id(self, token: str, by: int | None = None, to: int | None = None) -> int:
        """Make the next update_id jump; returns the new next update_id."""
        return self._invoke("jump_update_id", _args(locals()))

    # ---------------------------------------------------------------- faults

    def add_fault(
        self,
        token: str,
        kind: str,
        method: str = "*",
        times: int = 1,
        status: int | None = None,
        retry_after: int | None = None,
        delay: float | None = None,
        description: str | None = None,
    ) -> JSON:
        """Queue a fault: unauthorized/conflict/too_many_requests/server_error/slow/drop/error."""
        return self._invoke("add_fault", _args(locals()))

    def clear_faults(self, token: str | None = None) -> int:
        """Drop queued faults (of one bot or all)."""
        return self._invoke("clear_faults", _args(locals()))

    def pending_faults(self, token: str) -> list[JSON]:
        """Faults still queued for a bot."""
        return self._invoke("pending_faults", _args(locals()))

    # ---------------------------------------------------------------- records

    def sent_messages(self, token: str, chat_id: int | None = None) -> list[JSON]:
        """Messages the bot sent: ``{chat_id, message_id, text, parse_mode, entities, reply_to_message_id, message_thread_id, time, ...}``."""
        return self._invoke("sent_messages", _args(locals()))

    def chat_actions(self, token: str, chat_id: int | None = None) -> list[JSON]:
        """sendChatAction records ``{bot_id, chat_id, action, message_thread_id, time}``."""
        return self._invoke("chat_actions", _args(locals()))

    def drafts(self, token: str, chat_id: int | None = None) -> list[JSON]:
        """sendMessageDraft records ``{chat_id, draft_id, text, entities, parse_mode, message_thread_id, at}``."""
        return self._invoke("drafts", _args(locals()))

    def file_downloads(self, token: str) -> list[JSON]:
        """File downloads of the bot ``{file_id, file_path, bytes, at}``."""
        return self._invoke("file_downloads", _args(locals()))

    def calls(
        self, token: str | None = None, method: str | None = None, limit: int | None = None
    ) -> list[JSON]:
        """Bot API call log ``{method, bot_id, time, params, status, fault}``."""
        return self._invoke("calls", _args(locals()))

    def updates(self, token: str) -> list[JSON]:
        """Injected updates with ``injected_at``/``delivered_at`` times."""
        return self._invoke("updates", _args(locals()))

    def webhook_deliveries(self, token: str) -> list[JSON]:
        """Webhook delivery attempts ``{update_id, url, status, error, at}`` (status None: no answer)."""
        return self._invoke("webhook_deliveries", _args(locals()))

    def configure_webhooks(
        self,
        retry_base: float | None = None,
        retry_cap: float | None = None,
        timeout: float | None = None,
    ) -> JSON:
        """Webhook timing in seconds: first retry delay (doubling up to ``retry_cap``), request timeout."""
        return self._invoke("configure_webhooks", _args(locals()))

    def stats(self) -> JSON:
        """Global counters."""
        return self._invoke("stats", {})

    def wait_for_sent(
        self, token: str, count: int, chat_id: int | None = None, timeout: float = 10.0
    ) -> list[JSON]:
        """Block until the bot sent ``count`` messages (in ``chat_id``); TimeoutError otherwise."""
        return self._invoke("wait_for_sent", _args(locals()), timeout=timeout + 10)

    def wait_for_calls(self, token: str, method: str, count: int = 1, timeout: float = 10.0) -> int:
        """Block until the bot called ``method`` ``count`` times in total; TimeoutError otherwise."""
        return self._invoke("wait_for_calls", _args(locals()), timeout=timeout + 10)

    def reset(self) -> None:
        """Forget all bots, users, chats, queues, faults and records."""
        return self._invoke("reset", {})


def _args(local_vars: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of the calling wrapper (minus ``self``)."""
    return {k: v for k, v in local_vars.items() if k != "self"}
