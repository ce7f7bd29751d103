"""The sandbox's view of a chat: what the simulated people wrote and what the bot
answered, as the emulator saw it (the real Telegram traffic of the demo)."""

from dataclasses import asdict, dataclass, field
from typing import Any

from emulators.telegram import EmulatorClient

JSON = dict[str, Any]  # a Telegram object as the emulator returns it

DEMO_GROUP_ID = -1_007_000_000_001
DEMO_GROUP_TITLE = "Botfleet demo group"
# Simulated people in the demo group, besides the operator.
GROUP_MEMBERS = {700_000_101: "Alice", 700_000_102: "Bob"}
OPERATOR_USER_BASE = 700_100_000  # + the staff user's id: a stable Telegram user per operator
MAX_MESSAGES = 200


@dataclass(frozen=True)
class ChatLine:
    message_id: int
    sender: str
    from_bot: bool
    text: str
    time: float
    reply_to: int | None = None
    entities: list[JSON] = field(default_factory=list)


def operator_user_id(staff_user_id: int) -> int:
    return OPERATOR_USER_BASE + staff_user_id


def chat_id_for(kind: str, staff_user_id: int) -> int:
    return DEMO_GROUP_ID if kind == "group" else operator_user_id(staff_user_id)


def demo_group_ensure(client: EmulatorClient) -> None:
    try:
        client.add_group(chat_id=DEMO_GROUP_ID, title=DEMO_GROUP_TITLE)
    except ValueError:
        pass  # it exists already
    for user_id, name in GROUP_MEMBERS.items():
        client.add_user(user_id=user_id, first_name=name)


def chat_lines(client: EmulatorClient, *, token: str, chat_id: int) -> list[JSON]:
    from_people = [_from_person(u["update"], u["injected_at"]) for u in client.updates(token)
                   if _chat_of(u["update"]) == chat_id]
    lines = [line for line in from_people if line is not None]
    lines += [_from_bot(m) for m in client.sent_messages(token, chat_id=chat_id)]
    lines.sort(key=lambda line: (line.time, line.message_id))
    return [asdict(line) for line in lines[-MAX_MESSAGES:]]


def _chat_of(update: JSON) -> int | None:
    message = update.get("message") or update.get("edited_message")
    return message["chat"]["id"] if message else None


def _from_person(update: JSON, injected_at: float) -> ChatLine | None:
    message = update.get("message")
    if message is None:
        return None  # edits and other update kinds are not shown as new lines
    quoted = message.get("reply_to_message")
    return ChatLine(
        message_id=message["message_id"], sender=message["from"].get("first_name", "?"),
        from_bot=False, text=message.get("text") or message.get("caption") or "[media]",
        time=injected_at, reply_to=quoted["message_id"] if quoted else None,
        entities=message.get("entities", []),
    )


def _from_bot(sent: JSON) -> ChatLine:
    return ChatLine(
        message_id=sent["message_id"], sender="bot", from_bot=True, text=sent.get("text", ""),
        time=sent["time"], reply_to=sent.get("reply_to_message_id"),
        entities=sent.get("entities") or [],
    )


def person_says(
    client: EmulatorClient, *, token: str, bot_username: str, kind: str, staff_user_id: int,
    staff_name: str, text: str, as_member: int | None, reply_to: int | None,
) -> None:
    """Inject what a simulated person wrote, as Telegram would deliver it to the bot."""
    if kind == "private":
        client.send_private_message(
            token, text, user_id=operator_user_id(staff_user_id), first_name=staff_name
        )
        return
    demo_group_ensure(client)
    user_id = as_member if as_member in GROUP_MEMBERS else operator_user_id(staff_user_id)
    name = GROUP_MEMBERS.get(user_id, staff_name)
    if reply_to:
        client.add_user(user_id=user_id, first_name=name)
        client.reply_to_bot(token, DEMO_GROUP_ID, text, message_id=reply_to, user_id=user_id)
        return
    mention = f"@{bot_username}"
    if bot_username and mention.lower() in text.lower():
        # The emulator places a real mention entity (UTF-16 offsets) where {bot} stands.
        start = text.lower().index(mention.lower())
        text = text[:start] + "{bot}" + text[start + len(mention):]
        client.send_group_message(token, text, chat_id=DEMO_GROUP_ID, user_id=user_id,
                                  first_name=name, mention_bot="username")
    else:
        client.send_group_message(token, text, chat_id=DEMO_GROUP_ID, user_id=user_id, first_name=name)
