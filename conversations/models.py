from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class Persona(models.Model):
    """Who a bot is: its instructions to the AI and the fixed lines it says itself."""

    name = models.CharField(max_length=100, unique=True)
    instructions = models.TextField(
        help_text="The system prompt: who the bot is, its voice, what it must and must not do."
    )
    temperature = models.FloatField(
        default=0.7, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)]
    )
    max_output_tokens = models.PositiveIntegerField(
        default=1024, validators=[MinValueValidator(16), MaxValueValidator(65_536)]
    )
    history_limit = models.PositiveIntegerField(
        "messages of history",
        default=20,
        validators=[MaxValueValidator(500)],
        help_text="How many earlier messages of the chat the AI sees.",
    )
    greeting = models.TextField(
        default="Hi! How can I help you today?", help_text="Sent in answer to /start."
    )
    help_reply = models.TextField(
        default="Send me a message and I'll answer. In groups, mention me or reply to me.",
        help_text="Sent in answer to /help.",
    )
    fallback_reply = models.TextField(
        default="Sorry, I can't answer right now. Please try again in a moment.",
        help_text="Sent when the AI is unavailable or declines to answer.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TelegramUser(models.Model):
    """A Telegram account seen by any of our bots (Telegram user ids are global)."""

    telegram_id = models.BigIntegerField(unique=True)
    first_name = models.CharField(max_length=255, blank=True)
    last_name = models.CharField(max_length=255, blank=True)
    username = models.CharField(max_length=64, blank=True, db_index=True)
    is_bot = models.BooleanField(default=False)
    language_code = models.CharField(max_length=16, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Telegram user"

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        full = " ".join(p for p in (self.first_name, self.last_name) if p)
        return full or (f"@{self.username}" if self.username else str(self.telegram_id))


class Chat(models.Model):
    """A chat one bot takes part in: a private chat with a user, or a group."""

    class Type(models.TextChoices):
        PRIVATE = "private"
        GROUP = "group"
        SUPERGROUP = "supergroup"
        CHANNEL = "channel"

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="chats")
    telegram_id = models.BigIntegerField()
    type = models.CharField(max_length=16, choices=Type.choices)
    title = models.CharField(max_length=255, blank=True)
    username = models.CharField(max_length=64, blank=True)
    is_active = models.BooleanField(
        default=True, help_text="Off when the user blocked the bot or removed it from the group."
    )
    inactive_reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_message_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bot", "telegram_id"], name="unique_chat_per_bot"),
        ]

    def __str__(self) -> str:
        return self.title or f"{self.get_type_display()} {self.telegram_id}"

    @property
    def is_group(self) -> bool:
        return self.type in (self.Type.GROUP, self.Type.SUPERGROUP)


class Message(models.Model):
    """The message log: every message a bot received or sent."""

    class Direction(models.TextChoices):
        IN = "in", "Incoming"
        OUT = "out", "Outgoing"

    class Kind(models.TextChoices):
        TEXT = "text"
        COMMAND = "command"
        EDITED = "edited"
        MEDIA = "media", "Photo, sticker, voice or other media"
        SERVICE = "service", "Service message (members joined, title changed...)"
        OTHER = "other"

    class ReplyState(models.TextChoices):
        NONE = "none", "No reply needed"
        PENDING = "pending", "Waiting for a worker"
        GENERATING = "generating", "Reply being prepared"
        SENDING = "sending", "Reply being sent"
        REPLIED = "replied"
        FAILED = "failed"

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="messages")
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey(
        TelegramUser, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    direction = models.CharField(max_length=3, choices=Direction.choices)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.TEXT)
    update_id = models.BigIntegerField(null=True, blank=True)
    telegram_message_id = models.BigIntegerField(null=True, blank=True)
    text = models.TextField(blank=True)
    entities = models.JSONField(
        default=list, blank=True, help_text="Formatting of an outgoing message (Telegram entities)."
    )
    reply_to = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="replies",
        help_text="For a reply we sent: the incoming message it answers.",
    )
    reply_to_telegram_message_id = models.BigIntegerField(
        null=True, blank=True, help_text="The Telegram message this one quotes, if any."
    )
    reply_state = models.CharField(
        max_length=16, choices=ReplyState.choices, default=ReplyState.NONE, db_index=True
    )
    reply_attempts = models.PositiveSmallIntegerField(default=0)
    ai_model = models.CharField(max_length=100, blank=True)
    ai_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    tokens_in = models.PositiveIntegerField(null=True, blank=True)
    tokens_out = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    telegram_date = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # Re-delivered updates (a crash before the offset moved, a Celery redelivery)
            # insert nothing: storing an update is idempotent.
            models.UniqueConstraint(
                fields=["bot", "update_id"],
                condition=Q(update_id__isnull=False),
                name="unique_update_per_bot",
            ),
        ]
        indexes = [models.Index(fields=["chat", "created_at"])]

    def __str__(self) -> str:
        arrow = "←" if self.direction == self.Direction.IN else "→"
        return f"{arrow} {self.text[:60]}"
