"""The one door to the Telegram Bot API.

Everything goes through python-telegram-bot's `Bot`, one per bot and process, living
on the process's I/O loop (`core.aio`). PTB's exceptions are translated here into the
few outcomes the runtime acts on; their messages are our words plus Telegram's
description, redacted, so no token can leak through an error shown to a user.
"""

import contextlib
import datetime as dt
import re
import ssl
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import certifi
import telegram
from telegram import error as tg_error
from telegram.request import HTTPXRequest

from core import aio
from core.redaction import redact

if TYPE_CHECKING:
    from bots.models import Bot as BotRow

MAX_CACHED_CLIENTS = 4096
SEND_TIMEOUT = 15.0  # seconds for one sendMessage round trip


class TelegramFailure(Exception):
    """A Telegram call failed. `str()` is safe to show and store (no secrets)."""

    permanent = False


class TokenRejected(TelegramFailure):
    permanent = True

    def __init__(self, detail: str = "") -> None:
        super().__init__("Telegram rejected the bot token" + (f" ({detail})" if detail else ""))


class PollingConflict(TelegramFailure):
    def __init__(self, detail: str) -> None:
        super().__init__(
            "Another program is polling this bot's token (or set a webhook): Telegram "
            f"allows one. Backing off. Telegram said: {detail}"
        )


class FloodWait(TelegramFailure):
    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"Telegram flood control: retry after {retry_after:g} s")


class ChatUnavailable(TelegramFailure):
    """The bot can no longer write to this chat (blocked, kicked, chat gone)."""

    permanent = True


class ChatMoved(TelegramFailure):
    """The group became a supergroup with a new id: send there instead."""

    def __init__(self, new_chat_id: int) -> None:
        self.new_chat_id = new_chat_id
        super().__init__(f"The group moved to chat {new_chat_id} (it became a supergroup)")


class EntitiesRejected(TelegramFailure):
    """Telegram could not parse the formatting; the same text can go plain."""

    permanent = True


class RequestRejected(TelegramFailure):
    permanent = True


class TransientFailure(TelegramFailure):
    """Network trouble, time-outs and 5xx: worth retrying later."""


@dataclass(frozen=True)
class BotEndpoint:
    """What it takes to talk to Telegram as one bot. Built per call from the row."""

    bot_id: int
    token: str = field(repr=False)
    base_url: str

    @classmethod
    def of(cls, bot: "BotRow") -> "BotEndpoint":
        return cls(bot_id=bot.pk, token=bot.token.reveal(), base_url=bot.effective_api_base_url)

    @property
    def base_file_url(self) -> str:
        # Without it PTB sends file calls to the real Telegram whatever base_url says.
        root = self.base_url[: -len("/bot")] if self.base_url.endswith("/bot") else self.base_url
        return f"{root}/file/bot"


# --- clients ------------------------------------------------------------------------

_ssl_context: ssl.SSLContext | None = None
_ssl_lock = threading.Lock()


def _shared_ssl_context() -> ssl.SSLContext:
    # Building a TLS context (loading the CA bundle) costs milliseconds and memory;
    # a thousand bots share one.
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = ssl.create_default_context(cafile=certifi.where())
        return _ssl_context


def _request(pool_size: int) -> HTTPXRequest:
    return HTTPXRequest(
        connection_pool_size=pool_size,
        connect_timeout=5.0,
        read_timeout=SEND_TIMEOUT,
        write_timeout=SEND_TIMEOUT,
        pool_timeout=SEND_TIMEOUT,
        httpx_kwargs={"verify": _shared_ssl_context()},
    )


class _Clients:
    """PTB Bots by endpoint, on the I/O loop only (so no lock is needed)."""

    def __init__(self) -> None:
        self._bots: OrderedDict[BotEndpoint, telegram.Bot] = OrderedDict()

    async def get(self, endpoint: BotEndpoint) -> telegram.Bot:
        bot = self._bots.get(endpoint)
        if bot is not None:
            self._bots.move_to_end(endpoint)
            return bot
        bot = telegram.Bot(
            endpoint.token,
            base_url=endpoint.base_url,
            base_file_url=endpoint.base_file_url,
            request=_request(pool_size=32),
            # getUpdates gets its own connection so a long poll never waits behind sends.
            get_updates_request=_request(pool_size=1),
        )
        async with _translated_errors():
            await bot.initialize()
        self._bots[endpoint] = bot
        await self._evict_beyond(MAX_CACHED_CLIENTS)
        return bot

    async def _evict_beyond(self, limit: int) -> None:
        while len(self._bots) > limit:
            _, old = self._bots.popitem(last=False)
            with contextlib.suppress(Exception):
                await old.shutdown()

    async def forget(self, bot_id: int) -> None:
        """Drop a bot's clients (its token may have changed)."""
        for endpoint in [e for e in self._bots if e.bot_id == bot_id]:
            with contextlib.suppress(Exception):
                await self._bots.pop(endpoint).shutdown()


