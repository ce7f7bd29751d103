"""Bot API method implementations (``/bot<token>/<method>``).

Each handler takes ``(state, bot, params)`` and returns the ``result`` value or
raises :class:`~.errors.ApiError`. ``params`` are already decoded to Python types
(see :func:`.server.decode_params`). Only ``getUpdates`` is asynchronous: it may
wait on a future that :meth:`.state.EmulatorState.push_update` resolves. Webhook
delivery itself lives in :class:`~.state.EmulatorState` (``install_webhook``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from .errors import ApiError, bad_request, forbidden
from .html_entities import EntityParseError, utf16_len
from .state import (
    CONFLICT_POLL,
    MAX_DOWNLOAD_FILE_SIZE,
    BotState,
    EmulatorState,
    without_reply,
)
from .text_format import (
    MAX_CAPTION_LENGTH,
    MAX_MESSAGE_LENGTH,
    MessageTextError,
    describe_parse_error,
    parse_text,
)

JSON = dict[str, Any]
Handler = Callable[[EmulatorState, BotState, JSON], Any | Awaitable[Any]]

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]*")

WEBHOOK_ACTIVE = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"


# ---------------------------------------------------------------------- param helpers


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
    if isinstance(value, str):
        return value.lower() in ("true", "1", "yes")
    return bool(value)


def _chat(state: EmulatorState, params: JSON) -> JSON:
    chat_id = params.get("chat_id")
    if chat_id is None or chat_id == "":
        raise bad_request("chat_id is empty")
    chat = state.resolve_chat(chat_id)
    if chat is None:
        raise bad_request("chat not found")
    return chat


def _check_can_write(state: EmulatorState, bot: BotState, chat: JSON) -> None:
    if chat["type"] != "private":
        _check_in_group(state, bot, chat)
        return
    if chat["id"] in bot.blocked_by:
        raise forbidden("bot was blocked by the user")
    user = state.users.get(chat["id"])
    if user is not None and user.get("is_bot"):
        raise forbidden("bot can't send messages to bots")


def _check_in_group(state: EmulatorState, bot: BotState, chat: JSON) -> None:
    """Telegram's refusals for a group the bot cannot write to any more."""
    new_id = state.migrated_to.get(chat["id"])
    if new_id is not None:
        # python-telegram-bot turns parameters.migrate_to_chat_id into ChatMigrated.
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


def _format(
    state: EmulatorState, text: str, params: JSON, entities_key: str
) -> tuple[str, list[JSON]]:
    entities = params.get(entities_key)
    if entities is not None and not isinstance(entities, list):
        raise bad_request(f"can't parse {entities_key} JSON object")
    try:
        return parse_text(
            text,
            params.get("parse_mode"),
            entities,
            strict_html_ampersand=state.strict_html_ampersand,
            resolve_user=state.resolve_user_for_entity,
        )
    except EntityParseError as exc:
        raise ApiError(400, describe_parse_error(exc)) from None
    except MessageTextError as exc:
        raise bad_request(exc.reason) from None


def _reply_target(state: EmulatorState, bot: BotState, chat: JSON, params: JSON) -> JSON | None:
    """Resolve reply_parameters / legacy reply_to_message_id to the stored message."""
    reply = params.get("reply_parameters")
    if isinstance(reply, dict):
        message_id = reply.get("message_id")
        allow_without = bool(reply.get("allow_sending_without_reply"))
        chat_ref = reply.get("chat_id")
        if chat_ref is not None:
            other = state.resolve_chat(chat_ref)
            if other is None:
                raise bad_request("chat not found")
            chat = other
    else:
        message_id = params.get("reply_to_message_id")
        allow_without = _bool(params, "allow_sending_without_reply")
    if message_id in (None, "", 0):
        return None
    try:
        message_id = int(message_id)
    except (TypeError, ValueError):
        raise bad_request("invalid reply_to_message_id specified") from None
    target = state.find_message(bot, chat["id"], message_id)
    if target is None:
        if allow_without:
            return None
        raise bad_request("message to be replied not found")
    return without_reply(target)


def _topic_fields(bot: BotState, chat: JSON, params: JSON, reply_to: JSON | None) -> JSON:
    """``message_thread_id``/``is_topic_message`` of a bot message (none: General topic).

    In a forum the thread must exist, a reply goes to the topic of the message it
    answers, and a message that replies to nothing replies to the topic's
    ``forum_topic_created`` message, as Telegram shows it.
    """
    thread_id = _int(params, "message_thread_id") or None  # 0 means "no thread"
    if not chat.get("is_forum"):
        return {"message_thread_id": thread_id} if thread_id is not None else {}
    if thread_id is None and reply_to is not None and reply_to.get("is_topic_message"):
        thread_id = reply_to["message_thread_id"]
    if thread_id is None:
        return {}
    topic = bot.forum_topics.get(chat["id"], {}).get(thread_id)
    if topic is None:
        raise bad_request("message thread not found")
    fields: JSON = {"message_thread_id": thread_id, "is_topic_message": True}
    if reply_to is None:
        fields["reply_to_message"] = without_reply(topic)
    return fields


