"""Who may talk to a bot and how much: access rules, per-user quotas, and the daily
usage the quotas are counted against (policy.quotas keeps the live counts in Redis)."""

from django.core.exceptions import ValidationError
from django.db import models

from policy.subjects import SUBJECT_HELP, subject_normalize


class AccessRule(models.Model):
    class Effect(models.TextChoices):
        ALLOW = "allow"
        DENY = "deny"

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="access_rules")
    effect = models.CharField(max_length=5, choices=Effect.choices, default=Effect.ALLOW)
    subject = models.CharField("who", max_length=64, help_text=SUBJECT_HELP)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["effect", "subject"]
        verbose_name = "access rule"
        constraints = [
            models.UniqueConstraint(fields=["bot", "effect", "subject"], name="unique_access_rule"),
        ]

    def __str__(self) -> str:
        return f"{self.effect} {self.subject}"

    def clean(self) -> None:
        try:
            self.subject = subject_normalize(self.subject)
        except ValidationError as error:
            raise ValidationError({"subject": error.messages}) from None


class QuotaOverride(models.Model):
    """A person's own daily quota on one bot (a "premium" user), instead of the bot's."""

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="quota_overrides")
    subject = models.CharField("who", max_length=64, help_text="A Telegram user id or a @username.")
    daily_messages = models.PositiveIntegerField(
        "messages a day", null=True, blank=True, help_text="Empty: unlimited."
    )
    daily_tokens = models.PositiveIntegerField("tokens a day", null=True, blank=True, help_text="Empty: unlimited.")
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["subject"]
        verbose_name = "per-user quota"
        constraints = [models.UniqueConstraint(fields=["bot", "subject"], name="unique_quota_override")]

    def __str__(self) -> str:
        return f"{self.subject}: {self.daily_messages or '∞'} messages, {self.daily_tokens or '∞'} tokens"

    def clean(self) -> None:
        try:
            self.subject = subject_normalize(self.subject, groups=False)
        except ValidationError as error:
            raise ValidationError({"subject": error.messages}) from None


class UsageDay(models.Model):
    """What a person, a group chat, or the whole bot used on one day (the bot's day)."""

    class Scope(models.TextChoices):
        BOT = "bot", "the whole bot"
        USER = "user", "a person"
        CHAT = "chat", "a group chat"

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="usage_days")
    day = models.DateField(db_index=True)
    scope = models.CharField(max_length=4, choices=Scope.choices)
    subject_id = models.BigIntegerField(help_text="The user's or the chat's Telegram id; 0 for the bot.")
    messages = models.PositiveIntegerField("AI answers", default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0, help_text="Messages refused (access, pause, quota).")

    class Meta:
        ordering = ["-day", "bot", "scope", "subject_id"]
        verbose_name = "daily usage"
        verbose_name_plural = "daily usage"
        constraints = [
            models.UniqueConstraint(fields=["bot", "day", "scope", "subject_id"], name="unique_usage_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.scope} {self.subject_id}"
