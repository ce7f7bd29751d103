"""Standalone runner behind ``python -m emulators.gemini`` / ``python -m emulators.openai_compat``.

Both take the same options; an emulator with a default model list (Gemini)
also gets ``--any-model`` to switch that list off.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .state import EmulatorConfig


class KeySafeAccessLogger(AbstractAccessLogger):
    """Logs method, path and status only.

    aiohttp's default format logs the full request line, which would leak an
    API key passed as ``?key=...`` (Gemini accepts that). Keys in headers
    (``x-goog-api-key``, ``Authorization``) are never logged; the path without
    query string keeps it that way for any odd client too.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s -> %s (%.3fs)", request.method, request.path, response.status, time)


def build_parser(
    *, prog: str, description: str | None, default_port: int, default_models: Sequence[str] | None
) -> argparse.ArgumentParser:
    """``default_models`` None = any model unless ``--model`` is given."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--host", default="127.0.0.1", help="bind address (control API has no auth)"
    )
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument(
        "--valid-key",
        action="append",
        dest="valid_keys",
        help="accepted API key (repeatable); default: any key",
    )
    models_default = "accept any model" if default_models is None else ", ".join(default_models)
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        help=f"known model (repeatable); default: {models_default}",
    )
    if default_models is not None:
        parser.add_argument("--any-model", action="store_true", help="accept every model name")
    parser.add_argument("--log-level", default="INFO")
    return parser


def known_models(
    args: argparse.Namespace, default_models: Sequence[str] | None
) -> frozenset[str] | None:
    """``--any-model`` wins over ``--model``; without either, the default list (None = any)."""
    if default_models is not None and args.any_model:
        return None
    if args.models:
        return frozenset(args.models)
    return None if default_models is None else frozenset(default_models)


def serve(
    args: argparse.Namespace,
    *,
    default_models: Sequence[str] | None,
    config_type: type[EmulatorConfig],
    make_state: Callable[[Any], Any],
    create_app: Callable[[Any], web.Application],
    logger: str,
) -> None:
    """Run the emulator in the foreground until interrupted; ``logger`` e.g. "emulators.gemini"."""
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    state = make_state(
        config_type(
            valid_keys=frozenset(args.valid_keys) if args.valid_keys else None,
            known_models=known_models(args, default_models),
            latency=args.latency,
        )
    )
    web.run_app(
        create_app(state),
        host=args.host,
        port=args.port,
        access_log_class=KeySafeAccessLogger,
        access_log=logging.getLogger(f"{logger}.access"),
        handler_cancellation=True,
        backlog=1024,
        shutdown_timeout=1.0,
        print=lambda msg: logging.getLogger(logger).info("%s", msg),
    )
