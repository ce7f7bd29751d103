from django.contrib import admin

from bots.models import Bot, BotTask
from credentials.forms import SecretFieldsFormMixin


class BotForm(SecretFieldsFormMixin):
    class Meta:
        model = Bot
        fields = "__all__"


@admin.register(Bot)
class BotAdmin(admin.ModelAdmin):
    form = BotForm
    list_display = ("name", "username", "telegram_id", "persona", "credential", "token_hint")
    list_select_related = ("persona", "credential")
    list_filter = ("persona", "credential")
    search_fields = ("name", "username")
    readonly_fields = ("username", "telegram_id", "update_offset", "created_at", "updated_at")

    @admin.display(description="token")
    def token_hint(self, obj: Bot) -> str:
        return obj.token.hint()


@admin.register(BotTask)
class BotTaskAdmin(admin.ModelAdmin):
    list_display = (
        "name", "bot", "status", "messages_processed", "replies_sent", "error_count",
        "last_run_at", "short_error",
    )
    list_filter = ("status", "use_ai")
    list_select_related = ("bot",)
    search_fields = ("name", "bot__name", "bot__username", "last_error")
    readonly_fields = (
        "status", "messages_processed", "replies_sent", "error_count", "last_error",
        "last_error_at", "last_run_at", "started_at", "stopped_at", "created_at", "updated_at",
    )

    @admin.display(description="last error")
    def short_error(self, obj: BotTask) -> str:
        return obj.last_error[:80]
