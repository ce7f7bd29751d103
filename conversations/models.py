from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.signals import post_delete
from django.dispatch import receiver
from timezone_field import TimeZoneField


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
        default=50,
        validators=[MaxValueValidator(500)],
        help_text="At most this many earlier messages of the chat are sent to the AI (within "
        "the token budget below); older ones reach it through the chat's summary.",
    )
    context_token_budget = models.PositiveIntegerField(
        "context budget (tokens)", default=6000,
        validators=[MinValueValidator(500), MaxValueValidator(1_000_000)],
        help_text="Tokens of conversation (summary, notes and recent messages) sent with each "
        "question; the oldest turns go first. Estimated: about 4 characters a token for Latin "
        "text, one per character beyond it.",
    )
    stream_replies = models.BooleanField(
        "stream replies", default=True,
        help_text="In private chats, show an AI answer as it is written (Telegram's message "
        "drafts), then send it whole. Groups get the whole answer only, unless streaming in "
        "groups by editing is on too.",
    )
    stream_group_edits = models.BooleanField(
        "stream in groups by editing", default=False,
        help_text="With “stream replies” on: in groups (which have no drafts), send the start "
        "of an AI answer at once and edit it as the rest is written (at most every 1.5 s, only "
        "while the group has used at most half of Telegram's 20 messages a minute), ending "
        "with the whole answer. Each edit spends the group's message budget.",
    )
    remembers_users = models.BooleanField(
        "remember people", default=False,
        help_text="Keep short notes about each person (“name is Ann”, “prefers short answers”), "
        "written by the AI from their messages, shown and editable in the admin, and given to "
        "the AI in that person's chats.",
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
    media_unsupported_reply = models.TextField(
        "“cannot see media” line",
        default="I can't look at this kind of file, sorry. Could you tell me in words?",
        help_text="Sent when a photo, voice note or video reaches a bot whose AI cannot take it.",
    )
    not_allowed_reply = models.TextField(
        "“not allowed” line", blank=True,
        default="Sorry, this bot only talks to the people it was set up for.",
        help_text="Sent in a private chat to someone the bot's access rules refuse. Empty: "
        "say nothing. (Refused messages in groups always get silence.)",
    )
    quota_reached_reply = models.TextField(
        "“quota reached” line", blank=True,
        default="You have reached today's limit of messages with me. Let's talk again tomorrow!",
        help_text="Sent once a day to someone over their daily quota; after it, silence. Empty: say nothing.",
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

    class Refusal(models.TextChoices):
        DENIED = "denied", "a deny rule"
        NOT_ALLOWED = "not_allowed", "not on the allow list"
        PAUSED = "paused", "the bot is paused"
        QUOTA = "quota", "daily quota reached"
        NOT_OPERATOR = "not_operator", "an operator command from someone else"

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

    class SendState(models.TextChoices):
        NONE = "", "Not an outgoing part"
        QUEUED = "queued", "Queued to send"
        SENDING = "sending", "Being sent"
        SENT = "sent"
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
    message_thread_id = models.BigIntegerField(
        "forum topic", null=True, blank=True,
        help_text="The forum topic (thread) of a message in a forum supergroup; a reply "
        "goes to the topic of the message it answers.",
    )
    reply_state = models.CharField(
        max_length=16, choices=ReplyState.choices, default=ReplyState.NONE, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Incoming: answering attempts. Outgoing: send attempts."
    )
    media_kind = models.CharField(
        max_length=16, blank=True, help_text="Incoming: the media it carried (photo, voice, …)."
    )
    media_file_id = models.CharField(
        max_length=255, blank=True, help_text="Telegram's file id (the bytes are not kept)."
    )
    media_size = models.PositiveBigIntegerField(null=True, blank=True, help_text="Bytes, as Telegram said.")
    media_mime = models.CharField("media type", max_length=100, blank=True)
    refusal = models.CharField(
        max_length=12, choices=Refusal.choices, blank=True, default="",
        help_text="Incoming: why the bot's policy gave it no AI answer (empty: it did not refuse).",
    )
    # --- the outbox: an outgoing row is a message part to send (conversations.outbox) ---
    send_state = models.CharField(
        max_length=8, choices=SendState.choices, blank=True, default=SendState.NONE
    )
    send_after = models.DateTimeField(
        null=True, blank=True, help_text="Outgoing: not before this time (back-off, flood wait)."
    )
    handed_at = models.DateTimeField(
        "handed to Telegram", null=True, blank=True,
        help_text="Stamped just before the send request. A part with this stamp and no "
        "Telegram id is never sent again (Telegram may have it).",
    )
    quote_telegram_message_id = models.BigIntegerField(
        null=True, blank=True, help_text="Outgoing: the Telegram message this part quotes."
    )
    # --- edit-based streaming in groups (conversations.streaming.PreviewStream) -----------
    preview_message_id = models.BigIntegerField(
        null=True, blank=True,
        help_text="Incoming: the Telegram message showing its answer as it was written "
        "(streamed in a group by editing); the answer's first part replaces its text.",
    )
    edits_message_id = models.BigIntegerField(
        null=True, blank=True,
        help_text="Outgoing: sent by editing this Telegram message (a streamed preview) "
        "instead of sending a new one. Editing twice to the same text is harmless, so such a "
        "part is redone after a crash, never failed as interrupted.",
    )
    # --- the claim: which worker answers (incoming) or sends (outgoing) this row ------
    claimed_by = models.CharField(max_length=64, blank=True, editable=False)
    claim_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    ai_model = models.CharField(max_length=100, blank=True)
    ai_latency_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Outgoing (first part): how long the AI took to answer."
    )
    ai_first_token_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Streamed: milliseconds to the AI's first text."
    )
    first_draft_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Streamed: milliseconds to the first draft (or, in a group, the first "
        "preview message) the person saw."
    )
    tokens_in = models.PositiveIntegerField(null=True, blank=True)
    tokens_out = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    telegram_date = models.DateTimeField(null=True, blank=True)
    scheduled = models.ForeignKey(
        "ScheduledMessage", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="messages", help_text="For a scheduled message we sent: its schedule.",
    )
    scheduled_run = models.ForeignKey(
        "ScheduledRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages",
        help_text="For a scheduled message we sent: the firing it belongs to.",
    )
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
        indexes = [
            models.Index(fields=["chat", "created_at"]),
            # A broadcast looks up the parts it stored for one chat of one run.
            models.Index(fields=["scheduled_run", "chat"], name="message_run_chat"),
            # The reaper's and the claim renewal's look-ups: only open rows are indexed.
            models.Index(
                fields=["claim_expires_at"], name="message_open_claims",
                condition=Q(claim_expires_at__isnull=False),
            ),
            models.Index(
                fields=["claimed_by"], name="message_claimed_by",
                condition=~Q(claimed_by=""),
            ),
            models.Index(
                fields=["send_state", "send_after"], name="message_outbox_open",
                condition=Q(send_state__in=["queued", "sending"]),
            ),
        ]

    def __str__(self) -> str:
        arrow = "←" if self.direction == self.Direction.IN else "→"
        return f"{arrow} {self.text[:60]}"


