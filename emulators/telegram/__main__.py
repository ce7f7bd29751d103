"""Run the emulator in the foreground: ``python -m emulators.telegram --port 8081``.

Prints ``Telegram emulator listening on http://HOST:PORT`` once ready (the real
port when ``--port 0``), then serves until SIGINT/SIGTERM and exits with code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .server import start_server
from .state import EmulatorState


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emulators.telegram", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8081, help="port (0 = pick a free one; default 8081)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed for ids/tokens (reproducible runs)"
    )
    parser.add_argument(
        "--bot",
        action="append",
        default=[],
        metavar="TOKEN[=USERNAME]",
        help="pre-register a bot token (repeatable), optionally with its username",
    )
    parser.add_argument(
        "--lenient-html",
        action="store_true",
        help="accept a bare '&' in HTML texts like real Telegram does (default: reject it)",
    )
    parser.add_argument(
        "--no-control-api", action="store_true", help="do not expose /_emulator/..."
    )
    parser.add_argument("--log-level", default="WARNING")
    return parser


async def serve(args: argparse.Namespace) -> None:
    state = EmulatorState(seed=args.seed, strict_html_ampersand=not args.lenient_html)
    for spec in args.bot:
        token, _, username = spec.partition("=")
        state.add_bot(token=token, username=username or None)
    runner, port = await start_server(
        state, args.host, args.port, control_api=not args.no_control_api
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"Telegram emulator listening on http://{args.host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        state.shutdown()  # answer waiting long-polls so cleanup is quick
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(args))
    print("Telegram emulator stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