_clients = _Clients()


# --- error translation ---------------------------------------------------------------


REASON_LIMIT = 200  # characters of Telegram's words kept in an error we show

# PTB appends the whole response body when it is not JSON (a proxy's HTML error page).
_UNPARSED_BODY = re.compile(r"\. Parsing the server response .* failed$", re.S)


def _said(text: str) -> str:
    """What Telegram (or whatever answered in its place) said, fit to show on a task: no
    secret, no response body, one line, short."""
    reason = " ".join(_UNPARSED_BODY.sub(" (not a Telegram answer)", redact(text)).split())
    return reason if len(reason) <= REASON_LIMIT else reason[: REASON_LIMIT - 1] + "…"


def reason_of(failure: Exception) -> str:
    """Why something from Telegram could not be read or stored, fit to show."""
    return f"{type(failure).__name__}: {_said(str(failure))}"


@contextlib.asynccontextmanager
async def _translated_errors() -> AsyncIterator[None]:
    try:
        yield
    except tg_error.RetryAfter as exc:
        retry_after = exc.retry_after  # an int today, a timedelta in a future PTB: both handled
        seconds = retry_after.total_seconds() if isinstance(retry_after, dt.timedelta) else retry_after
        raise FloodWait(float(seconds)) from None
    except tg_error.InvalidToken as exc:
        raise TokenRejected(_said(exc.message)) from None
    except tg_error.EndPointNotFound:
        # Telegram answers 404 to a revoked token; through do_api_request (getUpdates)
        # PTB reports that as "endpoint not found", and getUpdates surely exists.
        raise TokenRejected() from None
    except tg_error.Conflict as exc:
        raise PollingConflict(_said(exc.message)) from None
    except tg_error.Forbidden as exc:
        raise ChatUnavailable(f"Telegram refused: {_said(exc.message)}") from None
    except tg_error.ChatMigrated as exc:
        raise ChatMoved(int(exc.new_chat_id)) from None
    except tg_error.BadRequest as exc:
        message = _said(exc.message)
        lowered = message.lower()
        if any(sign in lowered for sign in _FORMATTING_REFUSALS):
            raise EntitiesRejected(f"Telegram refused the formatting: {message}") from None
        if "chat not found" in lowered or "user is deactivated" in lowered:
            raise ChatUnavailable(f"Telegram refused: {message}") from None
        raise RequestRejected(f"Telegram rejected the request: {message}") from None
    except (tg_error.NetworkError, tg_error.TimedOut) as exc:
        raise TransientFailure(f"Telegram unreachable or failing: {_said(str(exc))}") from None
    except tg_error.TelegramError as exc:
        raise RequestRejected(f"Telegram error: {_said(str(exc))}") from None


# Telegram's 400s about formatting (entities, their links and mentions): the same text
# goes again plain. Any of them, not only "can't parse entities".
_FORMATTING_REFUSALS = (
    "can't parse entities", "can't find end", "entity", "entities", "wrong http url",
    "url host is empty", "unsupported url protocol", "wrong url", "text_link",
    "custom emoji", "mention",
)


async def _call(endpoint: BotEndpoint, method: str, /, *args: object, **kwargs: object) -> object:
    async with _translated_errors():
        bot = await _clients.get(endpoint)
        return await getattr(bot, method)(*args, **kwargs)


# --- the API the runtime uses ---------------------------------------------------------


MAX_STORABLE_ID = 2**63 - 1  # a signed 64-bit column: Telegram's ids fit, hostile ones may not


@dataclass(frozen=True)
class Polled:
    """One getUpdates answer: the updates, and those python-telegram-bot could not read
    or that carry an impossible update id (that id, or None, and why), so the caller
    moves past them instead of receiving the same batch forever."""

    updates: list[telegram.Update]
    unreadable: list[tuple[int | None, str]]
    received: int = 0  # items in Telegram's answer, whatever their shape

    def next_offset(self, current: int) -> int:
        """The offset that confirms this answer: past its highest update id, never
        backwards, and at least 1 once anything came (an update id of 0 or below,
        which Telegram never sends, is then dropped rather than polled in a loop)."""
        ids = [u.update_id for u in self.updates] + [i for i, _ in self.unreadable if i is not None]
        floor = 1 if self.received else 0
        return max(current, floor, max(ids) + 1 if ids else 0)