class SkippedUpdate(models.Model):
    """A placeholder for an update Telegram delivered that could not be read or stored
    (a shape no message has, an impossible id). The poller moves past it (one bad update
    never holds up the ones behind it) and the operator sees here what was lost and why."""

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="skipped_updates")
    update_id = models.BigIntegerField(null=True, blank=True)
    error = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["bot", "update_id"], condition=Q(update_id__isnull=False),
                name="unique_skipped_update_per_bot",
            ),
        ]

    def __str__(self) -> str:
        return f"update {self.update_id if self.update_id is not None else '?'}: {self.error[:60]}"


# --- scheduled messages --------------------------------------------------------------

SCHEDULED_TEXT_MAX_LENGTH = 4 * 4096  # sent as up to four Telegram messages


class ChatSummary(models.Model):
    """The AI's rolling summary of a chat's (or forum topic's) older messages, sent ahead
    of the recent ones once the conversation outgrew the persona's budget
    (conversations.memory)."""

    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="summaries")
    topic = models.BigIntegerField(
        "forum topic", default=0, help_text="The forum topic's thread id; 0 for the chat itself."
    )
    text = models.TextField(help_text="Written by the AI; you may correct it. Sent to the AI as data.")
    covers_up_to = models.BigIntegerField(
        default=0, help_text="The id of the last message it summarises; newer ones are sent as they are."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "chat summary"
        verbose_name_plural = "chat summaries"
        constraints = [models.UniqueConstraint(fields=["chat", "topic"], name="unique_summary_per_topic")]

    def __str__(self) -> str:
        return f"Summary of {self.chat}" + (f" (topic {self.topic})" if self.topic else "")


class UserFact(models.Model):
    """A short note a bot keeps about a person (personas that remember people)."""

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="user_facts")
    user = models.ForeignKey(TelegramUser, on_delete=models.CASCADE, related_name="facts")
    text = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["bot", "user", "id"]
        verbose_name = "note about a person"
        verbose_name_plural = "notes about people"

    def __str__(self) -> str:
        return self.text


