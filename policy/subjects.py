"""Who a rule or a quota is about, as operators write it: a Telegram user id (a
positive number, which is also the id of that user's private chat), a @username, or a
group chat id (a negative number, e.g. -1001234567890)."""

import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError

_USERNAME = re.compile(r"@?[A-Za-z][A-Za-z0-9_]{3,31}")
MAX_ID = 2**63 - 1

SUBJECT_HELP = (
    "A Telegram user id (e.g. 123456789), a @username, or a group's chat id (negative, "
    "e.g. -1001234567890)."
)


def subject_normalize(text: str, *, groups: bool = True) -> str:
    """The stored form: "123", "-100123" or "@name" (lower case). Raises ValidationError
    saying what is wrong."""
    value = text.strip()
    if re.fullmatch(r"-?\d+", value):
        number = int(value)
        if number == 0 or abs(number) > MAX_ID:
            raise ValidationError(f"“{value}” is not a Telegram id.")
        if number < 0 and not groups:
            raise ValidationError("A quota is for a person: give a user id or a @username, not a group.")
        return str(number)
    if _USERNAME.fullmatch(value):
        return "@" + value.lstrip("@").lower()
    raise ValidationError(f"“{value[:40]}” is not a user id, a @username or a group id. {SUBJECT_HELP}")


@dataclass(frozen=True)
class Who:
    """Who wrote a message, and where: what rules and quotas are matched against."""

    user_id: int | None
    username: str  # without "@", any case
    chat_id: int
    private: bool

    def subjects(self) -> set[str]:
        """Every stored form that names this sender or this chat."""
        names = {str(self.chat_id)}
        if self.user_id is not None:
            names.add(str(self.user_id))
        if self.username:
            names.add("@" + self.username.lower())
        return names

    def user_subjects(self) -> list[str]:
        """The forms that name the sender only, id first (quotas are per person)."""
        names = [str(self.user_id)] if self.user_id is not None else []
        return names + (["@" + self.username.lower()] if self.username else [])
