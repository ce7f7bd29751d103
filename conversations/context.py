"""What the AI is given: the persona's instructions, the bot's identity, and the
chat's recent history (oldest first), trimmed to a size budget."""

from conversations import wording
from conversations.models import Message, Persona
from credentials.providers import ChatTurn, GenerationRequest

HISTORY_CHAR_BUDGET = 12_000  # keeps requests small and fast; oldest turns go first


def generation_request(
    *, message: Message, persona: Persona, with_history: bool = True
) -> GenerationRequest:
    """`with_history=False` for providers that never read it (the offline one): the
    history query is the costliest part of building a request."""
    return GenerationRequest(
        instructions=_instructions(message, persona),
        message=_asked(message),
        history=_history(message, persona.history_limit) if with_history else [],
        temperature=persona.temperature,
        max_output_tokens=persona.max_output_tokens,
    )


def _instructions(message: Message, persona: Persona) -> str:
    bot = message.bot
    identity = f"You are the Telegram bot {bot.first_name or bot.name}"
    identity += f" (@{bot.username})." if bot.username else "."
    where = (
        f" You are in the group chat \"{message.chat.title}\"; each user message starts with "
        "the sender's name." if message.chat.is_group else " You are in a private chat."
    )
    return f"{persona.instructions.strip()}\n\n{identity}{where}"


def _asked(message: Message) -> ChatTurn:
    """The message being answered; a captioned photo or file says the media is unseen."""
    turn = _turn(message)
    if message.kind != Message.Kind.MEDIA:
        return turn
    what = next(
        (p.strip("[]") for p in wording.MEDIA_PLACEHOLDERS.values() if message.text.startswith(p)), "file"
    )
    return ChatTurn(role=turn.role, text=f"{turn.text}\n\n{wording.MEDIA_NOT_UNDERSTOOD.format(what=what)}",
                    author=turn.author)


def _turn(message: Message) -> ChatTurn:
    if message.direction == Message.Direction.OUT:
        return ChatTurn(role="model", text=message.text)
    author = message.sender.display_name if message.sender else ""
    text = f"{author}: {message.text}" if message.chat.is_group and author else message.text
    return ChatTurn(role="user", text=text, author=author)


def _history(message: Message, limit: int) -> list[ChatTurn]:
    if limit <= 0:
        return []
    earlier = (
        # A forum topic is a conversation of its own: its history is that topic's.
        Message.objects.filter(chat=message.chat, id__lt=message.id,
                               message_thread_id=message.message_thread_id)
        .exclude(kind__in=[Message.Kind.EDITED, Message.Kind.SERVICE])
        .exclude(direction=Message.Direction.OUT, telegram_message_id__isnull=True)  # unsent
        .select_related("sender", "chat")
        .order_by("-id")[:limit]
    )
    turns, used = [], 0
    for row in earlier:  # newest first, so the budget drops the oldest
        used += len(row.text)
        if used > HISTORY_CHAR_BUDGET:
            break
        turns.append(_turn(row))
    return list(reversed(turns))
