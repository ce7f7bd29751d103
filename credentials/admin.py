from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from credentials.checks import credential_check
from credentials.forms import SecretFieldsFormMixin
from credentials.models import AICredential


class AICredentialForm(SecretFieldsFormMixin):
    secret_destinations = {"api_key": "base_url"}

    class Meta:
        model = AICredential
        fields = "__all__"


@admin.action(description="Check selected credentials (one live call each)")
def check_credentials(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[AICredential]
) -> None:
    for credential in queryset:
        result = credential_check(credential=credential)
        level = messages.SUCCESS if result.ok else messages.ERROR
        modeladmin.message_user(request, f"{credential.name}: {result.message}", level)


@admin.register(AICredential)
class AICredentialAdmin(admin.ModelAdmin):
    form = AICredentialForm
    actions = [check_credentials]
    list_display = (
        "name", "provider", "model_shown", "is_active", "requests_per_minute", "key_hint",
        "requests_total", "failures_total", "last_error", "last_check_ok", "last_checked_at",
    )
    list_filter = ("provider", "is_active", "last_check_ok")
    search_fields = ("name", "model", "base_url")
    readonly_fields = (
        "requests_total", "failures_total", "last_used_at", "last_error", "last_error_at",
        "last_checked_at", "last_check_ok", "last_check_message", "created_at", "updated_at",
    )

    @admin.display(description="model", ordering="model")
    def model_shown(self, obj: AICredential) -> str:
        return "—" if obj.provider == AICredential.Provider.OFFLINE else obj.model

    @admin.display(description="API key")
    def key_hint(self, obj: AICredential) -> str:
        return obj.api_key.hint() or "—"
