from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from timezone_field import TimeZoneField

from credentials.fields import EncryptedSecretField, HttpsURLField

# Three Telegram messages: a long AI answer arrives whole, in parts, instead of cut at one.
DEFAULT_MAX_RESPONSE_LENGTH = 12_000


def telegram_ids(text: str) -> frozenset[int]:
    """The ids of a comma-separated list (what the validator accepted)."""
    return frozenset(int(part) for part in text.replace(" ", "").split(",") if part)


def telegram_ids_validate(text: str) -> None:
    for part in text.replace(" ", "").split(","):
        if part and not (part.isdigit() and 0 < int(part) < 2**63):
            raise ValidationError(
                f"“{part}” is not a Telegram user id: write the numbers only, separated by "
                "commas (a user id is a positive number; @BotFather-style @names are not ids)."
            )


class Bot(models.Model):
    """A Telegram bot account: its token, who it is, and how it answers."""

    name = models.CharField(max_length=100, unique=True)
    token = EncryptedSecretField(help_text="From @BotFather. Stored encrypted.")
    telegram_id = models.BigIntegerField(null=True, blank=True, editable=False)
    username = models.CharField(
        max_length=64, blank=True, editable=False, help_text="Filled from Telegram (getMe)."
    )
    first_name = models.CharField(
        "display name", max_length=255, blank=True, editable=False,
        help_text="Filled from Telegram (getMe); people may call the bot by it in groups.",
    )
    api_base_url = HttpsURLField(
        "Bot API base URL",
        blank=True,
        help_text="Blank uses the TELEGRAM_API_BASE_URL setting. For a local Bot API "
        "server or the emulator, e.g. http://127.0.0.1:8081/bot",
    )
    persona = models.ForeignKey(
        "conversations.Persona", null=True, blank=True, on_delete=models.SET_NULL
    )
    credential = models.ForeignKey(
        "credentials.AICredential",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        verbose_name="AI credential",
    )
    class UpdateMode(models.TextChoices):
        POLLING = "polling", "polling (the workers ask Telegram)"
        WEBHOOK = "webhook", "webhook (Telegram pushes to WEBHOOK_BASE_URL)"

    update_mode = models.CharField(
        "update mode", max_length=8, choices=UpdateMode.choices, default=UpdateMode.POLLING,
        help_text="Polling works anywhere. Webhook needs a public HTTPS address (the "
        "WEBHOOK_BASE_URL setting) and costs nothing while the bot is idle. Stop the "
        "bot's running task before switching.",
    )
    # Telegram sends it with every webhook request (X-Telegram-Bot-Api-Secret-Token);
    # a new one on every start, so a leaked one dies with the next restart.
    webhook_secret = EncryptedSecretField(blank=True, editable=False)
    # --- who may talk to the bot, and how much (the policy app applies these) ---
    class AccessMode(models.TextChoices):
        OPEN = "open", "open: anyone may talk to the bot"
        ALLOWLIST = "allowlist", "allow list: only the users and chats allowed below"

    access_mode = models.CharField(
        "access", max_length=9, choices=AccessMode.choices, default=AccessMode.OPEN,
        help_text="Deny rules below always win. The bot's operators are always allowed.",
    )
    daily_messages_per_user = models.PositiveIntegerField(
        "messages a day per user", default=0,
        help_text="AI answers a person gets per day (0 = unlimited). Per-user quotas below override it.",
    )
    daily_tokens_per_user = models.PositiveIntegerField(
        "tokens a day per user", default=0,
        help_text="AI tokens (prompt and answer) a person may use per day (0 = unlimited). "
        "Checked before each answer, so the answer that crosses it still goes out.",
    )
    daily_messages_per_group = models.PositiveIntegerField(
        "messages a day per group", default=0,
        help_text="AI answers one group chat gets per day, whoever asks (0 = unlimited).",
    )
    time_zone = TimeZoneField(
        default="UTC", use_pytz=False, help_text="Quotas' days start at midnight in this time zone.",
    )
    admin_telegram_ids = models.CharField(
        "operators' Telegram ids", max_length=500, blank=True, validators=[telegram_ids_validate],
        help_text="Comma-separated Telegram user ids of the people who may run operator "
        "commands (/status, /stats, /pause, /allow, /broadcast…) in a private chat with the bot.",
    )
    paused_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="Set by an operator's /pause: the bot logs messages but answers only operators.",
    )
    keep_messages_days = models.PositiveIntegerField(
        "keep messages (days)", null=True, blank=True,
        help_text="Delete this bot's logged messages older than this many days (a daily job). "
        "Empty: keep them all.",
    )
    update_offset = models.BigIntegerField(
        default=0,
        editable=False,
        help_text="Next getUpdates offset; advanced only after updates are stored.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} (@{self.username})" if self.username else self.name

    @property
    def effective_api_base_url(self) -> str:
        return self.api_base_url or settings.TELEGRAM_API_BASE_URL

    @property
    def uses_webhook(self) -> bool:
        return self.update_mode == self.UpdateMode.WEBHOOK

    @property
    def operator_ids(self) -> frozenset[int]:
        return telegram_ids(self.admin_telegram_ids)



class BotTask(models.Model):
    """The background task that runs a bot, as operators know it."""

    class Status(models.TextChoices):
        PENDING = "pending"
        # Started before its "start at" time: the supervisor starts it when that comes.
        SCHEDULED = "scheduled"
        RUNNING = "running"
        STOPPED = "stopped"
        # Ended by the supervisor when its "run until" time passed.
        COMPLETED = "completed"
        FAILED = "failed"

    name = models.CharField(max_length=100)
    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="tasks")
    use_ai = models.BooleanField(
        "use AI", default=True, help_text="Off: answer with the persona's fixed lines only."
    )
    respond_to_private = models.BooleanField("respond to direct messages", default=True)
    respond_to_mentions = models.BooleanField(
        default=True, help_text="In groups, answer messages that @mention the bot or its name."
    )
    respond_to_replies = models.BooleanField(
        default=True, help_text="In groups, answer replies to the bot's messages."
    )
    max_response_length = models.PositiveIntegerField(
        default=DEFAULT_MAX_RESPONSE_LENGTH,
        validators=[MinValueValidator(1), MaxValueValidator(100_000)],
        help_text="Longer replies are cut here (with “…”). Telegram takes 4096 characters "
        "a message: a longer reply is sent as several messages, in order.",
    )
    start_at = models.DateTimeField(
        "start at", null=True, blank=True,
        help_text="Optional. Pressing Start before this time schedules the task (status "
        "“scheduled”); it starts by itself at this time.",
    )
    run_until = models.DateTimeField(
        "run until", null=True, blank=True,
        help_text="Optional. At this time the task stops by itself (status “completed”).",
    )
    drop_pending_updates = models.BooleanField(
        "drop pending updates", default=False,
        help_text="On Start, forget the messages Telegram kept while the bot was not running "
        "instead of answering them.",
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    messages_processed = models.PositiveIntegerField(default=0)
    replies_sent = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # Shown only (dashboard, admin, bot_status): revival reads `lease_expires_at`.
    heartbeat_at = models.DateTimeField(
        "last heartbeat", null=True, blank=True,
        help_text="When the task last showed it is alive: a poller's, when its lease was "
        "taken or last renewed; a webhook task's, when pushed messages were last stored.",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    # The poll lease: `poll_token` names the one poller allowed to run; a worker process
    # takes it by setting `poll_owner` with a conditional UPDATE and keeps it by renewing
    # `lease_expires_at` (in bulk, for all its pollers). Stopping or reviving replaces
    # the token, so a poller still in flight finds it gone and ends.
    poll_token = models.CharField(max_length=32, blank=True, editable=False)
    poll_owner = models.CharField(max_length=64, blank=True, editable=False)
    poll_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The poller's process must renew the lease by this time, or the supervisor revives it.
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    # A webhook task's view from Telegram (getWebhookInfo), read by the supervisor every
    # WEBHOOK_INFO_INTERVAL and when the task's page opens.
    webhook_pending_updates = models.PositiveIntegerField(null=True, blank=True, editable=False)
    webhook_last_error = models.CharField(max_length=300, blank=True, editable=False)
    webhook_last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    webhook_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = "bot task"
        constraints = [
            models.UniqueConstraint(
                fields=["bot"],
                condition=Q(status="running"),
                name="one_running_task_per_bot",
                violation_error_message="This bot already has a running task.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.status}]"

    def clean(self) -> None:
        if self.start_at and self.run_until and self.run_until <= self.start_at:
            raise ValidationError({"run_until": "“Run until” must be later than “start at”."})

    def run_window(self) -> str:
        """The task's run window in words, for the dashboard and bot_status: when a
        scheduled task starts, until when a running one runs, when a completed one ended."""
        if self.status == self.Status.SCHEDULED:
            starts = f"starts {time_label(self.start_at)}" if self.start_at else "starts now"
            return starts + (f", runs until {time_label(self.run_until)}" if self.run_until else "")
        if self.status == self.Status.RUNNING and self.run_until:
            return f"runs until {time_label(self.run_until)}"
        if self.status == self.Status.COMPLETED and self.stopped_at:
            return f"completed {time_label(self.stopped_at)}"
        return ""


def time_label(moment: datetime) -> str:
    """A time as operators read it: in the site's time zone, to the minute."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


class PushedUpdate(models.Model):
    """A webhook push, kept as Telegram sent it until a worker stores it in the message
    log (bots.pushes). The web process writes only this row: one insert, then Telegram
    gets its 200; the workers drain a bot's rows in update order, a batch at a time,
    through the same store as a poll's batch."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="+")
    update_id = models.BigIntegerField()
    payload = models.TextField()  # the request body: a JSON object with a valid update id
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Telegram re-sends a push it got no 200 for: the second is ignored here.
            models.UniqueConstraint(fields=["bot", "update_id"], name="one_pushed_update_per_id"),
        ]

    def __str__(self) -> str:
        return f"update {self.update_id} of bot {self.bot_id}"
