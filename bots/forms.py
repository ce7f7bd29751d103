"""The bot form: what the admin accepts as a token, and when it must be typed again."""

import re
from typing import Any

from django import forms
from django.conf import settings

from bots import webhooks
from bots.models import Bot, BotTask
from credentials.forms import SecretFieldsFormMixin

# Telegram's shape: the bot's numeric id, a colon, 35 characters of URL-safe base64.
TOKEN_RE = re.compile(r"\d+:[A-Za-z0-9_-]{35}")
TOKEN_SHAPE_ERROR = (
    "The token is not a Telegram bot token. A token from @BotFather is the bot's number, "
    "a colon and 35 letters, digits, “_” or “-”, e.g. 123456789:AAH… (paste it whole, "
    "without “bot” in front or spaces inside)."
)
def effective_api_base_url(url: str) -> str:
    """Where a bot with this Bot API base URL sends its token (blank: the setting)."""
    return url or settings.TELEGRAM_API_BASE_URL


class BotForm(SecretFieldsFormMixin):
    """A typed token must have Telegram's shape (a stored one, kept by leaving the field
    empty, is not checked again). A Bot API base URL that sends the token to a different
    server needs the token typed again in the same form: an edit of the URL alone must
    not hand the stored token to a host nobody entered it for."""

    secret_destinations = {"token": "api_base_url"}

    class Meta:
        model = Bot
        fields = "__all__"

    def secret_destination(self, url_field: str, value: str) -> str:
        return effective_api_base_url(value)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        token = self.fields.get("token")
        if token is not None and self.instance.pk:
            token.help_text = (
                f"{token.help_text} When you change the Bot API base URL, type the token again."
            ).strip()

    def clean_update_mode(self) -> Any:
        mode = self.cleaned_data.get("update_mode")
        problem = webhooks.base_url_problem() if mode == Bot.UpdateMode.WEBHOOK else ""
        if problem:
            raise forms.ValidationError(problem)
        if self.instance.pk and "update_mode" in self.changed_data and self.instance.tasks.filter(
            status=BotTask.Status.RUNNING
        ).exists():
            raise forms.ValidationError(
                "Stop this bot's running task before switching how it gets updates; Start "
                "then sets up the new mode (and removes the old one)."
            )
        return mode

    def clean_token(self) -> Any:
        typed = self.cleaned_data.get("token")
        # Only a typed value is a str here; the value is never echoed in the message.
        if isinstance(typed, str) and typed and not TOKEN_RE.fullmatch(typed):
            raise forms.ValidationError(TOKEN_SHAPE_ERROR, code="token_shape")
        return typed
