import logging
import signal
import time
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from bots.management.commands._tasks import task_get
from bots.models import Bot
from conversations import broadcasts, scheduling
from conversations.models import Chat, ScheduledMessage, ScheduledRun

STEP = 2.0  # seconds of sending between progress lines (and SIGTERM checks)


class Command(BaseCommand):
    help = (
        "Send a message now from a task's bot to some chats (--chat, repeatable) or to "
        "every active chat (--all-chats). It is recorded as a one-off scheduled message "
        "and sent by the same service as scheduled ones: rate-limited, logged, once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("text", help="the message (Markdown), or with --ai the prompt")
        parser.add_argument("--task", type=int, required=True, help="the BotTask id whose bot sends")
        parser.add_argument(
            "--chat", type=int, action="append", default=[],
            help="a Telegram chat id of a chat the bot knows (repeatable)",
        )
        parser.add_argument("--all-chats", action="store_true", help="every active chat of the bot")
        parser.add_argument("--ai", action="store_true", help="the persona writes the message from TEXT")
        parser.add_argument(
            "--enqueue", action="store_true",
            help="hand the sending to the Celery workers instead of sending from this shell",
        )

    def handle(self, *args: Any, verbosity: int, **options: Any) -> None:
        # The command's own lines say what happened. The log lines the same code writes
        # for workers' logs would repeat them on stderr (a failed run twice, say): -v 2
        # shows them.
        if verbosity < 2:
            logging.disable(logging.WARNING)
        try:
            self._handle(**options)
        finally:
            logging.disable(logging.NOTSET)

    def _handle(self, *, text: str, task: int, chat: list[int], all_chats: bool, ai: bool,
                enqueue: bool, **options: Any) -> None:
        if bool(chat) == all_chats:
            raise CommandError("Give --chat <chat_id> (one or more) or --all-chats, not both.")
        bot = task_get(task).bot
        chats = self._chats(bot.pk, chat)
        now = timezone.now()
        scheduled = self._record(bot, chats, text, ai, all_chats, run_at=now)
        run = broadcasts.run_claim(
            scheduled=scheduled, slot=now, trigger=ScheduledRun.Trigger.MANUAL
        )
        if run is None:  # cannot happen: a new schedule has no runs yet
            raise CommandError(f"Scheduled message #{scheduled.pk} is already being sent.")
        if enqueue:
            from conversations.tasks import scheduled_run_start

            transaction.on_commit(lambda: scheduled_run_start.delay(run.pk))
            self.stdout.write(self.style.SUCCESS(f"Queued run #{run.pk} of “{scheduled.name}”."))
            return
        self._send(run)

    def _chats(self, bot_id: int, telegram_ids: list[int]) -> list[Chat]:
        found = list(Chat.objects.filter(bot_id=bot_id, telegram_id__in=telegram_ids))
        missing = set(telegram_ids) - {c.telegram_id for c in found}
        if missing:
            raise CommandError(
                f"This bot knows no chat {', '.join(map(str, sorted(missing)))} (a chat is known "
                "once someone wrote to the bot there)."
            )
        return found

    def _record(
        self, bot: Bot, chats: list[Chat], text: str, ai: bool, all_chats: bool, *, run_at: datetime
    ) -> ScheduledMessage:
        scheduled = ScheduledMessage(
            name=f"Sent from the shell {run_at:%Y-%m-%d %H:%M:%S}", bot=bot, text=text,
            audience=ScheduledMessage.Audience.ALL if all_chats else ScheduledMessage.Audience.CHATS,
            content=ScheduledMessage.Content.PROMPT if ai else ScheduledMessage.Content.TEXT,
            kind=ScheduledMessage.Kind.ONCE, run_at=run_at,
            # Disabled: beat never fires it; this command sends it, once.
            enabled=False,
        )
        try:
            scheduled.full_clean(exclude=["chats"])
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        scheduled.save()
        scheduled.chats.set(chats)
        scheduling.schedule_sync(scheduled=scheduled)
        return scheduled

    def _send(self, run: ScheduledRun) -> None:
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        # No fallback line from the shell: the operator sees why and can send again.
        prepared = broadcasts.run_prepare(run_id=run.pk, ai_fallback=False)
        if prepared is None:
            raise CommandError(f"Run #{run.pk} could not start: {ScheduledRun.objects.get(pk=run.pk).error}")
        self.stdout.write(f"Sending run #{run.pk} to {prepared.total} chat(s)…")
        # Lanes take turns (a lane that has sent its chats waits for the others' to settle).
        waits: dict[int, float | None] = dict.fromkeys(range(prepared.lanes), 0.0)
        while not stopping and any(wait is not None for wait in waits.values()):
            time.sleep(min(wait for wait in waits.values() if wait is not None))
            for lane, wait in waits.items():
                if wait is not None:
                    waits[lane] = broadcasts.run_lane_send(run_id=run.pk, lane=lane, budget=STEP).retry_in
            self._progress(run.pk)
        if stopping:
            self.stdout.write("Stopped: the rest stays queued; a worker resumes it (beat's reaper).")
            return
        run.refresh_from_db()
        if run.state == ScheduledRun.State.FAILED:
            self.stdout.write(f"  {broadcasts.run_summary(run=run)}")
            raise CommandError(f"Run #{run.pk} failed: {run.error}")
        style = self.style.SUCCESS if run.state == ScheduledRun.State.DONE else self.style.ERROR
        self.stdout.write(style(f"{run.state}: {broadcasts.run_summary(run=run)}"))

    def _progress(self, run_id: int) -> None:
        done = ScheduledRun.objects.get(pk=run_id).deliveries.exclude(state="pending").count()
        self.stdout.write(f"  {done} chat(s) done")