async def get_updates(endpoint: BotEndpoint, *, offset: int, timeout: int, limit: int = 100) -> Polled:
    """One long poll (runs on the I/O loop; `await` it there). Each update is cleaned
    and read on its own: PTB's own get_updates fails the whole batch on one it cannot
    parse."""
    raw = await _call(
        endpoint, "do_api_request", "getUpdates",
        api_kwargs={
            "offset": offset, "timeout": timeout, "limit": limit,
            "allowed_updates": ALLOWED_UPDATES,
        },
        read_timeout=timeout + SEND_TIMEOUT,
    )
    return updates_read(raw if isinstance(raw, list) else [], await _clients.get(endpoint))


def updates_read(items: Sequence[Any], bot: telegram.Bot | None = None) -> Polled:
    """Telegram's updates as JSON values (a getUpdates answer, a webhook body), each
    cleaned and read on its own. `bot`: the PTB client the objects are bound to (a
    webhook request has none: nothing it reads calls Telegram)."""
    polled = Polled(updates=[], unreadable=[], received=len(items))
    for item in items:
        update_id, problem = update_id_of(item)
        if problem:
            polled.unreadable.append((update_id, problem))
            continue
        try:
            polled.updates.append(telegram.Update.de_json(cleaned(item), bot))
        except Exception as failure:
            polled.unreadable.append((update_id, reason_of(failure)))
    return polled


def update_id_of(item: Any) -> tuple[int | None, str]:
    """An update's id and "", or what is wrong with it (the id when it is a number)."""
    update_id = item.get("update_id") if isinstance(item, dict) else None
    if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id <= 0:
        return None, f"update id {str(update_id)[:30]!r} is not a positive number"
    if update_id > MAX_STORABLE_ID:
        return update_id, "update id beyond 64 bits"
    return update_id, ""


# What a bot polls for: messages, their edits, and its own membership in chats (removed
# from a group or blocked → the chat goes inactive; added back → active again).
ALLOWED_UPDATES = ["message", "edited_message", "my_chat_member"]

_UNPAIRED_SURROGATE = re.compile(r"[\ud800-\udfff]")


def cleaned(value: Any) -> Any:
    """A JSON value with every string made storable and encodable: unpaired UTF-16
    surrogates (JSON can carry them, UTF-8 and databases cannot) become U+FFFD and NUL
    characters (PostgreSQL text refuses them) go."""
    if isinstance(value, str):
        if not value.isascii():  # the common case has no surrogate to look for
            value = _UNPAIRED_SURROGATE.sub("\ufffd", value)
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {key: cleaned(item) for key, item in value.items()}
    if isinstance(value, list):
        return [cleaned(item) for item in value]
    return value


def get_me(endpoint: BotEndpoint) -> telegram.User:
    return aio.run(_call(endpoint, "get_me"), timeout=SEND_TIMEOUT + 5)  # type: ignore[return-value]


def delete_webhook(endpoint: BotEndpoint, *, drop_pending_updates: bool = False) -> None:
    aio.run(
        _call(endpoint, "delete_webhook", drop_pending_updates=drop_pending_updates),
        timeout=SEND_TIMEOUT + 5,
    )


def set_webhook(
    endpoint: BotEndpoint, *, url: str, secret_token: str, drop_pending_updates: bool, max_connections: int,
) -> None:
    """Telegram pushes this bot's updates to `url` from now on, each request carrying
    `secret_token`; the same update kinds as polling; at most `max_connections` at once."""
    aio.run(
        _call(
            endpoint, "set_webhook", url=url, secret_token=secret_token,
            allowed_updates=ALLOWED_UPDATES, drop_pending_updates=drop_pending_updates,
            max_connections=max_connections,
        ),
        timeout=SEND_TIMEOUT + 5,
    )


def commands_set(endpoint: BotEndpoint, *, users: dict[str, str], operators: dict[str, str],
                 operator_ids: Sequence[int]) -> None:
    """Telegram's command menu: `users` for everyone; in each operator's private chat
    (its id is the operator's user id) the users' commands and `operators`."""

    async def set_all() -> None:
        everyone = [telegram.BotCommand(name, what) for name, what in users.items()]
        await _call(endpoint, "set_my_commands", everyone)
        extra = [telegram.BotCommand(name, what) for name, what in operators.items()]
        for operator in operator_ids:
            await _call(endpoint, "set_my_commands", everyone + extra,
                        scope=telegram.BotCommandScopeChat(operator))

    aio.run(set_all(), timeout=SEND_TIMEOUT * (2 + len(operator_ids)))


