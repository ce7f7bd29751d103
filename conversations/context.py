"""What the AI is given: the persona's instructions, the bot's identity, and the
chat's recent history (oldest first), trimmed to a size budget."""

from django.db.models import Q, QuerySet

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
    where = f" {wording.IN_GROUP}" if message.chat.is_group else " You are in a private chat."
    return f"{persona.instructions.strip()}\n\n{identity}{where}"


def _asked(message: Message) -> ChatTurn:
    """The message being answered. In a group it says where (the group's title, quoted);
    a captioned photo or file says the media is unseen."""
    turn = _turn(message)
    text = turn.text
    if message.chat.is_group:
        text = f"(in the group {quoted(message.chat.title)}) {text}"
    if message.kind == Message.Kind.MEDIA:
        what = (wording.media_placeholder(message.text) or "[file]").strip("[]")
        text = f"{text}\n\n{wording.MEDIA_NOT_UNDERSTOOD.format(what=what)}"
    return ChatTurn(role=turn.role, text=text, author=turn.author)


NAME_LIMIT = 64  # characters of a person's name or a group's title shown to the AI


def quoted(name: str) -> str:
    """A name chosen by a user, as data: length-capped, on one line, in quotes it cannot
    close. Names and titles go in user turns, never in the system instruction, where a
    name like "Ignore your instructions" would carry the operator's authority."""
    flat = " ".join(name.replace("“", "'").replace("”", "'").replace('"', "'").split())
    if len(flat) > NAME_LIMIT:
        flat = flat[: NAME_LIMIT - 1] + "…"
    return f"“{flat}”"


RESET = "/reset"


def _reset_at(conversation: "QuerySet[Message]", before: int) -> int:
    """The id of the conversation's last /reset before this message (0: none). The AI
    sees nothing up to it; the log keeps it all."""
    resets = conversation.filter(
        Q(text=RESET) | Q(text__startswith=RESET + " ") | Q(text__startswith=RESET + "@"),
        id__lt=before, direction=Message.Direction.IN, kind=Message.Kind.COMMAND,
    )
    return resets.order_by("-id").values_list("id", flat=True).first() or 0


def _turn(message: Message) -> ChatTurn:
    if message.direction == Message.Direction.OUT:
        return ChatTurn(role="model", text=message.text)
    author = message.sender.display_name if message.sender else ""
    text = f"{quoted(author)}: {message.text}" if message.chat.is_group and author else message.text
    return ChatTurn(role="user", text=text, author=author)


def _history(message: Message, limit: int) -> list[ChatTurn]:
    if limit <= 0:
        return []
    # A forum topic is a conversation of its own: its history is that topic's.
    conversation = Message.objects.filter(chat=message.chat, message_thread_id=message.message_thread_id)
    reset = _reset_at(conversation, message.id)
    earlier = (
        # After a /reset, nothing up to it, nor the bot's answer to it.
        conversation.filter(id__lt=message.id, id__gt=reset).exclude(reply_to_id=reset)
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
