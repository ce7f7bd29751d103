"""The Bot API methods Botfleet (and its benchmark peer) call, as ``/bot<token>/<method>``:
getMe, getUpdates, sendMessage, sendMessageDraft, editMessageText, getFile,
sendChatAction, setWebhook, deleteWebhook, getWebhookInfo, setMyCommands and
getMyCommands (the table at the bottom).

Each takes ``(state, bot, params)`` (parameters decoded by the server) and returns the
``result`` or raises :class:`~.errors.ApiError` with Telegram's words. Any other
method answers 404, as Telegram does for a method it does not know.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import text
from .errors import ApiError, bad_request, forbidden
from .world import Bot, without_reply

if TYPE_CHECKING:
    from .state import EmulatorState

JSON = dict[str, Any]
Method = Callable[["EmulatorState", Bot, JSON], Any | Awaitable[Any]]

CHAT_ACTIONS = frozenset(
    {
        *("typing", "upload_photo", "record_video", "upload_video", "record_voice"),
        *("upload_voice", "upload_document", "choose_sticker", "find_location"),
        *("record_video_note", "upload_video_note"),
    }
)
SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{0,256}")


def _int(params: JSON, name: str, default: int | None = None) -> int | None:
    value = params.get(name, default)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise bad_request(f"invalid {name} specified")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"invalid {name} specified") from None


def _bool(params: JSON, name: str) -> bool:
    value = params.get(name)
    return value.lower() in ("true", "1") if isinstance(value, str) else bool(value)


def _chat(state: EmulatorState, params: JSON) -> JSON:
    if params.get("chat_id") in (None, ""):
        raise bad_request("chat_id is empty")
    chat = state.world.resolve_chat(params["chat_id"])
    if chat is None:
        raise bad_request("chat not found")
    return chat


def _writable_chat(state: EmulatorState, bot: Bot, params: JSON) -> JSON:
    """The ``chat_id`` chat, if the bot may write there; else Telegram's refusal."""
    chat = _chat(state, params)
    if chat["type"] == "private":
        if chat["id"] in bot.blocked_by:
            raise forbidden("bot was blocked by the user")
        if state.world.users.get(chat["id"], {}).get("is_bot"):
            raise forbidden("bot can't send messages to bots")
        return chat
    new_id = state.world.migrated_to.get(chat["id"])
    if new_id is not None:  # python-telegram-bot raises ChatMigrated
        raise ApiError(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            {"migrate_to_chat_id": new_id},
        )
    status = bot.group_status.get(chat["id"])
    if status == "kicked":
        raise forbidden(f"bot was kicked from the {chat['type']} chat")
    if status == "left":
        raise forbidden(f"bot is not a member of the {chat['type']} chat")
    return chat


def _text(params: JSON, *, required: bool) -> tuple[str, list[JSON]]:
    raw = params.get("text")
    try:
        stored = (
            text.stored(str(raw), params.get("entities")) if raw not in (None, "") else ("", [])
        )
    except text.TextError as exc:
        raise bad_request(str(exc)) from None
    if required and not stored[0]:
        raise bad_request("message text is empty")
    if text.utf16_len(stored[0]) > text.MAX_MESSAGE_LENGTH:
        raise bad_request("message is too long")
    return stored


def _reply_to(state: EmulatorState, bot: Bot, chat: JSON, params: JSON) -> JSON | None:
    """The message ``reply_parameters`` (or the older ``reply_to_message_id``) names."""
    reply = params.get("reply_parameters")
    if isinstance(reply, dict):
        message_id, allow_without = (
            reply.get("message_id"),
            bool(reply.get("allow_sending_without_reply")),
        )
    else:
        message_id, allow_without = (
            params.get("reply_to_message_id"),
            _bool(params, "allow_sending_without_reply"),
        )
    if message_id in (None, "", 0):
        return None
    try:
        target = state.world.find_message(bot, chat["id"], int(message_id))
    except (TypeError, ValueError):
        raise bad_request("invalid reply_to_message_id specified") from None
    if target is None and not allow_without:
        raise bad_request("message to be replied not found")
    return without_reply(target) if target else None


