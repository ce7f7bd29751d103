from typing import Any

from django import forms

from conversations.models import ScheduledMessage


class ScheduledMessageForm(forms.ModelForm):
    """The model checks the schedule (cron fields by name); the form checks the chats,
    which the model cannot see before they are saved."""

    class Meta:
        model = ScheduledMessage
        fields = (
            "name", "bot", "enabled", "content", "text", "audience", "chats", "kind", "run_at",
            "cron", "timezone", "start_at", "end_at",
        )
        widgets = {"cron": forms.TextInput(attrs={"placeholder": "0 9 * * 1-5", "size": 30})}

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what a ModelForm's clean() returns (stubs: Optional)
        bot, chats = data.get("bot"), data.get("chats")
        if data.get("audience") != ScheduledMessage.Audience.CHATS or bot is None:
            return data
        if not chats:
            self.add_error("chats", "Choose at least one chat, or send to every active chat of the bot.")
            return data
        foreign = [str(chat) for chat in chats if chat.bot_id != bot.pk]
        if foreign:
            self.add_error("chats", f"Not chats of “{bot.name}”: {', '.join(foreign[:5])}.")
        return data
