from django.conf import settings
from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Botfleet"
admin.site.site_title = "Botfleet admin"
admin.site.index_title = "Bots, personas and AI credentials"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls")),  # /dashboard/, /healthz, /readyz, /metrics
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
