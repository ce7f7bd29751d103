from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bots.management.commands._tasks import task_get, task_line
from bots.models import BotTask
from bots.services import TaskError, task_start


class Command(BaseCommand):
    help = "Start a bot task (its poller runs on the Celery workers), or --list the tasks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task_id", nargs="?", type=int, help="the BotTask id")
        parser.add_argument("--list", action="store_true", help="list every task and its status")

    def handle(self, *args: Any, task_id: int | None, list: bool, **options: Any) -> None:
        if list and task_id is not None:
            # Refused, not read as --list: the operator meant one of the two.
            raise CommandError(
                f"Give a task id or --list, not both. To start task #{task_id}: "
                f"manage.py start_bot_background_task {task_id}"
            )
        if list:
            for task in BotTask.objects.select_related("bot").order_by("pk"):
                self.stdout.write(task_line(task))
            return
        if task_id is None:
            raise CommandError("Give a task id, or --list to see them.")
        try:
            task = task_start(task=task_get(task_id))
        except TaskError as error:
            raise CommandError(str(error)) from None
        verb = "Scheduled" if task.status == BotTask.Status.SCHEDULED else "Started"
        self.stdout.write(self.style.SUCCESS(f"{verb}: {task_line(task)}"))
