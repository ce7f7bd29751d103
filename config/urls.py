from django.conf import settings
from django.contrib import admin
from django.urls import include, path, reverse_lazy

from bots import webhooks
from bots.views import webhook_receive

admin.site.site_header = "Botfleet"
admin.site.site_title = "Botfleet admin"
admin.site.index_title = "Bots, personas and AI credentials"
# The admin's "View site" link. Lazy: resolved when a page is drawn (with the request's
# script prefix), since the URLs are not loaded yet here; the stubs want a plain str.
admin.site.site_url = reverse_lazy("dashboard:index")  # type: ignore[assignment]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls")),  # /, /dashboard/, /healthz, /readyz, /metrics
    # Telegram's pushes to webhook bots (bots.webhooks.url_of).
    path(f"{webhooks.PATH_PREFIX}<int:bot_id>/", webhook_receive, name="telegram-webhook"),
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
