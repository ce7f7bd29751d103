"""The webhook: Telegram pushes a webhook bot's updates here (bots.webhooks sets it).

The view does as little as a request can: it checks the push's secret, keeps the body
for the workers (bots.pushes: one insert; they store it in the message log through the
same de-duplicated path as a poll's batch, and answer it) and answers 200; it never
waits for the AI, nor for the store. It answers 403 to a request without the bot's
current secret (an unknown bot, a stopped one, a forged request), and 200 to a body
that is not an update, with nothing stored and the reason recorded: Telegram would send
a refused update again and again.
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bots import pushes, webhooks


@csrf_exempt
@require_POST
def webhook_receive(request: HttpRequest, bot_id: int) -> HttpResponse:
    task_id = webhooks.task_for_push(bot_id=bot_id, secret=request.META.get(webhooks.SECRET_HEADER, ""))
    if task_id is None:
        return HttpResponseForbidden("Not a webhook of a running bot, or not its secret.")
    # Read directly, at most one byte beyond the cap: request.body would read any size.
    push = pushes.push_read(request.read(settings.WEBHOOK_MAX_BODY_BYTES + 1))
    if push.problem:
        pushes.push_pass_over(task_id=task_id, push=push)
    else:
        pushes.push_keep(bot_id=bot_id, push=push)
    return HttpResponse(status=200)
