"""Dashboard pages, their JSON feed and task actions; health endpoints; metrics.

Thin: reads come from dashboard.selectors / dashboard.snapshot, every start and stop
goes through bots.services (the one path the admin and the commands use too).
"""

import hmac
import ipaddress
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bots.models import BotTask
from bots.services import (
    TaskError,
    task_restart,
    task_start,
    task_stop,
    tasks_stop_all,
    webhook_infos_refresh,
)
from dashboard import charts, health, permissions, selectors
from dashboard import metrics as fleet_metrics
from dashboard.snapshot import dashboard_snapshot

TASK_ACTIONS: dict[str, tuple[Callable[..., BotTask], str]] = {
    "start": (task_start, "Started"),
    "stop": (task_stop, "Stopped"),
    "restart": (task_restart, "Restarted"),
}

View = Callable[..., HttpResponseBase]


NO_TASK_VIEW = "You need the “Can view bot task” permission to see the dashboard."


def tasks_viewer_required(view: View) -> View:
    """A page for staff who may view bot tasks, as the admin treats its pages: anyone
    not logged in as staff is sent to the login page; staff without the permission
    get a 403."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not permissions.can_view_tasks(request.user):
            raise PermissionDenied(NO_TASK_VIEW)
        return view(request, *args, **kwargs)

    return staff_member_required(checked)


def tasks_viewer_json(view: View) -> View:
    """The same rule for the JSON feed, but a script gets a 403 in JSON, not a login page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not (request.user.is_active and request.user.is_staff):
            return JsonResponse({"error": "Log in as staff to see the dashboard."}, status=403)
        if not permissions.can_view_tasks(request.user):
            return JsonResponse({"error": NO_TASK_VIEW}, status=403)
        return view(request, *args, **kwargs)

    return wrapper


