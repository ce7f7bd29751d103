"""The sandbox chat page and its small JSON API (staff only)."""

import json

import httpx
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from bots.models import Bot, BotTask
from emulators.telegram import EmulatorClient
from sandbox import conversation
from sandbox.emulator import emulator_client, sandbox_bots

MAX_TEXT = 4096
EMULATOR_DOWN = "The Telegram emulator is not answering (is bin/run still running?)."
UNKNOWN_TO_EMULATOR = "The emulator does not know this bot: restart bin/run to register it."


@staff_member_required
@require_GET
def chat_page(request: HttpRequest) -> HttpResponse:
    bots = sandbox_bots()
    return render(request, "sandbox/chat.html", {
        "bots": bots, "members": conversation.GROUP_MEMBERS,
        "group_title": conversation.DEMO_GROUP_TITLE,
    })


@staff_member_required
@require_GET
def messages_api(request: HttpRequest, bot_id: int) -> JsonResponse:
    bot = get_object_or_404(Bot, pk=bot_id)
    kind = request.GET.get("chat", "private")
    chat_id = conversation.chat_id_for(kind, _staff_user_id(request))
    client = emulator_client()
    try:
        lines = conversation.chat_lines(client, token=bot.token.reveal(), chat_id=chat_id)
        typing = _typing_since(client, bot, chat_id, lines)
    except LookupError:
        return JsonResponse({"error": UNKNOWN_TO_EMULATOR}, status=409)
    except (httpx.HTTPError, TimeoutError):
        return JsonResponse({"error": EMULATOR_DOWN}, status=503)
    task = BotTask.objects.filter(bot=bot).order_by("-status", "-updated_at").values("status").first()
    return JsonResponse({
        "bot": {"name": bot.first_name or bot.name, "username": bot.username,
                "status": task["status"] if task else "no task"},
        "messages": lines, "typing": typing,
    })


def _staff_user_id(request: HttpRequest) -> int:
    """The logged-in user's id (staff_member_required has let only staff in)."""
    if not request.user.is_authenticated:
        raise PermissionDenied
    return request.user.pk


def _typing_since(
    client: EmulatorClient, bot: Bot, chat_id: int, lines: list[conversation.JSON]
) -> bool:
    """A typing action newer than the bot's last message: it is preparing a reply."""
    actions = client.chat_actions(bot.token.reveal(), chat_id=chat_id)
    last_bot = max((line["time"] for line in lines if line["from_bot"]), default=0.0)
    return bool(actions) and actions[-1]["time"] > last_bot


@staff_member_required
@require_POST
def send_api(request: HttpRequest, bot_id: int) -> JsonResponse:
    bot = get_object_or_404(Bot, pk=bot_id)
    try:
        body = json.loads(request.body or b"{}")
    except json.JSONDecodeError:
        return JsonResponse({"error": "Send JSON."}, status=400)
    text = str(body.get("text", "")).strip()
    if not text:
        return JsonResponse({"error": "Type a message first."}, status=400)
    if len(text) > MAX_TEXT:
        return JsonResponse({"error": f"Telegram messages are at most {MAX_TEXT} characters."}, status=400)
    try:
        conversation.person_says(
            emulator_client(), token=bot.token.reveal(), bot_username=bot.username,
            kind="group" if body.get("chat") == "group" else "private",
            staff_user_id=_staff_user_id(request), staff_name=request.user.get_username(), text=text,
            as_member=_int_or_none(body.get("as_member")), reply_to=_int_or_none(body.get("reply_to")),
        )
    except LookupError:
        return JsonResponse({"error": UNKNOWN_TO_EMULATOR}, status=409)
    except (httpx.HTTPError, TimeoutError):
        return JsonResponse({"error": EMULATOR_DOWN}, status=503)
    return JsonResponse({"ok": True})


def _int_or_none(value: object) -> int | None:
    """A JSON number or numeric string as an int; None for anything else."""
    if not isinstance(value, str | int | float) or value == "":
        return None
    try:
        return int(value)
    except (ValueError, OverflowError):  # "abc", NaN, Infinity
        return None
