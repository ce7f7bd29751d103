"""The policy layer, before any AI call: operator commands, access, pause, quotas.

    an incoming message that wants an answer
      operator command (/status, /pause…)? from an operator in private → run it;
                                            from anyone else → silence
      access (policy.access): denied or not allowed → the persona's "not allowed" line in
                                            private (may be empty), silence in groups
      paused (an operator's /pause)       → silence (the message is logged)
      the persona's fixed lines (/start, /help, /reset; media too large or that the AI
                                            cannot take) → no quota spent
      the AI: the daily quotas (policy.quotas, shared by every worker) first;
              over → the persona's "quota reached" line once a day, then silence

Every refusal is recorded on the message (Message.refusal, with the reason in words)
and counted in the day's usage. conversations.replies asks `decide` when it loads a
message and `admit` just before the AI call.
"""

from dataclasses import dataclass
from datetime import date, datetime

from bots.command_menu import OPERATOR_COMMANDS, USER_COMMANDS
from conversations import media, wording
from conversations.models import Chat, Message, Persona
from policy import access, quotas
from policy.access import BotPolicy
from policy.subjects import Who
from policy.usage import Use


def who_of(message: Message) -> Who:
    sender = message.sender
    return Who(
        user_id=sender.telegram_id if sender else None,
        username=sender.username if sender else "",
        chat_id=message.chat.telegram_id,
        private=message.chat.type == Chat.Type.PRIVATE,
    )


def command_of(message: Message) -> tuple[str, str]:
    """(name without "/" or "@bot", the rest of the text) of a command; ("", "") otherwise."""
    if message.kind != Message.Kind.COMMAND:
        return "", ""
    head, _, rest = message.text.strip().partition(" ")
    return head[1:].split("@")[0].lower(), rest.strip()


@dataclass(frozen=True)
class Decision:
    """What the gate made of a message before any AI call."""

    refusal: str = ""  # a Message.Refusal value; "" when it goes on
    reason: str = ""  # the refusal in words, recorded as the message's error
    line: str | None = None  # what to say instead of answering (None: silence)
    operator_command: str = ""  # run this operator command
    fixed: str | None = None  # the persona's own line: no AI, no quota


_REASONS: dict[str, str] = {
    Message.Refusal.DENIED: "Not answered: a deny rule of the bot matches this sender or chat.",
    Message.Refusal.NOT_ALLOWED: "Not answered: the bot answers only its allow list.",
    Message.Refusal.PAUSED: "Not answered: the bot is paused (an operator's /pause).",
    Message.Refusal.NOT_OPERATOR: "Not answered: an operator command from someone who is not an "
    "operator of the bot, or not in a private chat with it.",
    Message.Refusal.QUOTA: "Not answered: {reached} quota for today reached.",
}


def refused(refusal: str, *, line: str = "", **words: str) -> Decision:
    return Decision(refusal=refusal, reason=_REASONS[refusal].format(**words), line=line or None)


def decide(message: Message, persona: Persona, policy: BotPolicy) -> Decision:
    who = who_of(message)
    command, _ = command_of(message)
    operator = policy.is_operator(who)
    if command in OPERATOR_COMMANDS:
        if operator and who.private:
            return Decision(operator_command=command)
        return refused(Message.Refusal.NOT_OPERATOR)
    refusal = access.refusal(policy, who)
    if refusal:
        return refused(refusal, line=persona.not_allowed_reply if who.private else "")
    if policy.paused and not operator:
        return refused(Message.Refusal.PAUSED)
    return Decision(fixed=fixed_line(message, persona, command, operator=operator))


def fixed_line(message: Message, persona: Persona, command: str, *, operator: bool) -> str | None:
    """The persona's or the bot's own line for this message, or None: the AI answers."""
    if message.kind == Message.Kind.MEDIA:
        return media_line(message, persona)
    if command == "start":
        return persona.greeting
    if command == "help":
        return help_text(persona, operator=operator)
    if command == "reset":
        return wording.CONTEXT_RESET
    return None


def media_line(message: Message, persona: Persona) -> str | None:
    """What to say to media instead of asking the AI, or None: the AI is shown it (its
    provider takes this kind), or answers its caption, told the media is unseen."""
    if message.media_kind:
        if media.too_large(message.media_size):
            return wording.MEDIA_TOO_LARGE.format(cap=media.cap_label())  # never downloaded
        if media.understood(message.media_kind, message.bot.credential):
            return None
    has_caption = message.text != wording.media_placeholder(message.text)
    return None if has_caption else persona.media_unsupported_reply


def help_text(persona: Persona, *, operator: bool) -> str:
    lines = [persona.help_reply, "", *(f"/{name} — {what}" for name, what in USER_COMMANDS.items())]
    if operator:
        lines += ["", "For operators:", *(f"/{name} — {what}" for name, what in OPERATOR_COMMANDS.items())]
    return "\n".join(lines)


async def admit(message: Message, persona: Persona, policy: BotPolicy, *, now: datetime) -> Decision:
    """Just before the AI call: the day's quotas. Operators are never limited."""
    who = who_of(message)
    if policy.is_operator(who):
        return Decision()
    admission = await quotas.admit(policy, who, now=now)
    if admission.admitted:
        return Decision()
    line = persona.quota_reached_reply if admission.say_so else ""
    reached = {quotas.MESSAGES: "the daily message", quotas.TOKENS: "the daily token",
               quotas.GROUP: "the group's daily message"}[admission.reached]
    return refused(Message.Refusal.QUOTA, line=line, reached=reached)


async def tokens_spent(message: Message, policy: BotPolicy, *, now: datetime, tokens: int) -> None:
    await quotas.tokens_add(policy, who_of(message), now=now, tokens=tokens)


def use_of(message: Message, policy: BotPolicy, *, day: date, answered: bool = False,
           tokens: int = 0, refused: bool = False) -> Use:
    who = who_of(message)
    return Use(
        bot_id=message.bot_id, day=day, user_id=who.user_id,
        group_chat_id=None if who.private else who.chat_id,
        answered=answered, tokens=tokens, refused=refused,
    )


def day_of(policy: BotPolicy, moment: datetime) -> date:
    return quotas.day_of(policy, moment)
