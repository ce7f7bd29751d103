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


def bot_admin_form(bot: Bot | None = None, **overrides: object) -> dict[str, object]:
    """What the admin's bot form posts (an unchanged bot, or a new one), with its inline
    access rules and quotas empty."""
    data: dict[str, object] = {
        "name": bot.name if bot else "", "token": "", "api_base_url": bot.api_base_url if bot else "",
        "persona": "", "credential": "", "update_mode": bot.update_mode if bot else "polling",
        "access_mode": "open", "daily_messages_per_user": 0, "daily_tokens_per_user": 0,
        "daily_messages_per_group": 0, "time_zone": "UTC", "admin_telegram_ids": "",
    }
    for prefix in ("access_rules", "quota_overrides"):
        data.update({f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0,
                     f"{prefix}-MIN_NUM_FORMS": 0, f"{prefix}-MAX_NUM_FORMS": 1000})
    return {**data, **overrides}