def _bot_message(
    state: EmulatorState, bot: BotState, chat: JSON, params: JSON, content: JSON
) -> JSON:
    reply_to = _reply_target(state, bot, chat, params)
    topic = _topic_fields(bot, chat, params, reply_to)  # may refuse: before taking an id
    message: JSON = {
        "message_id": state.new_message_id(bot, chat["id"]),
        "from": bot.user(),
        "chat": dict(chat),
        "date": int(time.time()),
        **topic,
    }
    if reply_to is not None:
        message["reply_to_message"] = reply_to
    message.update({k: v for k, v in content.items() if v not in (None, [])})
    markup = params.get("reply_markup")
    if isinstance(markup, dict) and "inline_keyboard" in markup:
        # Only inline keyboards are echoed back in the Message, as on Telegram.
        message["reply_markup"] = {"inline_keyboard": markup["inline_keyboard"]}
    state.store_message(bot, message)
    return message


# ---------------------------------------------------------------------- methods


def get_me(state: EmulatorState, bot: BotState, params: JSON) -> JSON:
    return bot.me()


async def get_updates(state: EmulatorState, bot: BotState, params: JSON) -> list[JSON]:
    """Long polling with Telegram's offset/limit/timeout/conflict semantics."""
    if bot.webhook:
        raise ApiError(409, WEBHOOK_ACTIVE)
    offset = _int(params, "offset", 0) or 0
    limit = min(max(_int(params, "limit", 100) or 100, 1), 100)
    timeout = params.get("timeout", 0) or 0
    try:
        timeout = max(float(timeout), 0.0)
    except (TypeError, ValueError):
        raise bad_request("invalid timeout specified") from None
    allowed = params.get("allowed_updates")
    if isinstance(allowed, list):
        # Telegram remembers the last allowed_updates; [] means "the default set".
        bot.allowed_updates = [str(a) for a in allowed] or None

    # A newer request terminates the waiting one (the *earlier* poller gets the 409).
    previous = bot.poller
    if previous is not None and not previous.done():
        previous.set_result("conflict")
    bot.poller = None

    state.confirm_updates(bot, offset)
    updates = state.take_updates(bot, limit)
    if updates or timeout <= 0 or state.closing:
        return updates

    loop = asyncio.get_running_loop()
    fut: asyncio.Future[str] = loop.create_future()
    bot.poller = fut
    # call_later instead of wait_for: no extra task per idle poller (cheap at 1,000 bots).
    timer = loop.call_later(timeout, _resolve, fut, "timeout")
    try:
        outcome = await fut
    finally:
        timer.cancel()
        if bot.poller is fut:
            bot.poller = None
    if outcome == "conflict":
        raise ApiError(409, CONFLICT_POLL)
    if bot.webhook:
        return []
    return state.take_updates(bot, limit)


def _resolve(fut: asyncio.Future[str], value: str) -> None:
    if not fut.done():
        fut.set_result(value)


def send_message(state: EmulatorState, bot: BotState, params: JSON) -> JSON:
    chat = _chat(state, params)
    _check_can_write(state, bot, chat)
    raw = params.get("text")
    if raw is None or raw == "":
        raise bad_request("message text is empty")
    text, entities = _format(state, str(raw), params, "entities")
    if not text:
        raise bad_request("message text is empty")
    if utf16_len(text) > MAX_MESSAGE_LENGTH:
        raise bad_request("message is too long")
    content: JSON = {"text": text, "entities": entities}
    preview = params.get("link_preview_options")
    if isinstance(preview, dict) and preview:
        content["link_preview_options"] = preview
    message = _bot_message(state, bot, chat, params, content)
    state.record_sent(bot, message, params, "sendMessage")
    return message


# Bot API method name -> media field. Uploads and file_ids are both accepted; the
# emulator answers with fake (but well-formed) file objects.
_MEDIA_METHODS = {
    "sendPhoto": "photo",
    "sendDocument": "document",
    "sendVoice": "voice",
    "sendAudio": "audio",
    "sendVideo": "video",
    "sendAnimation": "animation",
    "sendSticker": "sticker",
    "sendVideoNote": "video_note",
}


