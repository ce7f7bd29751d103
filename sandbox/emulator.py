"""The sandbox's link to the Telegram Bot API emulator (its HTTP control API).

The sandbox sends a bot's token to the emulator (to read its chats, to write as a
person), so it works only with bots whose Bot API base URL is that emulator: a bot on
the real Telegram, or on another server, never has its token sent here.
"""

import threading

from django.conf import settings
from django.db.models import QuerySet

from bots.models import Bot
from emulators.telegram import EmulatorClient

_lock = threading.Lock()
_client: EmulatorClient | None = None


def emulator_client() -> EmulatorClient:
    global _client
    with _lock:
        if _client is None or _client.url.rstrip("/") != settings.SANDBOX_EMULATOR_URL.rstrip("/"):
            _client = EmulatorClient(settings.SANDBOX_EMULATOR_URL, timeout=10)
        return _client


def emulator_bot_api_url() -> str:
    """What a bot's api_base_url is when it lives on the sandbox emulator."""
    return settings.SANDBOX_EMULATOR_URL.rstrip("/") + "/bot"


def sandbox_bot_queryset() -> QuerySet[Bot]:
    """Bots the sandbox may talk to: those whose Bot API is the sandbox emulator (as
    typed in the admin, with or without a final slash)."""
    url = emulator_bot_api_url()
    return Bot.objects.filter(api_base_url__in=[url, url + "/"])


def sandbox_bots() -> list[Bot]:
    return list(sandbox_bot_queryset().order_by("name"))


def bot_register(client: EmulatorClient, bot: Bot) -> None:
    """Make the emulator know the bot (its memory starts empty on every start, and a
    bot added in the admin was never in it). Idempotent: a token it knows is left as it
    is. The username Telegram's getMe gave before is kept, so mentions still match;
    a bot never started gets one from the emulator, which getMe then stores.

    Raises ValueError when the emulator holds another token with the same bot id.
    """
    client.add_bot(
        token=bot.token.reveal(), username=bot.username or None,
        first_name=bot.first_name or bot.name,
    )
