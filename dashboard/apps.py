from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """Operators' view of the fleet: the dashboard pages, health endpoints and metrics."""

    name = "dashboard"
