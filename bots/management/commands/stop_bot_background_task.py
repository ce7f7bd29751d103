from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bots.management.commands._tasks import task_get, task_line
from bots.models import BotTask
from bots.services import TaskError, task_stop


class Command(BaseCommand):
    help = (
        "Stop a bot task, or --all running and scheduled tasks (a scheduled one will not "
        "start). Takes effect within one poll cycle."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task_id", nargs="?", type=int, help="the BotTask id")
        parser.add_argument(
            "--all", action="store_true", help="stop every running task and cancel every scheduled one"
        )

    def handle(self, *args: Any, task_id: int | None, all: bool, **options: Any) -> None:
        if all and task_id is not None:
            # Refused, not read as --all: "stop 3" with a stray --all must not stop the fleet.
            raise CommandError(
                f"Give a task id or --all, not both: {task_id} --all would stop every task. "
                f"To stop task #{task_id} only: manage.py stop_bot_background_task {task_id}"
            )
        if all:
            running = BotTask.objects.filter(
                status__in=[BotTask.Status.RUNNING, BotTask.Status.SCHEDULED]
            ).select_related("bot")
            for task in running:
                self.stdout.write(f"Stopped: {task_line(task_stop(task=task))}")
            self.stdout.write(self.style.SUCCESS(f"Stopped {len(running)} task(s)."))
            return
        if task_id is None:
            raise CommandError("Give a task id, or --all.")
        try:
            task = task_stop(task=task_get(task_id))
        except TaskError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(self.style.SUCCESS(f"Stopped: {task_line(task)}"))
