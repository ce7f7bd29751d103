from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from bots.management.commands._tasks import task_get, task_line
from bots.models import BotTask


class Command(BaseCommand):
    help = "Show the status of one bot task, or of all of them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task_id", nargs="?", type=int, help="the BotTask id")

    def handle(self, *args: Any, task_id: int | None, **options: Any) -> None:
        tasks = [task_get(task_id)] if task_id is not None else (
            BotTask.objects.select_related("bot").order_by("pk")
        )
        for task in tasks:
            self.stdout.write(task_line(task))
        if task_id is None and not tasks:
            self.stdout.write("No bot tasks yet. Add one in the admin under Bot tasks.")
