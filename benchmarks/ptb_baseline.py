"""The peer: plain python-telegram-bot, one `Application` per bot, all of them on one
asyncio loop in this one process.

    python -m benchmarks.ptb_baseline --url http://127.0.0.1:PORT --tokens-file F
        [--poll-timeout S] [--gemini-url URL --model M]   (the key: GEMINI_API_KEY or --gemini-key)

Started by `benchmarks.telegram_load` and `benchmarks.ai_load`, never by hand.

What it is given (the fair peer): each Application is built with
`Application.builder().token(t).base_url(...).base_file_url(...).concurrent_updates(True)`
and nothing else, so PTB's default pool sizes apply: `concurrent_updates(True)` = 256
updates handled at once per bot, `connection_pool_size` 256 (the bot's HTTP pool for
sendMessage and the rest), `get_updates_connection_pool_size` 1, `pool_timeout` 1 s.
The ready line and the report repeat what the built Applications actually have.

Two modes:

- echo (default): every private text message is answered `[ptb baseline] You said:
  <text>`. It stores nothing (no database, no broker): the least work a bot can do
  per message. For the offline scenarios (burst, paced).
- AI (`--gemini-url`): the handler calls google-genai's async client,
  `genai.Client(api_key=..., http_options=HttpOptions(base_url=URL)).aio.models
  .generate_content(model, text, system_instruction=...)`, one client shared by all
  bots, library defaults otherwise (no retries, no timeout; with aiohttp installed the
  SDK's async transport is an aiohttp session with no connection limit), and replies
  with the answer's text. No "typing" action, no history, no rate limit: the least
  an AI bot can do per message. For `benchmarks.ai_load`.

It prints one line `ptb baseline ready: N bots {json of what it was given}` once every
bot polls, and on SIGTERM stops the bots and prints one JSON line with the errors its
handlers met (a send that timed out waiting for a pooled connection, or a failed
Gemini call, is a reply lost: PTB logs it and moves on).
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters

MAX_LIFETIME_S = 3600  # a forgotten baseline ends by itself
STOP_TIMEOUT_S = 10
SYSTEM_INSTRUCTION = "You are a helpful assistant. Answer briefly."

errors: Counter[str] = Counter()


class Gemini:
    """The one google-genai client every bot's handler shares (AI mode)."""

    client: Any = None
    model = ""


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is not None and message.text:
        await message.reply_text(f"[ptb baseline] You said: {message.text}")


async def ai_reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    from google.genai import types

    message = update.effective_message
    if message is None or not message.text:
        return
    response = await Gemini.client.aio.models.generate_content(
        model=Gemini.model,
        contents=message.text,
        config=types.GenerateContentConfig(system_instruction=SYSTEM_INSTRUCTION),
    )
    if not response.text:
        errors["Gemini answered no text"] += 1
        return
    await message.reply_text(response.text)


async def count_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    error = context.error
    errors[f"{type(error).__name__}: {str(error)[:80]}"] += 1


def build(token: str, url: str, *, ai: bool) -> Application:
    app = (
        Application.builder()
        .token(token)
        .base_url(f"{url}/bot")
        .base_file_url(f"{url}/file/bot")
        .concurrent_updates(True)
        .build()
    )
    handler = ai_reply if ai else echo
    app.add_handler(MessageHandler(filters.ChatType.PRIVATE & filters.TEXT, handler))
    app.add_error_handler(count_error)
    return app


def given(app: Application, args: argparse.Namespace) -> dict[str, Any]:
    """What one built Application actually has (read back, not restated)."""

    def pool(request: Any) -> dict[str, Any]:
        kwargs = getattr(request, "_client_kwargs", {})  # HTTPXRequest keeps its httpx kwargs
        limits, timeout = kwargs.get("limits"), kwargs.get("timeout")
        return {
            "connection_pool_size": getattr(limits, "max_connections", "PTB default"),
            "pool_timeout_s": getattr(timeout, "pool", "PTB default"),
        }

    bot_requests = getattr(app.bot, "_request", (None, app.bot.request))
    figures: dict[str, Any] = {
        "builder": "Application.builder().token().base_url().base_file_url()"
        ".concurrent_updates(True); PTB defaults otherwise",
        "concurrent_updates": app.update_processor.max_concurrent_updates,
        "request": pool(bot_requests[1]),
        "get_updates_request": pool(bot_requests[0]),
        "poll_timeout_s": args.poll_timeout,
        "mode": "ai" if args.gemini_url else "echo",
    }
    if args.gemini_url:
        figures["ai"] = {
            "client": "google-genai genai.Client(...).aio, one shared by all bots; "
            "HttpOptions(base_url) only (SDK defaults: no retries, no timeout)",
            "model": args.model,
            "system_instruction": SYSTEM_INSTRUCTION,
        }
    return figures


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
    if args.gemini_url:
        from google import genai
        from google.genai import types

        Gemini.client = genai.Client(
            api_key=args.gemini_key, http_options=types.HttpOptions(base_url=args.gemini_url)
        )
        Gemini.model = args.model
    apps = [build(token, args.url, ai=bool(args.gemini_url)) for token in tokens]
    finished = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, finished.set)
    try:
        await asyncio.gather(*(start(app, args.poll_timeout) for app in apps))
        print(f"ptb baseline ready: {len(apps)} bots {json.dumps(given(apps[0], args))}", flush=True)
        try:
            await asyncio.wait_for(finished.wait(), MAX_LIFETIME_S)
        except TimeoutError:
            pass
    finally:
        await asyncio.gather(*(stop(app) for app in apps))
        if Gemini.client is not None:
            try:
                await Gemini.client.aio.aclose()
            except Exception as error:  # best effort, as above
                errors[f"stop gemini: {type(error).__name__}"] += 1
        print(json.dumps({"errors": dict(errors)}), flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ptb_baseline")
    parser.add_argument("--url", required=True, help="emulator root, e.g. http://127.0.0.1:8081")
    parser.add_argument("--tokens-file", required=True, help="JSON list of bot tokens")
    parser.add_argument(
        "--poll-timeout", type=int, default=20, help="getUpdates long-poll seconds (default 20)"
    )
    parser.add_argument(
        "--gemini-url", help="AI mode: answer through google-genai's async client at this base URL"
    )
    parser.add_argument(
        "--gemini-key",
        default=os.environ.get("GEMINI_API_KEY", ""),
        help="AI mode: the API key (default: $GEMINI_API_KEY; the driver passes it that way, "
        "out of `ps`)",
    )
    parser.add_argument("--model", default="gemini-2.5-flash", help="AI mode: the model name")
    args = parser.parse_args(argv)
    if args.gemini_url and not args.gemini_key:
        parser.error("AI mode needs --gemini-key or GEMINI_API_KEY")
    return args


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs each request URL (with the token) at INFO; WARNING keeps them out.
    asyncio.run(main(parse(sys.argv[1:])))
