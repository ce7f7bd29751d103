"""Running a bot's poller inside the test process, as the poll_cycle task would."""

from bots import polling
from bots.models import BotTask
from bots.services import task_start


def launched(task: BotTask) -> BotTask:
    """Start the task (unless it runs already) and its poller in this process."""
    task.refresh_from_db()
    if task.status != BotTask.Status.RUNNING:
        task_start(task=task)
        task.refresh_from_db()
    assert polling.poller_launch(task_id=task.pk, token=task.poll_token)
    return task
