"""What the AI is given: the persona's instructions and the bot's identity; then, as
data in user turns, the chat's summary (conversations.memory) and the notes about the
person; then the chat's recent history (oldest first) and the question, all within the
persona's token budget.

Tokens are estimated, not counted: Gemini's counter is a network call per request (as
slow as the answer) and OpenAI-compatible servers have none in common. The estimate
(`tokens_estimate`) errs high: about 4 characters a token for ASCII text (Gemini and GPT
tokenizers give 4 to 5 for English), one a character beyond ASCII (CJK, emoji), plus 4 a
turn for roles and framing.
"""

import math
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from conversations import wording
from conversations.models import ChatSummary, Message, Persona, UserFact
from credentials.providers import ChatTurn, GenerationRequest

TURN_OVERHEAD = 4  # tokens a turn costs beyond its text (role, separators)


def tokens_estimate(text: str) -> int:
    ascii_chars = sum(1 for ch in text if ch.isascii()) if not text.isascii() else len(text)
    return math.ceil(ascii_chars / 4) + (len(text) - ascii_chars) + TURN_OVERHEAD


@dataclass(frozen=True)
class Context:
    request: GenerationRequest
    # Older turns were left out that no summary covers: the summary should be written
    # (or brought up to date) for the chat's next questions.
    summary_due: bool = False


def generation_request(
    *, message: Message, persona: Persona, with_history: bool = True
) -> GenerationRequest:
    """`with_history=False` for providers that never read it (the offline one): the
    history query is the costliest part of building a request."""
    if not with_history:
        return _request(message, persona, [])
    return generation_context(message=message, persona=persona).request


def generation_context(*, message: Message, persona: Persona, media_shown: bool = False) -> Context:
    asked = _asked(message, media_shown=media_shown)
    budget = persona.context_token_budget - tokens_estimate(_instructions(message, persona))
    budget -= tokens_estimate(asked.text)
    # Notes and summary take at most half the budget: the recent turns need the rest.
    preamble = _notes(message, persona, budget // 4)
    summary = _summary(message)
    if summary is not None:
        text = _fit(summary.text, budget // 4)
        preamble.append(ChatTurn(role="user", text=wording.SUMMARY_AHEAD.format(summary=text)))
    budget -= sum(tokens_estimate(turn.text) for turn in preamble)
    turns, left_out = _history(message, persona.history_limit, budget, after=summary.covers_up_to if summary else 0)
    return Context(request=_request(message, persona, preamble + turns, asked), summary_due=left_out)


def _request(
    message: Message, persona: Persona, history: list[ChatTurn], asked: ChatTurn | None = None
) -> GenerationRequest:
    return GenerationRequest(
        instructions=_instructions(message, persona),
        message=asked or _asked(message),
        history=history,
        temperature=persona.temperature,
        max_output_tokens=persona.max_output_tokens,
    )


def _instructions(message: Message, persona: Persona) -> str:
    bot = message.bot
    identity = f"You are the Telegram bot {bot.first_name or bot.name}"
    identity += f" (@{bot.username})." if bot.username else "."
    where = f" {wording.IN_GROUP}" if message.chat.is_group else " You are in a private chat."
    return f"{persona.instructions.strip()}\n\n{identity}{where}"


def _asked(message: Message, *, media_shown: bool = False) -> ChatTurn:
    """The message being answered. In a group it says where (the group's title, quoted).
    Media the AI is shown (`media_shown`, conversations.media) has its caption as the
    question; media it cannot take is said to be unseen."""
    turn = _turn(message)
    text = turn.text
    if message.kind == Message.Kind.MEDIA:
        placeholder = wording.media_placeholder(message.text) or "[file]"
        what = placeholder.strip("[]")
        if media_shown:
            caption = message.text[len(placeholder):].strip()
            text = caption or wording.MEDIA_WITHOUT_CAPTION.format(what=what)
            if message.chat.is_group and turn.author:
                text = f"{quoted(turn.author)}: {text}"
        else:
            text = f"{text}\n\n{wording.MEDIA_NOT_UNDERSTOOD.format(what=what)}"
    if message.chat.is_group:
        text = f"(in the group {quoted(message.chat.title)}) {text}"
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


def reset_at(conversation: "QuerySet[Message]", before: int) -> int:
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


def conversation_of(message: Message) -> QuerySet[Message]:
    """The messages of the message's conversation: its chat, or its forum topic (a
    topic is a conversation of its own)."""
    return Message.objects.filter(chat_id=message.chat_id, message_thread_id=message.message_thread_id)


def remembered(conversation: QuerySet[Message], before: int, *, after: int = 0) -> QuerySet[Message]:
    """What the AI may see of a conversation before a message: after the last /reset
    (nothing up to it, nor the bot's answer to it) and after `after`; no edits, no
    service messages, no part that was never sent."""
    reset = reset_at(conversation, before)
    return (
        conversation.filter(id__lt=before, id__gt=max(reset, after)).exclude(reply_to_id=reset)
        .exclude(kind__in=[Message.Kind.EDITED, Message.Kind.SERVICE])
        .exclude(direction=Message.Direction.OUT, telegram_message_id__isnull=True)
    )


def _history(message: Message, limit: int, budget: int, *, after: int) -> tuple[list[ChatTurn], bool]:
    """The newest turns that fit `limit` and `budget`, oldest first, and whether older
    ones were left out."""
    earlier = list(
        remembered(conversation_of(message), message.id, after=after)
        .select_related("sender", "chat").order_by("-id")[: max(limit, 0) + 1]
    )
    turns = [_turn(row) for row in earlier[:limit]]
    fitting = newest_within([turn.text for turn in turns], budget)
    return list(reversed(turns[:fitting])), fitting < len(turns) or len(earlier) > limit


def newest_within(texts: list[str], budget: int) -> int:
    """How many of `texts` (newest first) fit in `budget` tokens: the budget drops the
    oldest. The AI context and the summary job cut a conversation the same way."""
    used = 0
    for count, text in enumerate(texts):
        used += tokens_estimate(text)
        if used > budget:
            return count
    return len(texts)


def _summary(message: Message) -> ChatSummary | None:
    summary = ChatSummary.objects.filter(chat_id=message.chat_id, topic=message.message_thread_id or 0).first()
    if summary is None or not summary.text.strip():
        return None
    # A summary of what came before a /reset is forgotten with it.
    if summary.covers_up_to <= reset_at(conversation_of(message), message.id):
        return None
    return summary


def _fit(text: str, tokens: int) -> str:
    """`text` cut to about `tokens` (by the estimate, erring short)."""
    if tokens_estimate(text) <= tokens:
        return text
    return text[: max(0, tokens - TURN_OVERHEAD)].rstrip() + "…"  # one character a token: surely short


def _notes(message: Message, persona: Persona, tokens: int) -> list[ChatTurn]:
    if not persona.remembers_users or message.sender_id is None:
        return []
    facts = list(UserFact.objects.filter(bot_id=message.bot_id, user_id=message.sender_id).values_list("text", flat=True))
    if not facts:
        return []
    name = quoted(message.sender.display_name) if message.sender else "this person"
    notes = _fit("\n".join(f"- {' '.join(fact.split())}" for fact in facts), tokens)
    return [ChatTurn(role="user", text=wording.NOTES_AHEAD.format(name=name, notes=notes))]
