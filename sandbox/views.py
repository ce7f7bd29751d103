"""The sandbox chat page and its small JSON API.

For staff who may view bots (`bots.view_bot`, or `bots.change_bot`, which includes it
as in the admin), and only with bots whose Bot API base URL is the sandbox's emulator:
the sandbox sends the bot's token there, so any other bot is a 404 and nothing goes out.
A bot the emulator does not know yet (added in the admin, or the emulator restarted) is
registered with it on the way.
"""

import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import httpx
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from bots.models import Bot, BotTask
from core.permissions import staff_may_view
from emulators.telegram import EmulatorClient
from sandbox import conversation
from sandbox.emulator import (
    bot_register,
    emulator_bot_api_url,
    emulator_client,
    sandbox_bot_queryset,
    sandbox_bots,
)

MAX_TEXT = 4096
EMULATOR_DOWN = "The Telegram emulator is not answering (is bin/run still running?)."
NO_PERMISSION = "You need the “Can view bot” permission to use the sandbox."
NOT_ON_EMULATOR = (
    "No such bot in the sandbox: it works with bots whose Bot API base URL is the "
    "sandbox's Telegram emulator."
)

T = TypeVar("T")
View = Callable[..., HttpResponseBase]


class RegistrationRefused(Exception):
    """The emulator would not take the bot (another token with the same bot id)."""


def may_use_sandbox(request: HttpRequest) -> bool:
    return staff_may_view(request.user, "bots.bot")


def sandbox_page(view: View) -> View:
    """Staff only (others go to the login page, as in the admin); staff without the
    permission get a 403."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not may_use_sandbox(request):
            raise PermissionDenied(NO_PERMISSION)
        return view(request, *args, **kwargs)

    return staff_member_required(checked)


def sandbox_api(view: Callable[..., HttpResponseBase]) -> View:
    """The page's rule, answered in JSON; `bot_id` becomes the bot, if it is one the
    sandbox may talk to (looked up before anything is sent anywhere)."""

    @wraps(view)
    def checked(request: HttpRequest, bot_id: int) -> HttpResponseBase:
        if not may_use_sandbox(request):
            return JsonResponse({"error": NO_PERMISSION}, status=403)
        bot = sandbox_bot_queryset().filter(pk=bot_id).first()
        if bot is None:
            return JsonResponse({"error": NOT_ON_EMULATOR}, status=404)
        try:
            return view(request, bot)
        except RegistrationRefused as error:
            return JsonResponse({"error": str(error)}, status=409)
        except LookupError as error:  # e.g. a reply to a message the chat does not have
            return JsonResponse({"error": f"The emulator could not do that: {error}"}, status=409)
        except (httpx.HTTPError, TimeoutError):
            return JsonResponse({"error": EMULATOR_DOWN}, status=503)

    return staff_member_required(checked)


def on_emulator(bot: Bot, work: Callable[[EmulatorClient], T]) -> T:
    """Run `work` against the emulator; if it does not know the bot's token (its
    KeyError), register the bot and run it again."""
    client = emulator_client()
    try:
        return work(client)
    except KeyError:
        _register(client, bot)
        return work(client)


def _register(client: EmulatorClient, bot: Bot) -> None:
    try:
        bot_register(client, bot)
    except ValueError as error:
        raise RegistrationRefused(
            f"The emulator would not take {bot.name}: {error}. Restart bin/run for a fresh emulator."
        ) from None


@sandbox_page
@require_GET
def chat_page(request: HttpRequest) -> HttpResponse:
    bots = sandbox_bots()
    # Registered now, so a bot added in the admin can also be started right away (its
    # getMe goes to the emulator). An emulator that is down is said by the page's
    # first poll; a refusal by the bot's own requests.
    client = emulator_client()
    for bot in bots:
        try:
            bot_register(client, bot)
        except ValueError:
            continue
        except (httpx.HTTPError, TimeoutError):
            break  # not answering: do not wait for it once per bot
    return render(request, "sandbox/chat.html", {
        "bots": bots, "members": conversation.GROUP_MEMBERS,
        "group_title": conversation.DEMO_GROUP_TITLE, "emulator_bot_api_url": emulator_bot_api_url(),
    })


@require_GET
@sandbox_api
def messages_api(request: HttpRequest, bot: Bot) -> JsonResponse:
    kind = request.GET.get("chat", "private")
    chat_id = conversation.chat_id_for(kind, _staff_user_id(request))

    def read(client: EmulatorClient) -> tuple[list[conversation.JSON], bool, conversation.JSON | None]:
        lines = conversation.chat_lines(client, token=bot.token.reveal(), chat_id=chat_id)
        return lines, _typing_since(client, bot, chat_id, lines), _draft_since(client, bot, chat_id, lines)

    lines, typing, draft = on_emulator(bot, read)
    task = BotTask.objects.filter(bot=bot).order_by("-status", "-updated_at").values("status").first()
    return JsonResponse({
        "bot": {"name": bot.first_name or bot.name, "username": bot.username,
                "status": task["status"] if task else "no task"},
        "messages": lines, "typing": typing, "draft": draft,
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


def _draft_since(
    client: EmulatorClient, bot: Bot, chat_id: int, lines: list[conversation.JSON]
) -> conversation.JSON | None:
    """The reply being written (a streamed answer's latest draft) while it is newer than
    the bot's last message; the final message replaces it."""
    drafts = client.drafts(bot.token.reveal(), chat_id=chat_id)
    last_bot = max((line["time"] for line in lines if line["from_bot"]), default=0.0)
    if not drafts or drafts[-1]["at"] <= last_bot or not drafts[-1]["text"]:
        return None
    return {"text": drafts[-1]["text"], "entities": drafts[-1]["entities"] or []}


@require_POST
@sandbox_api
def send_api(request: HttpRequest, bot: Bot) -> JsonResponse:
    try:
        body = json.loads(request.body or b"{}")
    except json.JSONDecodeError:
        return JsonResponse({"error": "Send JSON."}, status=400)
    if not isinstance(body, dict):
        return JsonResponse({"error": "Send a JSON object."}, status=400)
    text = str(body.get("text", "")).strip()
    if not text:
        return JsonResponse({"error": "Type a message first."}, status=400)
    if len(text) > MAX_TEXT:
        return JsonResponse({"error": f"Telegram messages are at most {MAX_TEXT} characters."}, status=400)

    def say(client: EmulatorClient) -> None:
        conversation.person_says(
            client, token=bot.token.reveal(), bot_username=bot.username,
            kind="group" if body.get("chat") == "group" else "private",
            staff_user_id=_staff_user_id(request), staff_name=request.user.get_username(), text=text,
            as_member=_int_or_none(body.get("as_member")), reply_to=_int_or_none(body.get("reply_to")),
        )

    on_emulator(bot, say)
    return JsonResponse({"ok": True})


def _int_or_none(value: object) -> int | None:
    """A JSON number or numeric string as an int; None for anything else."""
    if not isinstance(value, str | int | float) or value == "":
        return None
    try:
        return int(value)
    except (ValueError, OverflowError):  # "abc", NaN, Infinity
        return None