def _thread(
    state: EmulatorState, bot: Bot, chat: JSON, params: JSON, reply_to: JSON | None
) -> JSON:
    """``message_thread_id``/``is_topic_message`` of a bot message. In a forum the topic
    must exist, a reply goes to the topic of what it answers, and a message replying to
    nothing replies to the topic's first message, as Telegram shows it."""
    thread_id = _int(params, "message_thread_id") or None
    if not chat.get("is_forum"):
        return {"message_thread_id": thread_id} if thread_id else {}
    if thread_id is None and reply_to is not None and reply_to.get("is_topic_message"):
        thread_id = reply_to["message_thread_id"]
    if thread_id is None:
        return {}
    topic = state.world.topic(bot, chat, thread_id)
    if topic is None:
        raise bad_request("message thread not found")
    fields: JSON = {"message_thread_id": thread_id, "is_topic_message": True}
    if reply_to is None:
        fields["reply_to_message"] = without_reply(topic)
    return fields


# ---------------------------------------------------------------------- methods


def get_me(state: EmulatorState, bot: Bot, params: JSON) -> JSON:
    return bot.me()


async def get_updates(state: EmulatorState, bot: Bot, params: JSON) -> list[JSON]:
    try:
        timeout = max(float(params.get("timeout") or 0), 0.0)
    except (TypeError, ValueError):
        raise bad_request("invalid timeout specified") from None
    return await state.updates.get_updates(
        bot.id,
        offset=_int(params, "offset", 0) or 0,
        limit=min(max(_int(params, "limit", 100) or 100, 1), 100),
        timeout=timeout,
        allowed=params.get("allowed_updates"),
    )


def send_message(state: EmulatorState, bot: Bot, params: JSON) -> JSON:
    chat = _writable_chat(state, bot, params)
    body, entities = _text(params, required=True)
    reply_to = _reply_to(state, bot, chat, params)
    content: JSON = {**_thread(state, bot, chat, params, reply_to), "reply_to_message": reply_to}
    preview = params.get("link_preview_options")
    message = state.world.message(
        bot,
        chat,
        bot.user(),
        **content,
        text=body,
        entities=entities,
        link_preview_options=preview if isinstance(preview, dict) and preview else None,
    )
    bot.last_bot_message[chat["id"]] = message["message_id"]
    state.sent.message(bot.id, message, "sendMessage")
    return message


def send_message_draft(state: EmulatorState, bot: Bot, params: JSON) -> bool:
    """A reply shown while it is written, in a private chat only; no message. No text
    shows "Thinking...". The errors are those Telegram's servers give."""
    if _chat(state, params)["type"] != "private":
        raise bad_request("TEXTDRAFT_PEER_INVALID")
    chat = _writable_chat(state, bot, params)
    draft_id = _int(params, "draft_id")
    if not draft_id:
        raise bad_request("RANDOM_ID_INVALID")
    body, entities = _text(params, required=False)
    state.sent.draft(
        bot.id, chat["id"], draft_id, body, entities, _int(params, "message_thread_id")
    )
    return True


def edit_message_text(state: EmulatorState, bot: Bot, params: JSON) -> JSON:
    """A new text (and entities) for one of the bot's messages, with ``edit_date``; the
    edited message is the result. ``inline_message_id`` is not emulated; the topic
    (``message_thread_id``) is the message's own. The errors are Telegram's."""
    body, entities = _text(params, required=True)
    message_id = _int(params, "message_id")
    if not message_id:
        raise bad_request("message identifier is not specified")
    chat = _writable_chat(state, bot, params)
    message = state.world.find_message(bot, chat["id"], message_id)
    if message is None:
        raise bad_request("message to edit not found")
    if message["from"].get("id") != bot.id or "text" not in message:
        raise bad_request("message can't be edited")
    if message["text"] == body and message.get("entities", []) == entities:
        raise bad_request(
            "message is not modified: specified new message content and reply markup are"
            " exactly the same as a current content and reply markup of the message"
        )
    message.pop("entities", None)
    message.update(
        text=body, edit_date=int(time.time()), **({"entities": entities} if entities else {})
    )
    state.sent.edited(bot.id, message)
    return dict(message)


