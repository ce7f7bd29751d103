from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("dashboard/", views.index, name="index"),
    path("dashboard/data.json", views.index_data, name="data"),
    path("dashboard/stop-all/", views.stop_all, name="stop-all"),
    path("dashboard/tasks/<int:task_id>/", views.task_detail, name="task"),
    path("dashboard/tasks/<int:task_id>/<str:action>/", views.task_action, name="task-action"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
]
