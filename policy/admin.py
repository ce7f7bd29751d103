"""Access rules and per-user quotas are edited inline on the bot (this app adds the
inlines to the bot's admin, so bots never imports policy); daily usage is read-only."""

from datetime import timedelta

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from bots.admin import BotAdmin, bdi
from bots.models import Bot
from policy.models import AccessRule, QuotaOverride, UsageDay

USAGE_DAYS_SHOWN = 30


class AccessRuleInline(admin.TabularInline):
    model = AccessRule
    extra = 0
    fields = ("effect", "subject", "note")


class QuotaOverrideInline(admin.TabularInline):
    model = QuotaOverride
    extra = 0
    fields = ("subject", "daily_messages", "daily_tokens", "note")


admin.site.unregister(Bot)


@admin.register(Bot)
class BotWithPolicyAdmin(BotAdmin):
    inlines = [*BotAdmin.inlines, AccessRuleInline, QuotaOverrideInline]


@admin.register(UsageDay)
class UsageDayAdmin(admin.ModelAdmin):
    """The last 30 days: per bot (scope "the whole bot"), per person, per group."""

    list_display = ("day", "bot_name", "scope", "subject_id", "messages", "tokens", "refused")
    list_filter = ("scope", "bot", "day")
    list_select_related = ("bot",)
    search_fields = ("subject_id",)
    date_hierarchy = "day"

    def get_queryset(self, request: HttpRequest) -> QuerySet[UsageDay]:
        since = timezone.localdate() - timedelta(days=USAGE_DAYS_SHOWN)
        return super().get_queryset(request).filter(day__gte=since)

    @admin.display(description="bot", ordering="bot__name")
    def bot_name(self, obj: UsageDay) -> str:
        return bdi(obj.bot.name)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageDay | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UsageDay | None = None) -> bool:
        return False
