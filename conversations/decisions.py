"""Whether an incoming message gets an answer, by the task's settings.

Private chats: every message from a person. Groups: messages that @mention the bot (or
a text_mention of it, or its name), replies to the bot's messages, and commands; media
whose caption mentions the bot, or that replies to the bot.
Never other bots (the bot itself included), edits or service messages.
"""

import re

import telegram

from bots.models import Bot, BotTask
from conversations.models import Message

_NO_REPLY_KINDS = {Message.Kind.EDITED, Message.Kind.SERVICE, Message.Kind.OTHER}


def reply_wanted(*, task: BotTask, bot: Bot, message: telegram.Message, kind: str) -> bool:
    sender = message.from_user
    if sender is None or sender.is_bot or kind in _NO_REPLY_KINDS:
        return False
    if message.chat.type == telegram.constants.ChatType.PRIVATE:
        return task.respond_to_private
    if kind == Message.Kind.COMMAND:
        return command_is_for(bot, message)
    if kind == Message.Kind.MEDIA and not message.caption:
        # A photo in a group is not a question to the bot, unless it answers the bot.
        return task.respond_to_replies and replies_to(bot, message)
    return (task.respond_to_mentions and mentions(bot, message)) or (
        task.respond_to_replies and replies_to(bot, message)
    )


def mentions(bot: Bot, message: telegram.Message) -> bool:
    """In the text, or in the caption of a photo, video or file."""
    # parse_entities counts offsets in UTF-16 units, as Telegram does.
    kinds: list[str | None] = ["mention", "text_mention"]
    found = message.parse_entities(kinds) if message.text else message.parse_caption_entities(kinds)
    for entity, text in found.items():
        if entity.type == "text_mention" and entity.user and entity.user.id == bot.telegram_id:
            return True
        if entity.type == "mention" and bot.username and text.lower() == f"@{bot.username.lower()}":
            return True
    return _names_bot(bot, message.text or message.caption or "")


def _names_bot(bot: Bot, text: str) -> bool:
    if not bot.first_name:
        return False
    return re.search(rf"(?<!\w){re.escape(bot.first_name)}(?!\w)", text, re.IGNORECASE) is not None


def replies_to(bot: Bot, message: telegram.Message) -> bool:
    quoted = message.reply_to_message
    return bool(quoted and quoted.from_user and quoted.from_user.id == bot.telegram_id)


def command_of(message: telegram.Message) -> tuple[str, str] | None:
    """('/start', 'botname' or '') for a message that starts with a bot command."""
    for entity, text in message.parse_entities(["bot_command"]).items():
        if entity.offset == 0:
            name, _, addressee = text.partition("@")
            return name.lower(), addressee.lower()
    return None


def command_is_for(bot: Bot, message: telegram.Message) -> bool:
    """In groups `/help@otherbot` is not ours; a bare `/help` is for every bot."""
    command = command_of(message)
    return command is not None and command[1] in ("", (bot.username or "").lower())
