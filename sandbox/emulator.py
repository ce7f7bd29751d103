"""The sandbox's link to the Telegram Bot API emulator (its HTTP control API)."""

import threading

from django.conf import settings

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


def sandbox_bots() -> list[Bot]:
    """Bots the sandbox can talk to: those whose Bot API is the sandbox emulator."""
    return list(Bot.objects.filter(api_base_url=emulator_bot_api_url()).order_by("name"))
