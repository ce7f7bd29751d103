"""The webhook: Telegram pushes a webhook bot's updates here (bots.webhooks sets it).

The view stores the update through the same de-duplicated path as polling
(bots.updates) and hands the messages to the workers; it never waits for the AI, so
Telegram gets its 200 at once. It answers 403 to a request without the bot's current
secret (an unknown bot, a stopped one, a forged request), and 200 to a body that is not
an update, with nothing stored and the reason recorded: Telegram would send a refused
update again and again.
"""

import json
import logging

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bots import telegram, updates, webhooks

log = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def webhook_receive(request: HttpRequest, bot_id: int) -> HttpResponse:
    task = webhooks.task_for_push(bot_id=bot_id, secret=request.META.get(webhooks.SECRET_HEADER, ""))
    if task is None:
        return HttpResponseForbidden("Not a webhook of a running bot, or not its secret.")
    # Read directly, at most one byte beyond the cap: request.body would read any size.
    body = request.read(settings.WEBHOOK_MAX_BODY_BYTES + 1)
    polled = _read(body)
    with transaction.atomic():
        batch = updates.batch_store(task=task, polled=polled, claim=False)
    sink = updates.sink()
    if batch.to_answer and sink is not None:
        sink.hand_off(batch)
    return HttpResponse(status=200)


def _read(body: bytes) -> telegram.Polled:
    """The pushed update, or why it cannot be one (passed over, like a poll's)."""
    if len(body) > settings.WEBHOOK_MAX_BODY_BYTES:
        return _unreadable(f"a webhook request of more than {settings.WEBHOOK_MAX_BODY_BYTES} bytes")
    try:
        item = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested beyond the parser's depth
        return _unreadable("a webhook request that is not JSON")
    if not isinstance(item, dict):
        return _unreadable("a webhook request that is not an update")
    return telegram.updates_read([item])


def _unreadable(why: str) -> telegram.Polled:
    return telegram.Polled(updates=[], unreadable=[(None, why)], received=1)

