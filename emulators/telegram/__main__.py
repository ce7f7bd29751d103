"""Run the emulator in the foreground: ``python -m emulators.telegram --port 8081``.

Prints ``Telegram emulator listening on http://HOST:PORT`` once ready (the real port
with ``--port 0``), serves until SIGINT or SIGTERM, then says ``Telegram emulator
stopped`` (bin/run's stop order is read from these lines). There is no authentication:
bind to loopback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .emulator import TelegramEmulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators.telegram", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0: a free port")
    parser.add_argument("--seed", type=int, help="random seed for ids and tokens")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    TelegramEmulator(args.host, args.port, seed=args.seed).serve_until_signalled(
        lambda port: f"Telegram emulator listening on http://{args.host}:{port}"
    )
    print("Telegram emulator stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
