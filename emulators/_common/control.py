"""JSON control API under ``/_emulator/`` for the standalone emulators.

Each route only translates JSON to a call on the emulator's state (the same
methods the in-process emulator calls), so both control paths behave
identically. Invalid input -> 400 ``{"error": "..."}``. Gemini and
OpenAI-compatible emulators serve exactly the same routes and payloads:

    GET    /_emulator/health                      -> {"ok": true, "emulator": "gemini" | "openai_compat"}
    GET    /_emulator/requests                    -> {"requests": [RecordedRequest...]}
    DELETE /_emulator/requests
    POST   /_emulator/wait_for_requests           {"count": 3, "timeout": 5} -> {"requests": [...]} | 408
    GET    /_emulator/faults                      -> {"faults": [...]} (pending)
    POST   /_emulator/faults                      {"kind", "times", "retry_after", "delay", "message", "after_chunks"}
    DELETE /_emulator/faults
    POST   /_emulator/latency                     {"seconds": 0.5}
    POST   /_emulator/stream_timing               {"first_chunk_delay": 0.01, "chunk_delay": 0.01, "chunks": 4 | null}
    POST   /_emulator/valid_keys                  {"keys": ["k1"] | null}
    POST   /_emulator/known_models                {"models": ["gemini-2.5-flash"] | null}
    POST   /_emulator/replies                     {"replies": ["a", "b"]}
    POST   /_emulator/reset
    GET    /_emulator/max_requests_in_window?seconds=60[&model=m] -> {"max": n}
    GET    /_emulator/requests_per_minute         -> {"counts": {"2025-01-01T12:00": 5}}

There is no authentication: bind to 127.0.0.1 (the default) only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .faults import FAULT_FIELDS
from .state import EmulatorStateBase

PREFIX = "/_emulator"

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _bad_request(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _payload(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("control payload must be a JSON object")
    return data


def _list_or_null(data: dict[str, Any], name: str) -> list[Any] | None:
    value = data[name]  # KeyError -> "missing field" 400, like any required field
    if value is not None and not isinstance(value, list):
        raise ValueError(f"{name} must be a list or null")
    return value


def _guard(fn: _Handler) -> _Handler:
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except KeyError as exc:
            return _bad_request(f"missing field {exc}")
        except (ValueError, TypeError) as exc:
            # Same message the in-process call raises, so the client can re-raise it verbatim.
            return _bad_request(str(exc))

    return wrapper


def add_control_routes(
    app: web.Application, state: EmulatorStateBase[Any, Any], emulator: str
) -> None:
    """Register the routes; ``emulator`` names it in ``/health`` (e.g. "gemini")."""
    ok = {"ok": True}

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "emulator": emulator})

    async def get_requests(request: web.Request) -> web.Response:
        return web.json_response({"requests": [r.to_dict() for r in state.requests()]})

    async def clear_requests(request: web.Request) -> web.Response:
        state.clear_requests()
        return web.json_response(ok)

    async def wait_for_requests(request: web.Request) -> web.Response:
        data = await _payload(request)
        count = int(data["count"])
        timeout = float(data.get("timeout", 5.0))
        # The wait blocks on a threading.Condition; run it off the loop so the
        # requests we are waiting for can still be served.
        loop = asyncio.get_running_loop()
        try:
            recs = await loop.run_in_executor(None, state.wait_for_requests, count, timeout)
        except TimeoutError as exc:
            return _bad_request(str(exc), status=408)
        return web.json_response({"requests": [r.to_dict() for r in recs]})

    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response({"faults": [f.to_dict() for f in state.pending_faults()]})

    async def add_fault(request: web.Request) -> web.Response:
        data = await _payload(request)
        unknown = set(data) - FAULT_FIELDS
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        fault = state.add_fault(
            data["kind"],
            times=data.get("times", 1),
            retry_after=data.get("retry_after"),
            delay=data.get("delay"),
            message=data.get("message"),
            after_chunks=data.get("after_chunks"),
        )
        return web.json_response({"fault": fault.to_dict()})

    async def clear_faults(request: web.Request) -> web.Response:
        state.clear_faults()
        return web.json_response(ok)

    async def set_latency(request: web.Request) -> web.Response:
        state.set_latency(float((await _payload(request))["seconds"]))
        return web.json_response(ok)

    async def set_stream_timing(request: web.Request) -> web.Response:
        data = await _payload(request)
        unknown = set(data) - {"first_chunk_delay", "chunk_delay", "chunks"}
        if unknown:
            raise ValueError(f"unknown stream timing fields: {sorted(unknown)}")
        state.set_stream_timing(**data)
        return web.json_response(ok)

    async def set_valid_keys(request: web.Request) -> web.Response:
        state.set_valid_keys(_list_or_null(await _payload(request), "keys"))
        return web.json_response(ok)

    async def set_known_models(request: web.Request) -> web.Response:
        state.set_known_models(_list_or_null(await _payload(request), "models"))
        return web.json_response(ok)

    async def script_replies(request: web.Request) -> web.Response:
        replies = (await _payload(request))["replies"]
        if not isinstance(replies, list):
            raise ValueError("replies must be a list")
        state.script_replies(replies)
        return web.json_response(ok)

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response(ok)

    async def max_requests_in_window(request: web.Request) -> web.Response:
        seconds = float(request.query.get("seconds", "60"))
        model = request.query.get("model")
        return web.json_response({"max": state.max_requests_in_window(seconds, model=model)})

    async def requests_per_minute(request: web.Request) -> web.Response:
        return web.json_response({"counts": state.requests_per_minute()})

    routes: list[tuple[str, str, _Handler]] = [
        ("GET", "/health", health),
        ("GET", "/requests", get_requests),
        ("DELETE", "/requests", clear_requests),
        ("POST", "/wait_for_requests", wait_for_requests),
        ("GET", "/faults", get_faults),
        ("POST", "/faults", add_fault),
        ("DELETE", "/faults", clear_faults),
        ("POST", "/latency", set_latency),
        ("POST", "/stream_timing", set_stream_timing),
        ("POST", "/valid_keys", set_valid_keys),
        ("POST", "/known_models", set_known_models),
        ("POST", "/replies", script_replies),
        ("POST", "/reset", reset),
        ("GET", "/max_requests_in_window", max_requests_in_window),
        ("GET", "/requests_per_minute", requests_per_minute),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, PREFIX + path, _guard(handler))