@never_cache
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The site's root: the dashboard for staff who may see it, the admin for other
    staff, the login page (coming back here) for everyone else."""
    if permissions.can_view_tasks(request.user):
        return redirect("dashboard:index")
    if request.user.is_active and request.user.is_staff:
        return redirect("admin:index")
    return redirect_to_login(request.get_full_path(), reverse("admin:login"))


def _snapshot(request: HttpRequest) -> dict[str, Any]:
    return dashboard_snapshot(
        user=request.user, status=request.GET.get("status", ""),
        search=request.GET.get("q", "").strip(), page=request.GET.get("page", 1),
    )


@never_cache
@tasks_viewer_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "snapshot": _snapshot(request),
        "refresh_ms": settings.DASHBOARD_REFRESH_SECONDS * 1000,
        "can_act": permissions.can_change_tasks(request.user),
    }
    return render(request, "dashboard/index.html", context)


@never_cache
@tasks_viewer_json
@require_GET
def index_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_snapshot(request), json_dumps_params={"ensure_ascii": False})


WEBHOOK_INFO_FRESH = timedelta(seconds=10)  # a reload within this does not ask Telegram again


def webhook_info_stale(task: BotTask) -> bool:
    return bool(
        task.status == BotTask.Status.RUNNING and task.bot.uses_webhook
        and (task.webhook_checked_at is None or timezone.now() - task.webhook_checked_at > WEBHOOK_INFO_FRESH)
    )


@never_cache
@tasks_viewer_required
@require_GET
def task_detail(request: HttpRequest, task_id: int) -> HttpResponse:
    try:
        task = selectors.task_for_detail(task_id=task_id)
    except BotTask.DoesNotExist:
        raise Http404("No such task.") from None
    if webhook_info_stale(task):
        # What Telegram says now (pending updates, its last delivery error), not up to
        # WEBHOOK_INFO_INTERVAL old; a failure to ask is recorded on the task.
        webhook_infos_refresh([task])
        task = selectors.task_for_detail(task_id=task_id)
    # The task's health is for whoever may view tasks; what people wrote, and who they
    # are, only for those the admin would show the Messages page to.
    can_read = permissions.can_view_messages(request.user)
    context = {
        **admin.site.each_context(request),
        "title": f"Task #{task.pk} “{task.name}”",
        "task": task,
        "can_view_messages": can_read,
        "conversation": selectors.recent_messages(task=task) if can_read else [],
        "errors": selectors.recent_errors(task=task),
        "chart": charts.bar_chart(selectors.replies_per_hour(task=task)),
        "can_act": permissions.can_change_tasks(request.user),
    }
    return render(request, "dashboard/task_detail.html", context)


@staff_member_required
@require_POST
def task_action(request: HttpRequest, task_id: int, action: str) -> HttpResponse:
    if action not in TASK_ACTIONS:
        raise Http404("No such action.")
    if not permissions.can_change_tasks(request.user):
        return _action_answer(request, False, "You may not start or stop tasks.", status=403)
    task = get_object_or_404(BotTask.objects.select_related("bot"), pk=task_id)
    service, verb = TASK_ACTIONS[action]
    try:
        task = service(task=task)
    except TaskError as error:
        return _action_answer(request, False, str(error), status=409)
    if task.status == BotTask.Status.SCHEDULED:
        text = f"Scheduled task #{task.pk} “{task.name}”: {task.run_window()}."
    else:
        text = f"{verb} task #{task.pk} “{task.name}”."
    return _action_answer(request, True, text, status=200)


@never_cache
@tasks_viewer_required
def stop_all(request: HttpRequest) -> HttpResponse:
    """The emergency stop for the whole fleet: a page that says what it will do, and
    its form (POST) that does it; as `stop_bot_background_task --all`."""
    if not permissions.can_change_tasks(request.user):
        raise PermissionDenied("You may not start or stop tasks.")
    if request.method == "POST":
        stopped = tasks_stop_all()
        messages.add_message(request, messages.SUCCESS, f"Emergency stop: stopped {len(stopped)} task(s).")
        return redirect("dashboard:index")
    context = {
        **admin.site.each_context(request),
        "title": "Stop every bot",
        "running": BotTask.objects.filter(status=BotTask.Status.RUNNING).count(),
        "scheduled": BotTask.objects.filter(status=BotTask.Status.SCHEDULED).count(),
    }
    return render(request, "dashboard/stop_all.html", context)


def _action_answer(request: HttpRequest, ok: bool, text: str, *, status: int) -> HttpResponse:
    # The page's script asks for JSON; a plain form post (no script) is redirected back.
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"ok": ok, "message": text}, status=status)
    messages.add_message(request, messages.SUCCESS if ok else messages.ERROR, text)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
        back = "dashboard:index"
    return redirect(back)


# --- health and metrics -------------------------------------------------------------


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process serves requests. Asks nothing else, so a database or Redis
    outage never gets the web processes restarted for nothing."""
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    checks = health.readiness()
    failed = [name for name, result in checks.items() if not result.ok]
    body = {
        "ready": not failed,
        "failed": failed,
        "checks": {
            name: {"ok": result.ok, "detail": result.detail, "ms": result.ms}
            for name, result in checks.items()
        },
    }
    return JsonResponse(body, status=503 if failed else 200)


METRICS_FORBIDDEN = (
    "Forbidden. Scrape /metrics with the header “Authorization: Bearer <METRICS_TOKEN>”, "
    "from an address listed in METRICS_ALLOWED_IPS, or logged in as staff who may view "
    "bot tasks. With DEBUG off neither METRICS_TOKEN nor METRICS_ALLOWED_IPS has a "
    "default: set one (see the README, “Dashboard and monitoring”).\n"
)


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not (
        permissions.can_view_tasks(request.user)
        or _metrics_token_given(request)
        or _metrics_client_allowed(request)
    ):
        return HttpResponse(METRICS_FORBIDDEN, status=403, content_type="text/plain")
    return HttpResponse(generate_latest(fleet_metrics.fleet_registry()), content_type=CONTENT_TYPE_LATEST)


def _metrics_token_given(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    if not expected:  # no token configured: no header opens /metrics, not even an empty one
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant time: how much of a guess matched must not show in the response time.
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def _metrics_client_allowed(request: HttpRequest) -> bool:
    try:
        client = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if client.version == 6 and client.ipv4_mapped:  # a dual-stack socket's view of IPv4
        client = client.ipv4_mapped
    return any(client in ipaddress.ip_network(entry, strict=False) for entry in settings.METRICS_ALLOWED_IPS)
