"""The comparison: plain python-telegram-bot, one `Application` per bot, all of them on
one asyncio loop in this one process, each echoing every private text message.

    python -m benchmarks.ptb_baseline --url http://127.0.0.1:PORT --tokens-file F

Started by `benchmarks.telegram_load`, never by hand. It stores nothing (no database,
no broker): it is the least work a bot can do per message. It prints
`ptb baseline ready: N bots` once every bot polls, and on SIGTERM stops the bots and
prints one JSON line with the errors its handlers met (a send that timed out waiting
for a pooled connection is a reply lost: PTB logs it and moves on).
"""

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections import Counter
from pathlib import Path

from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters

MAX_LIFETIME_S = 3600  # a forgotten baseline ends by itself
STOP_TIMEOUT_S = 10

errors: Counter[str] = Counter()


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is not None and message.text:
        await message.reply_text(f"[ptb baseline] You said: {message.text}")


async def count_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    error = context.error
    errors[f"{type(error).__name__}: {str(error)[:80]}"] += 1


def build(token: str, url: str) -> Application:
    app = (
        Application.builder()
        .token(token)
        .base_url(f"{url}/bot")
        .base_file_url(f"{url}/file/bot")
        .build()
    )
    app.add_handler(MessageHandler(filters.ChatType.PRIVATE & filters.TEXT, echo))
    app.add_error_handler(count_error)
    return app


async def start(app: Application, poll_timeout: int) -> None:
    await app.initialize()
    await app.updater.start_polling(timeout=poll_timeout, allowed_updates=["message"])  # type: ignore[union-attr]
    await app.start()


async def stop(app: Application) -> None:
    try:
        if app.updater is not None and app.updater.running:
            await asyncio.wait_for(app.updater.stop(), STOP_TIMEOUT_S)
        if app.running:
            await asyncio.wait_for(app.stop(), STOP_TIMEOUT_S)
        await asyncio.wait_for(app.shutdown(), STOP_TIMEOUT_S)
    except Exception as error:  # stopping is best effort: the driver kills us anyway
        errors[f"stop: {type(error).__name__}"] += 1


async def main(args: argparse.Namespace) -> None:
    tokens = json.loads(Path(args.tokens_file).read_text())
    apps = [build(token, args.url) for token in tokens]
    finished = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, finished.set)
    try:
        await asyncio.gather(*(start(app, args.poll_timeout) for app in apps))
        print(f"ptb baseline ready: {len(apps)} bots", flush=True)
        try:
            await asyncio.wait_for(finished.wait(), MAX_LIFETIME_S)
        except TimeoutError:
            pass
    finally:
        await asyncio.gather(*(stop(app) for app in apps))
        print(json.dumps({"errors": dict(errors)}), flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ptb_baseline")
    parser.add_argument("--url", required=True, help="emulator root, e.g. http://127.0.0.1:8081")
    parser.add_argument("--tokens-file", required=True, help="JSON list of bot tokens")
    parser.add_argument("--poll-timeout", type=int, default=10, help="getUpdates long-poll seconds")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs each request URL (with the token) at INFO; WARNING keeps them out.
    asyncio.run(main(parse(sys.argv[1:])))
