"""Standalone Gemini emulator: ``python -m emulators.gemini --port 8082``.

Point a client at ``http://127.0.0.1:8082`` (HttpOptions(base_url=...)) and
drive it with ``GeminiEmulatorClient`` or plain JSON calls to ``/_emulator/...``
(see ``emulators/gemini/control.py``).
"""

from __future__ import annotations

import argparse
import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .server import create_app
from .state import DEFAULT_KNOWN_MODELS, EmulatorConfig, EmulatorState


class KeySafeAccessLogger(AbstractAccessLogger):
    """Logs method, path and status only.

    aiohttp's default format logs the full request line, which would leak an
    API key passed as ``?key=...``; the path without query string cannot.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s -> %s (%.3fs)", request.method, request.path, response.status, time)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emulators.gemini", description=__doc__)
    parser.add_argument(
        "--host", default="127.0.0.1", help="bind address (control API has no auth)"
    )
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument(
        "--valid-key",
        action="append",
        dest="valid_keys",
        help="accepted API key (repeatable); default: any key",
    )
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        help=f"known model (repeatable); default: {', '.join(DEFAULT_KNOWN_MODELS)}",
    )
    parser.add_argument("--any-model", action="store_true", help="accept every model name")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    models = None if args.any_model else frozenset(args.models or DEFAULT_KNOWN_MODELS)
    state = EmulatorState(
        EmulatorConfig(
            valid_keys=frozenset(args.valid_keys) if args.valid_keys else None,
            known_models=models,
            latency=args.latency,
        )
    )
    web.run_app(
        create_app(state),
        host=args.host,
        port=args.port,
        access_log_class=KeySafeAccessLogger,
        access_log=logging.getLogger("emulators.gemini.access"),
        handler_cancellation=True,
        backlog=1024,
        shutdown_timeout=1.0,
        print=lambda msg: logging.getLogger("emulators.gemini").info("%s", msg),
    )


if __name__ == "__main__":
    main()
