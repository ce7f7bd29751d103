import pytest
from django.db import IntegrityError, transaction

from bots.models import BotTask
from conversations.models import Chat, Message
from tests.factories import make_bot, make_task

pytestmark = pytest.mark.django_db


def test_it_allows_only_one_running_task_per_bot() -> None:
    bot = make_bot()
    make_task(bot, status=BotTask.Status.RUNNING)

    with pytest.raises(IntegrityError), transaction.atomic():
        make_task(bot, status=BotTask.Status.RUNNING)


def test_it_allows_stopped_tasks_beside_a_running_one_and_running_tasks_of_other_bots() -> None:
    bot = make_bot()
    make_task(bot, status=BotTask.Status.RUNNING)
    make_task(bot, status=BotTask.Status.STOPPED)
    make_task(bot, status=BotTask.Status.FAILED)
    make_task(make_bot(), status=BotTask.Status.RUNNING)

    assert BotTask.objects.filter(status=BotTask.Status.RUNNING).count() == 2


def test_it_stores_each_telegram_update_once_per_bot() -> None:
    bot = make_bot()
    chat = Chat.objects.create(bot=bot, telegram_id=42, type=Chat.Type.PRIVATE)
    Message.objects.create(bot=bot, chat=chat, direction="in", update_id=1000, text="hi")

    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(bot=bot, chat=chat, direction="in", update_id=1000, text="hi")
    # Outgoing messages have no update id; any number of them is fine.
    Message.objects.create(bot=bot, chat=chat, direction="out", text="a")
    Message.objects.create(bot=bot, chat=chat, direction="out", text="b")
    assert Message.objects.count() == 3
