from django.contrib import admin

from conversations.models import Chat, Message, Persona, TelegramUser


@admin.register(Persona)
class PersonaAdmin(admin.ModelAdmin):
    list_display = ("name", "temperature", "max_output_tokens", "history_limit", "updated_at")
    search_fields = ("name", "instructions")


@admin.register(TelegramUser)
class TelegramUserAdmin(admin.ModelAdmin):
    list_display = ("telegram_id", "display_name", "username", "is_bot", "last_seen_at")
    list_filter = ("is_bot",)
    search_fields = ("telegram_id", "username", "first_name", "last_name")


@admin.register(Chat)
class ChatAdmin(admin.ModelAdmin):
    list_display = ("__str__", "bot", "type", "telegram_id", "is_active", "last_message_at")
    list_filter = ("type", "is_active", "bot")
    list_select_related = ("bot",)
    search_fields = ("title", "username", "telegram_id")


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "created_at", "bot", "chat", "direction", "kind", "sender", "short_text", "reply_state",
        "ai_latency_ms",
    )
    list_filter = ("direction", "kind", "reply_state", "bot")
    list_select_related = ("bot", "chat", "sender")
    search_fields = ("text", "chat__title", "sender__username")
    raw_id_fields = ("chat", "sender", "reply_to")
    date_hierarchy = "created_at"

    @admin.display(description="text")
    def short_text(self, obj: Message) -> str:
        return obj.text[:80]
