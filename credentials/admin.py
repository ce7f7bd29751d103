from django.contrib import admin

from credentials.forms import SecretFieldsFormMixin
from credentials.models import AICredential


class AICredentialForm(SecretFieldsFormMixin):
    class Meta:
        model = AICredential
        fields = "__all__"


@admin.register(AICredential)
class AICredentialAdmin(admin.ModelAdmin):
    form = AICredentialForm
    list_display = (
        "name", "provider", "model", "is_active", "requests_per_minute", "key_hint",
        "last_check_ok", "last_checked_at",
    )
    list_filter = ("provider", "is_active", "last_check_ok")
    search_fields = ("name", "model", "base_url")
    readonly_fields = ("last_checked_at", "last_check_ok", "last_check_message", "created_at", "updated_at")

    @admin.display(description="API key")
    def key_hint(self, obj: AICredential) -> str:
        return obj.api_key.hint() or "—"
