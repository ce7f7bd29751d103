"""Who may talk to a bot: its access mode, its allow and deny rules, its operators.

Loaded once per batch of messages (two queries for all the batch's bots) on a reader
thread; the decision itself is pure. A deny rule always wins; in allow-list mode a
message passes when its sender (id or @username) or its chat is allowed; a bot's
operators always pass (they must be able to undo a rule that locked them out).
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from bots.models import Bot
from policy.models import AccessRule, QuotaOverride
from policy.subjects import Who

DENIED = "denied"  # a deny rule matched
NOT_ALLOWED = "not_allowed"  # allow-list mode, and nothing allowed this sender or chat


@dataclass(frozen=True)
class BotPolicy:
    """One bot's rules and limits as they stood when its messages were loaded."""

    bot_id: int
    allowlist: bool = False
    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()
    operators: frozenset[int] = frozenset()
    paused: bool = False
    daily_messages_per_user: int = 0  # 0: unlimited
    daily_tokens_per_user: int = 0
    daily_messages_per_group: int = 0
    time_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    # subject ("123" or "@name") → (daily messages, daily tokens); None: unlimited
    overrides: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)

    def is_operator(self, who: Who) -> bool:
        return who.user_id is not None and who.user_id in self.operators


def policies_load(rows: Iterable[Bot]) -> dict[int, BotPolicy]:
    bots = {bot.pk: bot for bot in rows}
    rules: dict[int, dict[str, set[str]]] = defaultdict(lambda: {"allow": set(), "deny": set()})
    for bot_id, effect, subject in AccessRule.objects.filter(bot_id__in=bots).values_list(
        "bot_id", "effect", "subject"
    ):
        rules[bot_id][effect].add(subject)
    overrides: dict[int, dict[str, tuple[int | None, int | None]]] = defaultdict(dict)
    for bot_id, subject, messages, tokens in QuotaOverride.objects.filter(bot_id__in=bots).values_list(
        "bot_id", "subject", "daily_messages", "daily_tokens"
    ):
        overrides[bot_id][subject] = (messages, tokens)
    return {
        bot_id: BotPolicy(
            bot_id=bot_id,
            allowlist=bot.access_mode == Bot.AccessMode.ALLOWLIST,
            allow=frozenset(rules[bot_id]["allow"]),
            deny=frozenset(rules[bot_id]["deny"]),
            operators=bot.operator_ids,
            paused=bot.paused_at is not None,
            daily_messages_per_user=bot.daily_messages_per_user,
            daily_tokens_per_user=bot.daily_tokens_per_user,
            daily_messages_per_group=bot.daily_messages_per_group,
            time_zone=ZoneInfo(str(bot.time_zone)),
            overrides=overrides[bot_id],
        )
        for bot_id, bot in bots.items()
    }


def refusal(policy: BotPolicy, who: Who) -> str:
    """Why this sender may not talk to the bot here (DENIED, NOT_ALLOWED), or ""."""
    if policy.is_operator(who):
        return ""
    names = who.subjects()
    if names & policy.deny:
        return DENIED
    if policy.allowlist and not names & policy.allow:
        return NOT_ALLOWED
    return ""