@dataclass(frozen=True)
class WebhookInfo:
    url: str
    pending_updates: int
    last_error: str  # Telegram's last delivery error, fit to show ("" when none)
    last_error_at: dt.datetime | None


async def webhook_info(endpoint: BotEndpoint) -> WebhookInfo:
    """getWebhookInfo (on the I/O loop; `await` it there)."""
    info: Any = await _call(endpoint, "get_webhook_info")
    return WebhookInfo(
        url=str(info.url or ""),
        pending_updates=max(0, int(info.pending_update_count or 0)),
        last_error=_said(str(info.last_error_message or "")),
        last_error_at=info.last_error_date,
    )


async def send_message(
    endpoint: BotEndpoint,
    *,
    chat_id: int,
    text: str,
    entities: Sequence[dict[str, Any]] | None = None,
    reply_to_message_id: int | None = None,
    message_thread_id: int | None = None,
) -> telegram.Message:
    """sendMessage (on the I/O loop; `await` it there). `entities` are Bot API dicts.

    The optional parameters go as plain JSON values (`api_kwargs`), not PTB objects:
    serialising PTB objects (`TelegramObject.to_dict`) was the largest single cost of a
    send under load (measured with py-spy: a third of a worker's CPU in a burst)."""
    options = {"link_preview_options": _NO_LINK_PREVIEW, **_text_options(entities, message_thread_id)}
    if reply_to_message_id:
        options["reply_parameters"] = {
            "message_id": reply_to_message_id, "allow_sending_without_reply": True,
        }
    sent = await _call(endpoint, "send_message", chat_id=chat_id, text=text, api_kwargs=options)
    return sent  # type: ignore[return-value]


_NO_LINK_PREVIEW = {"is_disabled": True}


def _text_options(entities: Sequence[dict[str, Any]] | None, message_thread_id: int | None = None) -> dict[str, Any]:
    """A text's optional parameters, as plain JSON values (see send_message)."""
    options: dict[str, Any] = {}
    if entities:
        options["entities"] = list(entities)
    if message_thread_id:
        options["message_thread_id"] = message_thread_id
    return options


async def edit_message_text(
    endpoint: BotEndpoint, *, chat_id: int, message_id: int, text: str,
    entities: Sequence[dict[str, Any]] | None = None,
) -> None:
    """editMessageText of one of the bot's messages (on the I/O loop). Editing a message
    to the text it already has is done, not an error (Telegram says "message is not
    modified"): an edit redone after a crash finds its work already there."""
    options = {"link_preview_options": _NO_LINK_PREVIEW, **_text_options(entities)}
    try:
        await _call(endpoint, "edit_message_text", text=text, chat_id=chat_id, message_id=message_id,
                    api_kwargs=options)
    except RequestRejected as refused:
        if "message is not modified" not in str(refused).lower():
            raise


async def send_message_draft(
    endpoint: BotEndpoint, *, chat_id: int, draft_id: int, text: str,
    entities: Sequence[dict[str, Any]] | None = None, message_thread_id: int | None = None,
) -> None:
    """sendMessageDraft (on the I/O loop): a reply shown as it is written, in a private
    chat only; ephemeral (the final text is still sent with sendMessage)."""
    await _call(endpoint, "send_message_draft", chat_id=chat_id, draft_id=draft_id, text=text,
                api_kwargs=_text_options(entities, message_thread_id))


class FileTooLarge(TelegramFailure):
    permanent = True


async def file_download(endpoint: BotEndpoint, file_id: str, *, max_bytes: int) -> bytes:
    """A file the bot received (on the I/O loop): getFile, then its bytes from the file
    URL; refused, without fetching the body, when Telegram says it is over `max_bytes`."""
    file: Any = await _call(endpoint, "get_file", file_id)
    if file.file_size and file.file_size > max_bytes:
        raise FileTooLarge(f"The file is {file.file_size} bytes, over the {max_bytes} allowed.")
    async with _translated_errors():
        data = await file.download_as_bytearray()
    if len(data) > max_bytes:
        raise FileTooLarge(f"The file is {len(data)} bytes, over the {max_bytes} allowed.")
    return bytes(data)


async def send_chat_action(endpoint: BotEndpoint, *, chat_id: int, action: str = "typing") -> None:
    await _call(endpoint, "send_chat_action", chat_id=chat_id, action=action)


def forget_clients(bot_id: int) -> None:
    aio.run(_clients.forget(bot_id), timeout=10)