def get_file(state: EmulatorState, bot: Bot, params: JSON) -> JSON:
    return state.sent.get_file(bot.id, str(params.get("file_id") or ""))


def send_chat_action(state: EmulatorState, bot: Bot, params: JSON) -> bool:
    chat = _writable_chat(state, bot, params)
    if params.get("action") not in CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    state.sent.action(bot.id, chat["id"], params["action"], _int(params, "message_thread_id"))
    return True


def _webhook_url_allowed(url: str) -> bool:
    """HTTPS, as Telegram demands, or plain HTTP to loopback (tests have no certificates)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http":
        return parts.scheme.lower() == "https"
    try:
        return (
            parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname or "").is_loopback
        )
    except ValueError:
        return False


def set_webhook(state: EmulatorState, bot: Bot, params: JSON) -> bool:
    url = str(params.get("url") or "")
    if url and not _webhook_url_allowed(url):
        raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    secret = str(params.get("secret_token") or "")
    if not SECRET_TOKEN.fullmatch(secret):
        raise bad_request("secret token contains unallowed characters or is too long")
    hook = None
    if url:
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            state.updates.queues[bot.id].allowed_updates = [str(a) for a in allowed] or None
        hook = {
            "url": url,
            # Out of range is clamped, as by the Bot API server.
            "max_connections": min(max(_int(params, "max_connections", 40) or 40, 1), 100),
            "secret_token": secret or None,
            "ip_address": params.get("ip_address"),
        }
    state.updates.set_webhook(bot.id, hook, _bool(params, "drop_pending_updates"))
    return True


def delete_webhook(state: EmulatorState, bot: Bot, params: JSON) -> bool:
    state.updates.set_webhook(bot.id, None, _bool(params, "drop_pending_updates"))
    return True


def get_webhook_info(state: EmulatorState, bot: Bot, params: JSON) -> JSON:
    return state.updates.webhook_info(bot.id)


def _scope(params: JSON) -> str:
    scope = params.get("scope") or {}
    return f"{scope.get('type', 'default')}|{scope.get('chat_id', '')}|{scope.get('user_id', '')}|{params.get('language_code') or ''}"


def set_my_commands(state: EmulatorState, bot: Bot, params: JSON) -> bool:
    commands = params.get("commands")
    if not isinstance(commands, list):
        raise bad_request("can't parse commands JSON object")
    for command in commands:
        name = str(command.get("command", "")) if isinstance(command, dict) else ""
        if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
            raise bad_request("BOT_COMMAND_INVALID")
    bot.commands[_scope(params)] = [
        {"command": c["command"], "description": c.get("description", "")} for c in commands
    ]
    return True


def get_my_commands(state: EmulatorState, bot: Bot, params: JSON) -> list[JSON]:
    return list(bot.commands.get(_scope(params), []))


METHODS: dict[str, Method] = {
    "getme": get_me,
    "getupdates": get_updates,
    "sendmessage": send_message,
    "sendmessagedraft": send_message_draft,
    "editmessagetext": edit_message_text,
    "getfile": get_file,
    "sendchataction": send_chat_action,
    "setwebhook": set_webhook,
    "deletewebhook": delete_webhook,
    "getwebhookinfo": get_webhook_info,
    "setmycommands": set_my_commands,
    "getmycommands": get_my_commands,
}
"""Lower-cased method name -> method (Telegram's method names are case-insensitive)."""
