"""Celery tasks of the Telegram side: thin, ids in, one service call each."""

from celery import shared_task
from celery.signals import worker_shutting_down

from bots import polling, pushes, supervisor


@shared_task(name="bots.tasks.poll_cycle")
def poll_cycle(task_id: int, token: str) -> None:
    polling.poller_launch(task_id=task_id, token=token)


@shared_task(name="bots.tasks.pushes_drain")
def pushes_drain(bot_id: int) -> None:
    """A webhook bot's pushes, kept by the web process: store them and answer them here."""
    pushes.drain(bot_id)


@shared_task(name="bots.tasks.supervise")
def supervise() -> None:
    supervisor.run_windows_apply()
    supervisor.pollers_revive()
    supervisor.webhooks_check()
    pushes.sweep()


@worker_shutting_down.connect
def _release_poll_leases(**_: object) -> None:
    polling.leases_release_all()
