"""Small builders for test rows (plain functions: the models are simple)."""

import itertools
import secrets

from bots.models import Bot, BotTask
from conversations.models import Persona
from credentials.models import AICredential

_counter = itertools.count(1)


def make_token(bot_id: int | None = None) -> str:
    bot_id = bot_id or 100000 + next(_counter)
    return f"{bot_id}:{secrets.token_urlsafe(26)[:35]}"


def make_persona(**fields: object) -> Persona:
    defaults: dict[str, object] = {
        "name": f"Persona {next(_counter)}",
        "instructions": "You are a helpful assistant.",
    }
    return Persona.objects.create(**{**defaults, **fields})


def make_credential(**fields: object) -> AICredential:
    defaults: dict[str, object] = {
        "name": f"Credential {next(_counter)}",
        "provider": AICredential.Provider.OFFLINE,
    }
    return AICredential.objects.create(**{**defaults, **fields})


def make_bot(**fields: object) -> Bot:
    """A bot answering through the offline provider unless told otherwise (credential=None:
    no AI, the persona's own lines)."""
    defaults: dict[str, object] = {"name": f"Bot {next(_counter)}", "token": make_token()}
    if "credential" not in fields:
        fields["credential"] = make_credential()
    return Bot.objects.create(**{**defaults, **fields})


def make_task(bot: Bot | None = None, **fields: object) -> BotTask:
    fields.setdefault("name", f"Task {next(_counter)}")
    return BotTask.objects.create(bot=bot or make_bot(), **fields)