def _send_media(kind: str, method_name: str) -> Handler:
    def handler(state: EmulatorState, bot: BotState, params: JSON) -> JSON:
        chat = _chat(state, params)
        _check_can_write(state, bot, chat)
        if params.get(kind) in (None, ""):
            raise bad_request(f"there is no {kind} in the request")
        content: JSON = {kind: state.fake_media(bot, kind)}
        caption = params.get("caption")
        if caption not in (None, "") and kind not in ("sticker", "video_note"):
            text, entities = _format(state, str(caption), params, "caption_entities")
            if utf16_len(text) > MAX_CAPTION_LENGTH:
                raise bad_request("message caption is too long")
            if text:
                content["caption"] = text
                content["caption_entities"] = entities
        message = _bot_message(state, bot, chat, params, content)
        state.record_sent(bot, message, params, method_name)
        return message

    return handler


def send_message_draft(state: EmulatorState, bot: BotState, params: JSON) -> bool:
    """Bot API 10.0: a draft is shown in a private chat while the answer is generated; it is
    no message. Empty or missing text shows a "Thinking..." placeholder. The errors are
    the ones Telegram's servers answer (TEXTDRAFT_PEER_INVALID, RANDOM_ID_INVALID)."""
    chat = _chat(state, params)
    if chat["type"] != "private":
        raise bad_request("TEXTDRAFT_PEER_INVALID")
    _check_can_write(state, bot, chat)
    draft_id = _int(params, "draft_id")
    if not draft_id:
        raise bad_request("RANDOM_ID_INVALID")
    raw = params.get("text")
    text, entities = _format(state, str(raw), params, "entities") if raw else ("", [])
    if utf16_len(text) > MAX_MESSAGE_LENGTH:
        raise bad_request("message is too long")
    bot.drafts.append(
        {
            "chat_id": chat["id"],
            "draft_id": draft_id,
            "text": text,
            "entities": entities,
            "parse_mode": params.get("parse_mode"),
            "message_thread_id": _int(params, "message_thread_id"),
            "at": state.now(),
        }
    )
    return True


def get_file(state: EmulatorState, bot: BotState, params: JSON) -> JSON:
    """The file's download path (given on the first call); over 20 MiB it is refused."""
    file = bot.files.get(str(params.get("file_id") or ""))
    if file is None:
        raise bad_request("invalid file_id")
    if file.size > MAX_DOWNLOAD_FILE_SIZE:
        raise bad_request("file is too big")
    if file.file_path is None:
        file.file_path = file.new_path(len(bot.file_paths))
        bot.file_paths[file.file_path] = file
    return {
        "file_id": file.file_id,
        "file_unique_id": file.file_unique_id,
        "file_size": file.size,
        "file_path": file.file_path,
    }


def send_chat_action(state: EmulatorState, bot: BotState, params: JSON) -> bool:
    chat = _chat(state, params)
    _check_can_write(state, bot, chat)
    action = params.get("action")
    if action not in CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    bot.chat_actions.append(
        {
            "bot_id": bot.id,
            "chat_id": chat["id"],
            "action": action,
            "message_thread_id": _int(params, "message_thread_id"),
            "time": time.time(),
        }
    )
    return True


def edit_message_text(state: EmulatorState, bot: BotState, params: JSON) -> JSON:
    chat = _chat(state, params)
    message_id = _int(params, "message_id")
    message = state.find_message(bot, chat["id"], message_id) if message_id else None
    if message is None:
        raise bad_request("message to edit not found")
    if message.get("from", {}).get("id") != bot.id:
        raise bad_request("message can't be edited")
    raw = params.get("text")
    if raw is None or raw == "":
        raise bad_request("message text is empty")
    text, entities = _format(state, str(raw), params, "entities")
    if not text:
        raise bad_request("message text is empty")
    if utf16_len(text) > MAX_MESSAGE_LENGTH:
        raise bad_request("message is too long")
    markup = params.get("reply_markup")
    new_markup = (
        {"inline_keyboard": markup["inline_keyboard"]}
        if isinstance(markup, dict) and "inline_keyboard" in markup
        else None
    )
    if (
        message.get("text") == text
        and message.get("entities", []) == entities
        and message.get("reply_markup") == new_markup
    ):
        raise bad_request(
            "message is not modified: specified new message content and reply markup are exactly the same "
            "as a current content and reply markup of the message"
        )
    message["text"] = text
    if entities:
        message["entities"] = entities
    else:
        message.pop("entities", None)
    if new_markup is not None:
        message["reply_markup"] = new_markup
    else:
        message.pop("reply_markup", None)
    message["edit_date"] = int(time.time())
    return dict(message)


def delete_message(state: EmulatorState, bot: BotState, params: JSON) -> bool:
    chat = _chat(state, params)
    message_id = _int(params, "message_id")
    messages = bot.messages.get(chat["id"], {})
    if message_id not in messages:
        raise bad_request("message to delete not found")
    del messages[message_id]
    return True


def answer_callback_query(state: EmulatorState, bot: BotState, params: JSON) -> bool:
    query_id = str(params.get("callback_query_id") or "")
    if query_id not in bot.callback_ids:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    bot.callback_ids.discard(query_id)
    return True


