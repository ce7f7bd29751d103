"""Dashboard pages, their JSON feed and task actions; health endpoints; metrics.

Thin: reads come from dashboard.selectors / dashboard.snapshot, every start and stop
goes through bots.services (the one path the admin and the commands use too).
"""

import ipaddress
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bots.models import BotTask
from bots.services import TaskError, task_restart, task_start, task_stop
from dashboard import charts, health, selectors
from dashboard import metrics as fleet_metrics
from dashboard.snapshot import dashboard_snapshot

TASK_ACTIONS: dict[str, tuple[Callable[..., BotTask], str]] = {
    "start": (task_start, "Started"),
    "stop": (task_stop, "Stopped"),
    "restart": (task_restart, "Restarted"),
}

View = Callable[..., HttpResponseBase]


def staff_json(view: View) -> View:
    """Like staff_member_required, but a script gets a 403 in JSON, not a login page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not (request.user.is_active and request.user.is_staff):
            return JsonResponse({"error": "Log in as staff to see the dashboard."}, status=403)
        return view(request, *args, **kwargs)

    return wrapper


def _snapshot(request: HttpRequest) -> dict[str, Any]:
    return dashboard_snapshot(
        user=request.user, status=request.GET.get("status", ""),
        search=request.GET.get("q", "").strip(), page=request.GET.get("page", 1),
    )


@never_cache
@staff_member_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "snapshot": _snapshot(request),
        "refresh_ms": settings.DASHBOARD_REFRESH_SECONDS * 1000,
    }
    return render(request, "dashboard/index.html", context)


@never_cache
@staff_json
@require_GET
def index_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_snapshot(request), json_dumps_params={"ensure_ascii": False})


@never_cache
@staff_member_required
@require_GET
def task_detail(request: HttpRequest, task_id: int) -> HttpResponse:
    try:
        task = selectors.task_for_detail(task_id=task_id)
    except BotTask.DoesNotExist:
        raise Http404("No such task.") from None
    context = {
        **admin.site.each_context(request),
        "title": f"Task #{task.pk} “{task.name}”",
        "task": task,
        "conversation": selectors.recent_messages(task=task),
        "errors": selectors.recent_errors(task=task),
        "chart": charts.bar_chart(selectors.replies_per_hour(task=task)),
        "can_act": request.user.has_perm("bots.change_bottask"),
    }
    return render(request, "dashboard/task_detail.html", context)


@staff_member_required
@require_POST
def task_action(request: HttpRequest, task_id: int, action: str) -> HttpResponse:
    if action not in TASK_ACTIONS:
        raise Http404("No such action.")
    if not request.user.has_perm("bots.change_bottask"):
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


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not (request.user.is_active and request.user.is_staff) and not _metrics_client_allowed(request):
        return HttpResponse("Forbidden: not a staff user or an allowed address.\n", status=403,
                            content_type="text/plain")
    return HttpResponse(generate_latest(fleet_metrics.fleet_registry()), content_type=CONTENT_TYPE_LATEST)


def _metrics_client_allowed(request: HttpRequest) -> bool:
    try:
        client = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if client.version == 6 and client.ipv4_mapped:  # a dual-stack socket's view of IPv4
        client = client.ipv4_mapped
    return any(client in ipaddress.ip_network(entry, strict=False) for entry in settings.METRICS_ALLOWED_IPS)
