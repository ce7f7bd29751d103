"""Control operations by name, declared once: on the emulator's state.

The state marks its control methods with ``@control_op``. The HTTP routes, the
in-process emulator and the HTTP client all come from those methods and their
signatures, so nothing re-declares them (the Telegram emulator works this way)::

    GET  /_emulator         -> {"ok": true, "result": ["add_bot", ...]}
    POST /_emulator/<op>    {keyword arguments} -> {"ok": true, "result": ...}
                            | {"ok": false, "error": "...", "type": "KeyError"} (404, 408 or 400)

A caller (:class:`OpsCaller`) binds the arguments to the operation's signature
before sending, so a wrong call fails at once with the TypeError Python would
raise, and an error comes back as the type the state raised. There is no
authentication: bind to 127.0.0.1 only.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from aiohttp import web

F = TypeVar("F", bound=Callable[..., Any])

PREFIX = "/_emulator"

# Errors travel by name and are raised again as the same type; their HTTP status.
# KeyError before LookupError: the first type that matches names the error.
ERRORS: dict[str, tuple[type[Exception], int]] = {
    "AttributeError": (AttributeError, 404),
    "TimeoutError": (TimeoutError, 408),
    "KeyError": (KeyError, 404),
    "LookupError": (LookupError, 404),
    "ValueError": (ValueError, 400),
    "TypeError": (TypeError, 400),
}


def control_op(fn: F) -> F:
    """Mark a state method as a control operation."""
    # A function takes any attribute, but its type does not declare this one.
    fn.__control_op__ = True  # type: ignore[attr-defined]
    return fn


def _marked(cls: type) -> dict[str, Callable[..., Any]]:
    return {
        name: fn
        for name, fn in inspect.getmembers(cls, inspect.isfunction)
        if getattr(fn, "__control_op__", False)
    }


def op_signatures(*classes: type) -> dict[str, inspect.Signature]:
    """The signature (without ``self``) of each operation of ``classes``; a name once only."""
    signatures: dict[str, inspect.Signature] = {}
    for cls in classes:
        for name, fn in _marked(cls).items():
            if name in signatures:
                raise TypeError(f"control operation {name!r} is defined twice")
            signature = inspect.signature(fn)
            signatures[name] = signature.replace(parameters=list(signature.parameters.values())[1:])
    return signatures


def bound_ops(*objects: object) -> dict[str, Callable[..., Any]]:
    """The operations of ``objects`` by name, bound to them."""
    return {name: getattr(obj, name) for obj in objects for name in _marked(type(obj))}


async def run_op(ops: Mapping[str, Callable[..., Any]], name: str, kwargs: dict[str, Any]) -> Any:
    fn = ops.get(name)
    if fn is None:
        raise AttributeError(f"unknown emulator control operation {name!r}")
    result = fn(**kwargs)
    return await result if inspect.isawaitable(result) else result


def add_op_routes(app: web.Application, ops: Mapping[str, Callable[..., Any]]) -> None:
    """Serve ``ops`` under ``/_emulator`` (run on the app's loop)."""

    async def index(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "result": sorted(ops)})

    async def call(request: web.Request) -> web.Response:
        try:
            kwargs = json.loads(await request.read() or b"{}")
            if not isinstance(kwargs, dict):
                raise ValueError("the body must be a JSON object of keyword arguments")
            result = await run_op(ops, request.match_info["op"], kwargs)
        except tuple(error for error, _ in ERRORS.values()) as exc:
            kind = next(k for k, (error, _) in ERRORS.items() if isinstance(exc, error))
            # str() of a KeyError is the repr of its message.
            text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            return web.json_response(
                {"ok": False, "error": text, "type": kind}, status=ERRORS[kind][1]
            )
        return web.json_response({"ok": True, "result": result})

    app.router.add_get(PREFIX, index)
    app.router.add_route("*", PREFIX + "/{op}", call)


class OpsCaller:
    """The operations as methods with the state's signatures; ``_invoke`` runs one
    (in-process on the emulator's loop, or over HTTP)."""

    _op_signatures: ClassVar[Mapping[str, inspect.Signature]] = {}

    def _invoke(self, op: str, kwargs: dict[str, Any], *, timeout: float | None = None) -> Any:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Callable[..., Any]:
        signature = type(self)._op_signatures.get(name)
        if signature is None:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute or control operation {name!r}"
            )

        def operation(*args: Any, **kwargs: Any) -> Any:
            arguments = signature.bind(*args, **kwargs).arguments
            waits = signature.parameters.get("timeout")
            wait = arguments.get("timeout", waits.default if waits else None)
            # An operation that waits gets that long, and a margin, before the call gives up.
            timeout = float(wait) + 10 if isinstance(wait, int | float) else None
            return self._invoke(name, dict(arguments), timeout=timeout)

        operation.__name__ = name
        # What inspect.signature() reports; a function's type does not declare it.
        operation.__signature__ = signature  # type: ignore[attr-defined]
        return operation

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *type(self)._op_signatures]
