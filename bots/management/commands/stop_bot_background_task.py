from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bots.management.commands._tasks import task_get, task_line
from bots.services import TaskError, task_stop, tasks_stop_all


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
            stopped = tasks_stop_all()
            for task in stopped:
                self.stdout.write(f"Stopped: {task_line(task)}")
            self.stdout.write(self.style.SUCCESS(f"Stopped {len(stopped)} task(s)."))
            return
        if task_id is None:
            raise CommandError("Give a task id, or --all.")
        try:
            task = task_stop(task=task_get(task_id))
        except TaskError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(self.style.SUCCESS(f"Stopped: {task_line(task)}"))
