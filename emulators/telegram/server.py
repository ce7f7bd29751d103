"""The aiohttp app: the Bot API, file downloads and the control operations.

* ``GET|POST /bot<token>/<method>`` – the Bot API; parameters from the query string
  and a JSON, form or multipart body, merged in that order;
* ``GET /file/bot<token>/<file_path>`` – a file getFile gave this bot (else 404);
* ``GET /_emulator``, ``POST /_emulator/<op>`` – the state's control operations
  (``emulators._common.ops``).

python-telegram-bot 22 sends form-urlencoded parameters where strings are raw and
everything else (numbers, booleans, lists, objects) is JSON: :func:`decode_value`
JSON-decodes a value unless it is free text. A request with ``parse_mode`` is
refused: Botfleet sends entities, and Telegram's markup is not emulated.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from .._common.ops import add_op_routes
from .._common.server import Dropped, drop_connection
from .botapi import METHODS
from .errors import ApiError, bad_request
from .state import EmulatorState, FaultKind
from .updates import json_bytes
from .world import bot_id_from_token

log = logging.getLogger("emulators.telegram")

STATE_KEY = web.AppKey("telegram_emulator_state", EmulatorState)

# Free text: never JSON-decoded ("123" stays the string "123").
STRING_PARAMS = frozenset(
    {
        "text",
        "parse_mode",
        "action",
        "url",
        "secret_token",
        "ip_address",
        "file_id",
        "language_code",
    }
)
# Structured parameters a JSON body may still carry as JSON-encoded strings.
JSON_PARAMS = frozenset(
    {"entities", "reply_parameters", "link_preview_options", "allowed_updates", "commands", "scope"}
)


def decode_value(name: str, value: str) -> Any:
    """One query or form value, decoded as Telegram does."""
    if name in STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value  # chat_id="@channel", a plain word


async def read_params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = {k: decode_value(k, v) for k, v in request.query.items()}
    if not request.body_exists:
        return params
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise bad_request("can't parse JSON request body") from None
        if not isinstance(body, dict):
            raise bad_request("JSON request body must be an object")
        for key, value in body.items():
            if key in JSON_PARAMS and isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            params[key] = value
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        for key, value in (await request.post()).items():
            if isinstance(value, FileField):
                params[key] = {"upload": value.filename, "size": len(value.file.read())}
            else:
                params[key] = decode_value(key, str(value))
    else:
        await request.read()  # another body type: ignored, like Telegram
    return params


def answer(
    payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json_bytes(payload), status=status, headers=headers, content_type="application/json"
    )


def error_answer(error: ApiError) -> web.Response:
    retry_after = (error.parameters or {}).get("retry_after")
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return answer(error.payload(), error.status, headers)


async def bot_api(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    token, method = request.match_info["token"], request.match_info["method"]
    try:
        params = await read_params(request)
    except ApiError as exc:
        return error_answer(exc)
    entry = state.sent.call(token, method, params)
    response = await _answer(request, state, token, method, params, entry)
    if entry["status"] is None:  # a dropped connection noted 0: no answer
        entry["status"] = response.status
    return response


async def _answer(
    request: web.Request,
    state: EmulatorState,
    token: str,
    method: str,
    params: dict[str, Any],
    entry: dict[str, Any],
) -> web.StreamResponse:
    fault = state.take_fault(token, method)
    if fault is not None:
        entry["fault"] = fault.kind.value
        if fault.kind is FaultKind.DROP_CONNECTION:
            entry["status"] = 0
            try:
                drop_connection(request)  # the client sees a connection closed without an answer
            except Dropped:
                return web.Response(status=500)  # never reaches the client
        if fault.kind is FaultKind.SLOW:
            await asyncio.sleep(fault.delay_seconds())
        elif fault.kind is FaultKind.HTML:
            error = fault.error()
            title = f"{error.status} {error.description}"
            page = f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center><hr><center>nginx</center></body></html>"
            return web.Response(text=page, status=error.status, content_type="text/html")
        else:
            return error_answer(fault.error())
    bot = state.world.bots_by_token.get(token)
    if bot is None:  # Telegram: 404 for a malformed token, 401 for an unknown one
        malformed = bot_id_from_token(token) is None
        return error_answer(
            ApiError(404, "Not Found") if malformed else ApiError(401, "Unauthorized")
        )
    handler = METHODS.get(method.lower())
    if handler is None:
        return error_answer(ApiError(404, "Not Found"))
    if params.get("parse_mode"):
        return error_answer(bad_request("parse_mode is not emulated; send entities"))
    try:
        result = handler(state, bot, params)
        if inspect.isawaitable(result):
            result = await result
    except ApiError as exc:
        return error_answer(exc)
    except Exception:  # pragma: no cover - an emulator bug: answer as Telegram would
        log.exception("emulator bug while handling %s", method)
        return error_answer(ApiError(500, "Internal Server Error"))
    return answer({"ok": True, "result": result})


async def file(request: web.Request) -> web.StreamResponse:
    stored = request.app[STATE_KEY].sent.download(
        request.match_info["token"], request.match_info["path"]
    )
    if stored is None:  # unknown path, or a file of another bot
        return error_answer(ApiError(404, "Not Found"))
    return web.Response(body=stored.data(), content_type=stored.mime_type)


def create_app(state: EmulatorState) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state
    app.router.add_route("*", "/bot{token}/{method}", bot_api)
    app.router.add_get("/file/bot{token}/{path:.*}", file)
    add_op_routes(app, state.ops)

    async def started(app: web.Application) -> None:
        state.updates.resume()  # a restarted server delivers to webhooks again

    async def stopping(app: web.Application) -> None:
        state.shutdown()  # before aiohttp waits for handlers: long polls answer at once

    async def cleanup(app: web.Application) -> None:
        await state.updates.close_session()

    app.on_startup.append(started)
    app.on_shutdown.append(stopping)
    app.on_cleanup.append(cleanup)
    return app