def get_chat(state: EmulatorState, bot: BotState, params: JSON) -> JSON:
    chat = _chat(state, params)
    return {
        **chat,
        "accent_color_id": 0,
        "max_reaction_count": 11,
        "accepted_gift_types": {
            "unlimited_gifts": False,
            "limited_gifts": False,
            "unique_gifts": False,
            "premium_subscription": False,
            "gifts_from_channels": False,
        },
    }


def _webhook_url_allowed(url: str) -> bool:
    """HTTPS, as Telegram demands, or plain HTTP to loopback: the emulator and the bots
    it tests share the machine, and tests have no certificates."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme != "http":
        return scheme == "https"
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def set_webhook(state: EmulatorState, bot: BotState, params: JSON) -> bool:
    url = str(params.get("url") or "")
    if url and not _webhook_url_allowed(url):
        raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    secret = str(params.get("secret_token") or "")
    if len(secret) > 256:
        raise bad_request("secret token is too long")
    if not SECRET_TOKEN.fullmatch(secret):
        raise bad_request("secret token contains unallowed characters")
    drop = _bool(params, "drop_pending_updates")
    if not url:
        state.install_webhook(bot, None, drop)
        return True
    allowed = params.get("allowed_updates")
    if isinstance(allowed, list):
        bot.allowed_updates = [str(a) for a in allowed] or None
    # Out-of-range max_connections are clamped, as by the Bot API server.
    connections = min(max(_int(params, "max_connections", 40) or 40, 1), 100)
    hook = {
        "url": url,
        "max_connections": connections,
        "secret_token": secret or None,
        "ip_address": params.get("ip_address"),
    }
    state.install_webhook(bot, hook, drop)
    return True


def delete_webhook(state: EmulatorState, bot: BotState, params: JSON) -> bool:
    state.install_webhook(bot, None, _bool(params, "drop_pending_updates"))
    return True


def get_webhook_info(state: EmulatorState, bot: BotState, params: JSON) -> JSON:
    info: JSON = {
        "url": (bot.webhook or {}).get("url", ""),
        "has_custom_certificate": False,
        "pending_update_count": len(bot.pending),
    }
    if bot.webhook:
        info["max_connections"] = bot.webhook.get("max_connections") or 40
        if bot.webhook.get("ip_address"):
            info["ip_address"] = bot.webhook["ip_address"]
        if bot.allowed_updates:
            info["allowed_updates"] = list(bot.allowed_updates)
    if bot.webhook_last_error is not None:
        info["last_error_date"], info["last_error_message"] = bot.webhook_last_error
    return info


def _scope_key(params: JSON) -> str:
    scope = params.get("scope") or {"type": "default"}
    language = params.get("language_code") or ""
    return f"{scope.get('type', 'default')}|{scope.get('chat_id', '')}|{scope.get('user_id', '')}|{language}"


def set_my_commands(state: EmulatorState, bot: BotState, params: JSON) -> bool:
    commands = params.get("commands")
    if not isinstance(commands, list):
        raise bad_request("can't parse commands JSON object")
    for command in commands:
        name = str(command.get("command", "")) if isinstance(command, dict) else ""
        if (
            not name
            or len(name) > 32
            or not all(c.islower() or c.isdigit() or c == "_" for c in name)
        ):
            raise bad_request("BOT_COMMAND_INVALID")
    bot.commands[_scope_key(params)] = [
        {"command": c["command"], "description": c.get("description", "")} for c in commands
    ]
    return True


def get_my_commands(state: EmulatorState, bot: BotState, params: JSON) -> list[JSON]:
    return list(bot.commands.get(_scope_key(params), []))


def delete_my_commands(state: EmulatorState, bot: BotState, params: JSON) -> bool:
    bot.commands.pop(_scope_key(params), None)
    return True


def _true(state: EmulatorState, bot: BotState, params: JSON) -> bool:
    return True


METHODS: dict[str, Handler] = {
    "getme": get_me,
    "getupdates": get_updates,
    "sendmessage": send_message,
    "sendmessagedraft": send_message_draft,
    "getfile": get_file,
    "sendchataction": send_chat_action,
    "editmessagetext": edit_message_text,
    "deletemessage": delete_message,
    "answercallbackquery": answer_callback_query,
    "getchat": get_chat,
    "setwebhook": set_webhook,
    "deletewebhook": delete_webhook,
    "getwebhookinfo": get_webhook_info,
    "setmycommands": set_my_commands,
    "getmycommands": get_my_commands,
    "deletemycommands": delete_my_commands,
    "logout": _true,
    "close": _true,
    **{name.lower(): _send_media(kind, name) for name, kind in _MEDIA_METHODS.items()},
}
"""Lower-cased method name -> handler (Telegram method names are case-insensitive)."""
