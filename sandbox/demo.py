"""The out-of-the-box demo: a persona, a credential, a bot on the emulator and its
task. Seeded once (idempotent by name); wired to a fresh emulator on every start."""

import logging
import os
import secrets
from dataclasses import dataclass

from django.db import transaction

from bots.models import Bot, BotTask
from bots.services import task_restart
from conversations.models import Persona
from credentials.models import AICredential
from emulators.telegram import EmulatorClient
from sandbox.emulator import emulator_bot_api_url

log = logging.getLogger(__name__)

DEMO_BOT_NAME = "Demo bot"
DEMO_BOT_USERNAME = "botfleet_demo_bot"
DEMO_BOT_DISPLAY_NAME = "Fleet"
DEMO_TASK_NAME = "Demo bot task"
DEMO_PERSONA = {
    "name": "Demo persona",
    "instructions": (
        "You are Fleet, the friendly demo bot of Botfleet. Answer briefly and warmly. "
        "When people ask what you can do, explain that you are a Telegram bot run from "
        "the Botfleet admin, with a persona and an AI credential."
    ),
    "greeting": "Hi, I'm Fleet, Botfleet's demo bot! Ask me anything. In the demo group, "
    "mention me (@botfleet_demo_bot) or reply to one of my messages.",
}


@dataclass(frozen=True)
class DemoSetup:
    bot: Bot
    task: BotTask
    credential: AICredential


@transaction.atomic
def demo_seed() -> DemoSetup:
    persona, _ = Persona.objects.get_or_create(name=DEMO_PERSONA["name"], defaults=DEMO_PERSONA)
    credential = _credential()
    bot = Bot.objects.filter(name=DEMO_BOT_NAME).first()
    if bot is None:
        bot = Bot.objects.create(
            name=DEMO_BOT_NAME, token=_demo_token(), api_base_url=emulator_bot_api_url(),
            persona=persona, credential=credential,
        )
    task, _ = BotTask.objects.get_or_create(bot=bot, name=DEMO_TASK_NAME)
    return DemoSetup(bot=bot, task=task, credential=credential)


def _credential() -> AICredential:
    """Gemini when GEMINI_API_KEY is set (a real key for real answers), else offline."""
    gemini_key = os.environ.get("GEMINI_API_KEY", "")
    if gemini_key:
        credential, created = AICredential.objects.get_or_create(
            name="Gemini (from GEMINI_API_KEY)",
            defaults={"provider": AICredential.Provider.GEMINI, "api_key": gemini_key},
        )
        if not created and credential.api_key.reveal() != gemini_key:
            credential.api_key = gemini_key
            credential.save(update_fields=["api_key"])
        return credential
    credential, _ = AICredential.objects.get_or_create(
        name="Offline demo", defaults={"provider": AICredential.Provider.OFFLINE}
    )
    return credential


def _demo_token() -> str:
    bot_id = 7_000_000_000 + secrets.randbelow(999_999_999)
    return f"{bot_id}:AA{secrets.token_urlsafe(24)[:33]}"


def demo_wire(*, client: EmulatorClient, setup: DemoSetup) -> BotTask:
    """Register the demo bot with the (fresh, in-memory) emulator and (re)start it."""
    bot = setup.bot
    client.add_bot(
        token=bot.token.reveal(), username=DEMO_BOT_USERNAME, first_name=DEMO_BOT_DISPLAY_NAME
    )
    # A new emulator numbers updates afresh: an offset kept from its predecessor would
    # make getUpdates drop the first messages.
    Bot.objects.filter(pk=bot.pk).update(update_offset=0)
    task = BotTask.objects.get(pk=setup.task.pk)
    if task.status == BotTask.Status.STOPPED:
        return task  # stopped by an operator: stays stopped across restarts
    task = task_restart(task=task)
    log.info("demo bot wired to the emulator; task %s running", task.pk)
    return task
