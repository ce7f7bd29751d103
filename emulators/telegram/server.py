"""aiohttp application: the Bot API routes, the file route and the ``/_emulator`` control API.

Routes:

* ``GET|POST /bot<token>/<method>`` – Bot API (params from query string, JSON body,
  form-urlencoded or multipart body, merged in that order);
* ``GET /file/bot<token>/<path>`` – file downloads (the ``file_path`` getFile gave this
  bot; anything else 404);
* ``GET /_emulator`` – list of control operations;
* ``GET|POST /_emulator/<operation>`` – control API; JSON object body (or query string)
  = keyword arguments of :class:`~.state.EmulatorState` method ``<operation>``;
  answers ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": ..., "type": ...}``.

How python-telegram-bot 22 sends parameters (``telegram/request/_requestdata.py``):
form-urlencoded ``json_parameters`` (multipart when uploading files), where string
values are sent raw and everything else (ints, bools, lists, dicts such as
``reply_parameters``/``entities``/``allowed_updates``) is JSON-encoded. Hence
:func:`decode_value` JSON-decodes form values except for known free-text fields.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from .botapi import METHODS
from .errors import ApiError
from .state import EmulatorState, bot_id_from_token, json_bytes

log = logging.getLogger("emulators.telegram")

STATE_KEY = web.AppKey("emulator_state", EmulatorState)

# Free-text parameters: never JSON-decode them ("123" must stay the string "123").
STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "action",
        "url",
        "secret_token",
        "ip_address",
        "title",
        "description",
        "short_description",
        "name",
        "query",
        "callback_query_id",
        "inline_query_id",
        "inline_message_id",
        "business_connection_id",
        "message_effect_id",
        "emoji",
        "language_code",
        "question",
        "explanation",
        "address",
        "first_name",
        "last_name",
        "phone_number",
        "vcard",
        "photo",
        "document",
        "voice",
        "audio",
        "video",
        "animation",
        "sticker",
        "video_note",
        "thumbnail",
        "file_id",
        "custom_title",
    }
)

# Structured parameters that a JSON body may still carry as JSON-encoded strings.
JSON_PARAMS = frozenset(
    {
        "entities",
        "caption_entities",
        "reply_parameters",
        "reply_markup",
        "link_preview_options",
        "allowed_updates",
        "commands",
        "scope",
        "media",
        "explanation_entities",
        "options",
    }
)


def decode_value(name: str, value: str) -> Any:
    """Decode one query/form value the way Telegram does (JSON unless it is free text)."""
    if name in STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value  # e.g. chat_id="@channel" or a plain word


async def read_params(request: web.Request) -> dict[str, Any]:
    """Merge query string and body parameters into one decoded dict."""
    params: dict[str, Any] = {k: decode_value(k, v) for k, v in request.query.items()}
    if not request.body_exists:
        return params
    ctype = request.content_type
    if ctype == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "Bad Request: can't parse JSON request body") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Bad Request: JSON request body must be an object")
        for key, value in body.items():
            if key in JSON_PARAMS and isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            params[key] = value
    elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, FileField):
                size = len(value.file.read())
                params[key] = {
                    "upload": value.filename,
                    "content_type": value.content_type,
                    "size": size,
                }
            else:
                params[key] = decode_value(key, str(value))
    else:
        await request.read()  # unknown body type: ignore it, like Telegram
    return params


def api_response(
    payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json_bytes(payload), status=status, headers=headers, content_type="application/json"
    )


def error_response(error: ApiError) -> web.Response:
    headers = None
    if error.parameters and error.parameters.get("retry_after") is not None:
        headers = {"Retry-After": str(error.parameters["retry_after"])}
    return api_response(error.payload(), status=error.status, headers=headers)


async def handle_bot_api(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    token = request.match_info["token"]
    method = request.match_info["method"]
    try:
        params = await read_params(request)
    except ApiError as exc:
        return error_response(exc)
    entry = state.log_call(token, method, params)
    response = await _dispatch(request, state, token, method, params, entry)
    entry["status"] = response.status
    return response


async def _dispatch(
    request: web.Request,
    state: EmulatorState,
    token: str,
    method: str,
    params: dict[str, Any],
    entry: dict[str, Any],
) -> web.StreamResponse:
    fault = state.take_fault(token, method)
    if fault is not None:
        entry["fault"] = fault.kind
        if fault.kind == "drop":
            entry["status"] = 0
            # Close the socket without writing anything: clients see
            # "server disconnected without sending a response".
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        elif fault.kind == "html":
            page = (f"<html><head><title>{fault.status} {fault.description}</title></head>"
                    f"<body><center><h1>{fault.status} {fault.description}</h1></center>"
                    "<hr><center>nginx</center></body></html>")
            return web.Response(text=page, status=fault.status, content_type="text/html")
        else:
            parameters = (
                {"retry_after": fault.retry_after} if fault.retry_after is not None else None
            )
            return error_response(ApiError(fault.status, fault.description, parameters))

    bot = state.bots_by_token.get(token)
    if bot is None:
        # Malformed tokens get 404 from Telegram, well-formed unknown ones 401.
        if bot_id_from_token(token) is None:
            return error_response(ApiError(404, "Not Found"))
        return error_response(ApiError(401, "Unauthorized"))
    handler = METHODS.get(method.lower())
    if handler is None:
        return error_response(ApiError(404, "Not Found"))
    try:
        result = handler(state, bot, params)
        if asyncio.iscoroutine(result):
            result = await result
    except ApiError as exc:
        return error_response(exc)
    except Exception:  # pragma: no cover - a bug in the emulator, answer like Telegram would
        log.exception("emulator bug while handling %s", method)
        return error_response(ApiError(500, "Internal Server Error"))
    return api_response({"ok": True, "result": result})


async def handle_file(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    file = state.download_file(request.match_info["token"], request.match_info["path"])
    if file is None:  # unknown path, or a file of another bot
        return api_response(
            {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
        )
    return web.Response(body=file.data(), content_type=file.mime_type)


async def handle_control_index(request: web.Request) -> web.StreamResponse:
    return api_response({"ok": True, "result": EmulatorState.control_op_names()})


async def handle_control(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    op = request.match_info["op"]
    kwargs: dict[str, Any] = {k: decode_value(k, v) for k, v in request.query.items()}
    if request.body_exists:
        try:
            body = await request.json()
        except ValueError:
            return _control_error(400, "request body must be a JSON object", "ValueError")
        if body is not None and not isinstance(body, dict):
            return _control_error(400, "request body must be a JSON object", "ValueError")
        kwargs.update(body or {})
    try:
        result = await state.call_control(op, kwargs)
    except AttributeError as exc:
        return _control_error(404, str(exc), "AttributeError")
    except TimeoutError as exc:
        return _control_error(408, str(exc), "TimeoutError")
    except KeyError as exc:
        return _control_error(404, str(exc.args[0]) if exc.args else "not found", "KeyError")
    except LookupError as exc:
        return _control_error(404, str(exc), "LookupError")
    except (TypeError, ValueError) as exc:
        return _control_error(400, str(exc), type(exc).__name__)
    return api_response({"ok": True, "result": result})


def _control_error(status: int, message: str, kind: str) -> web.Response:
    return api_response({"ok": False, "error": message, "type": kind}, status=status)


def create_app(state: EmulatorState, *, control_api: bool = True) -> web.Application:
    """Build the aiohttp application serving ``state``."""
    app = web.Application(client_max_size=60 * 1024 * 1024)
    app[STATE_KEY] = state
    app.router.add_route("*", "/bot{token}/{method}", handle_bot_api)
    app.router.add_route("GET", "/file/bot{token}/{path:.*}", handle_file)
    if control_api:
        app.router.add_route("GET", "/_emulator", handle_control_index)
        app.router.add_route("*", "/_emulator/{op}", handle_control)
    app.on_startup.append(_resume_webhooks)
    app.on_cleanup.append(_close_webhook_session)
    return app


async def _resume_webhooks(app: web.Application) -> None:
    # Stopping the server stopped webhook deliveries; a restart carries on with them.
    app[STATE_KEY].resume_webhooks()


async def _close_webhook_session(app: web.Application) -> None:
    await app[STATE_KEY].close_webhook_session()


async def start_server(
    state: EmulatorState, host: str = "127.0.0.1", port: int = 0, *, control_api: bool = True
) -> tuple[web.AppRunner, int]:
    """Start listening; returns the runner (for cleanup) and the bound port."""
    runner = web.AppRunner(
        create_app(state, control_api=control_api),
        access_log=None,
        # Cancel handlers whose client went away, so abandoned long-polls free their slot.
        handler_cancellation=True,
        keepalive_timeout=75,
        # Handlers finish fast once state.shutdown() ran; don't hang a test on exit.
        shutdown_timeout=5.0,
    )
    await runner.setup()
    # A big backlog: a benchmark may open ~1,000 polling connections at once.
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    bound_port = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound_port = int(address[1])
            break
    return runner, bound_port
