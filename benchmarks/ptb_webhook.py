"""The webhook peer: plain python-telegram-bot receiving its updates through its own
webhook server (`Updater.start_webhook`, tornado), one `Application` per bot, all of
them on one asyncio loop in this one process.

    python -m benchmarks.ptb_webhook --url http://127.0.0.1:PORT --tokens-file F
        --out-file G [--mode noop|echo]

Started by `benchmarks.webhook_load`, never by hand (needs tornado:
`pip install "python-telegram-bot[webhooks]"`).

What it is given: each Application is built with
`Application.builder().token(t).base_url(...).base_file_url(...).concurrent_updates(True)`
(PTB's default pools otherwise, as benchmarks/ptb_baseline.py) and started with
`app.updater.start_webhook(listen="127.0.0.1", port=<a free port of its own>,
url_path="hook", webhook_url="http://127.0.0.1:<port>/hook", secret_token=<random>,
allowed_updates=["message"], max_connections=40)`, which calls setWebhook on the
emulator itself; then `app.start()`. PTB answers a push 200 as soon as the update is
parsed (`Update.de_json`) and queued; the handlers run afterwards.

- noop: the handler does nothing (the ingest scenario: what receiving costs);
- echo: every private text message is answered `[ptb webhook] You said: <text>` (the
  end-to-end scenario), nothing stored.

Once every bot's webhook is set it writes `--out-file` (JSON: per bot the webhook URL
and secret, and what it was given) and prints `ptb webhook ready: N bots`. On SIGTERM
it stops and prints one JSON line with the errors its handlers met.
"""

import argparse
import asyncio
import json
import logging
import secrets
import signal
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters

MAX_LIFETIME_S = 3600  # a forgotten peer ends by itself
STOP_TIMEOUT_S = 10
URL_PATH = "hook"

errors: Counter[str] = Counter()


async def noop(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    return None


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is not None and message.text:
        await message.reply_text(f"[ptb webhook] You said: {message.text}")


async def count_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    error = context.error
    errors[f"{type(error).__name__}: {str(error)[:80]}"] += 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def build(token: str, url: str, mode: str) -> Application:
    app = (
        Application.builder()
        .token(token)
        .base_url(f"{url}/bot")
        .base_file_url(f"{url}/file/bot")
        .concurrent_updates(True)
        .build()
    )
    app.add_handler(
        MessageHandler(filters.ChatType.PRIVATE & filters.TEXT, echo if mode == "echo" else noop)
    )
    app.add_error_handler(count_error)
    return app


async def start(app: Application) -> dict[str, Any]:
    secret = secrets.token_urlsafe(32)
    port = free_port()
    hook_url = f"http://127.0.0.1:{port}/{URL_PATH}"
    await app.initialize()
    await app.updater.start_webhook(  # type: ignore[union-attr]
        listen="127.0.0.1",
        port=port,
        url_path=URL_PATH,
        webhook_url=hook_url,
        secret_token=secret,
        allowed_updates=["message"],
        max_connections=40,
    )
    await app.start()
    return {"bot_id": app.bot.id, "url": hook_url, "secret": secret}


async def stop(app: Application) -> None:
    try:
        if app.updater is not None and app.updater.running:
            await asyncio.wait_for(app.updater.stop(), STOP_TIMEOUT_S)
        if app.running:
            await asyncio.wait_for(app.stop(), STOP_TIMEOUT_S)
        await asyncio.wait_for(app.shutdown(), STOP_TIMEOUT_S)
    except Exception as error:  # best effort: the driver kills us anyway
        errors[f"stop: {type(error).__name__}"] += 1


def given(app: Application, mode: str) -> dict[str, Any]:
    return {
        "builder": "Application.builder().token().base_url().base_file_url()"
        ".concurrent_updates(True); PTB defaults otherwise",
        "concurrent_updates": app.update_processor.max_concurrent_updates,
        "webhook": 'updater.start_webhook(listen="127.0.0.1", port=<own>, url_path="hook", '
        "webhook_url=..., secret_token=<random>, allowed_updates=['message'], max_connections=40)"
        ": tornado, one server per bot, all on one asyncio loop",
        "handler": "noop (does nothing)" if mode == "noop" else "echo (reply_text)",
        "process": "one process, one asyncio loop",
    }


async def main(args: argparse.Namespace) -> None:
    tokens = json.loads(Path(args.tokens_file).read_text())
    apps = [build(token, args.url, args.mode) for token in tokens]
    finished = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, finished.set)
    try:
        hooks = []
        for app in apps:  # one by one: each picks a free port, then binds it at once
            hooks.append(await start(app))
        Path(args.out_file).write_text(json.dumps({"hooks": hooks, "given": given(apps[0], args.mode)}))
        print(f"ptb webhook ready: {len(apps)} bots", flush=True)
        try:
            await asyncio.wait_for(finished.wait(), MAX_LIFETIME_S)
        except TimeoutError:
            pass
    finally:
        await asyncio.gather(*(stop(app) for app in apps))
        print(json.dumps({"errors": dict(errors)}), flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ptb_webhook")
    parser.add_argument("--url", required=True, help="emulator root, e.g. http://127.0.0.1:8081")
    parser.add_argument("--tokens-file", required=True, help="JSON list of bot tokens")
    parser.add_argument("--out-file", required=True, help="where to write each bot's webhook URL and secret")
    parser.add_argument("--mode", choices=["noop", "echo"], default="noop")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(main(parse(sys.argv[1:])))
