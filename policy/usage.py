"""The daily usage figures in the database: what the admin shows (30 days, per person,
per group, per bot), what /stats reads, and what the Redis counts are seeded from.

Written inside the reply pipeline's writes (core.dbwork), a batch's increments folded
per row first: a burst of fifty replies of one bot is a few UPDATEs, not 150.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from django.db.models import F

from policy.models import UsageDay


@dataclass(frozen=True)
class Use:
    """What one incoming message used: an answer (with its tokens), or a refusal."""

    bot_id: int
    day: date
    user_id: int | None
    group_chat_id: int | None  # the group's id; None in a private chat
    answered: bool = False
    tokens: int = 0
    refused: bool = False


def usage_record(uses: Iterable[Use]) -> None:
    """Add these to their day's rows (created when missing). Runs inside a write."""
    totals: Counter[tuple[int, date, str, int, str]] = Counter()
    for use in uses:
        subjects = [(UsageDay.Scope.BOT.value, 0)]
        if use.user_id is not None:
            subjects.append((UsageDay.Scope.USER.value, use.user_id))
        if use.group_chat_id is not None:
            subjects.append((UsageDay.Scope.CHAT.value, use.group_chat_id))
        for scope, subject in subjects:
            key = (use.bot_id, use.day, scope, subject)
            totals[(*key, "messages")] += int(use.answered)
            totals[(*key, "tokens")] += use.tokens
            totals[(*key, "refused")] += int(use.refused)
    # Sorted: every writer takes the rows' locks in one order. Two workers folding
    # overlapping rows (the bot's own row is in every batch) in their own set order
    # deadlocked on PostgreSQL under a burst (the webhook benchmark found it).
    rows = sorted({key[:4] for key in totals})
    if not rows:
        return
    UsageDay.objects.bulk_create(
        [UsageDay(bot_id=b, day=d, scope=s, subject_id=i) for b, d, s, i in rows], ignore_conflicts=True
    )
    for bot_id, day, scope, subject in rows:
        changes = {
            name: F(name) + totals[(bot_id, day, scope, subject, name)]
            for name in ("messages", "tokens", "refused")
            if totals[(bot_id, day, scope, subject, name)]
        }
        if changes:
            UsageDay.objects.filter(bot_id=bot_id, day=day, scope=scope, subject_id=subject).update(**changes)