class ScheduledMessage(models.Model):
    """A message a bot sends on a schedule: once, or on a cron, fixed or AI-written.

    Each one owns exactly one django-celery-beat PeriodicTask, kept in step by
    conversations.scheduling.schedule_sync (beat fires it; the firing is claimed as a
    ScheduledRun, so a duplicate firing sends nothing).
    """

    class Audience(models.TextChoices):
        CHATS = "chats", "The chosen chats"
        ALL = "all", "Every active chat of the bot"
        PRIVATE = "private", "Every active private chat of the bot"

    class Content(models.TextChoices):
        TEXT = "text", "Fixed text"
        PROMPT = "prompt", "Written by the persona from a prompt (AI)"

    class Kind(models.TextChoices):
        ONCE = "once", "Once, at a date and time"
        CRON = "cron", "Repeating (cron expression)"

    name = models.CharField(max_length=100)
    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="scheduled_messages")
    audience = models.CharField(max_length=8, choices=Audience.choices, default=Audience.CHATS)
    chats = models.ManyToManyField(
        Chat, blank=True, related_name="scheduled_messages",
        help_text="For “the chosen chats”: one or more chats of this bot.",
    )
    content = models.CharField(max_length=8, choices=Content.choices, default=Content.TEXT)
    text = models.TextField(
        help_text="The message (Markdown), or for an AI-written message the prompt the "
        "persona writes it from at send time."
    )
    kind = models.CharField("schedule", max_length=8, choices=Kind.choices, default=Kind.ONCE)
    run_at = models.DateTimeField("send at", null=True, blank=True, help_text="For “once”.")
    cron = models.CharField(
        "cron expression", max_length=120, blank=True,
        help_text="For “repeating”: minute hour day-of-month month day-of-week, "
        "e.g. “0 9 * * 1-5” for 09:00 on weekdays.",
    )
    timezone = TimeZoneField(
        default="UTC", use_pytz=False, help_text="The cron expression is read in this time zone."
    )
    enabled = models.BooleanField(default=True)
    start_at = models.DateTimeField(
        null=True, blank=True, help_text="Optional: no sends before this time."
    )
    end_at = models.DateTimeField(null=True, blank=True, help_text="Optional: no sends after this time.")
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, editable=False,
        on_delete=models.SET_NULL, related_name="scheduled_message",
    )
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_status = models.CharField(max_length=16, blank=True, editable=False)
    last_result = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = "scheduled message"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from conversations.scheduling import cron_validate  # scheduling imports this module

        errors: dict[str, list[str]] = {}
        if self.kind == self.Kind.ONCE and self.run_at is None:
            errors["run_at"] = ["Give the date and time to send at."]
        if self.kind == self.Kind.CRON:
            try:
                cron_validate(expression=self.cron)
            except ValidationError as error:
                errors["cron"] = error.messages
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            errors["end_at"] = ["The end must come after the start."]
        if len(self.text) > SCHEDULED_TEXT_MAX_LENGTH:
            errors["text"] = [f"At most {SCHEDULED_TEXT_MAX_LENGTH} characters."]
        if errors:
            raise ValidationError(errors)

    @property
    def periodic_task_name(self) -> str:
        # Stable and ours: renaming the message never orphans or duplicates its task.
        return f"conversations.ScheduledMessage:{self.pk}"


class ScheduledRun(models.Model):
    """One firing of a scheduled message. Unique per (schedule, slot): whoever inserts
    it owns the firing, so a second beat or a re-delivered task is a no-op."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        MANUAL = "manual", "Send now"

    class State(models.TextChoices):
        PREPARING = "preparing", "Preparing (writing the message, listing the chats)"
        SENDING = "sending"
        DONE = "done"
        FAILED = "failed"

    scheduled = models.ForeignKey(ScheduledMessage, on_delete=models.CASCADE, related_name="runs")
    slot = models.DateTimeField(help_text="The time this firing is for.")
    trigger = models.CharField(max_length=8, choices=Trigger.choices, default=Trigger.SCHEDULE)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.PREPARING, db_index=True
    )
    lanes = models.PositiveSmallIntegerField(
        default=1, help_text="How many sending tasks share the chats (they share the bot's limit)."
    )
    text = models.TextField(blank=True, help_text="What was sent: written once per run.")
    ai_model = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    total = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="A sending task must check in by this time, or the "
        "run is resumed."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-slot", "-id"]
        verbose_name = "scheduled run"
        constraints = [
            models.UniqueConstraint(fields=["scheduled", "slot"], name="one_run_per_schedule_slot"),
        ]

    def __str__(self) -> str:
        return f"{self.scheduled} @ {self.slot:%Y-%m-%d %H:%M:%S}"


class Delivery(models.Model):
    """One target chat of one run. PENDING --claim--> SENDING --> SENT | FAILED;
    SKIPPED when the chat was inactive. A SENDING row whose worker died is never sent
    again (Telegram may have it), only marked failed: at most once."""

    class State(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"
        SKIPPED = "skipped"

    run = models.ForeignKey(ScheduledRun, on_delete=models.CASCADE, related_name="deliveries")
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    telegram_message_id = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["run", "chat"], name="one_delivery_per_run_chat"),
        ]
        indexes = [models.Index(fields=["run", "state"], name="delivery_run_state")]

    def __str__(self) -> str:
        return f"{self.run} → {self.chat} [{self.state}]"


@receiver(post_delete, sender=ScheduledMessage)
def _periodic_task_remove(sender: type, instance: ScheduledMessage, **kwargs: object) -> None:
    # A signal, not only the admin's delete: a deleted bot cascades to its scheduled
    # messages, and their PeriodicTasks must go with them or beat keeps firing.
    from conversations.scheduling import periodic_task_remove

    periodic_task_remove(scheduled=instance)
