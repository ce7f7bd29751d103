"""The Django side of the driver: bots, tasks and their outcome in the database.

Tasks are started through `bots.services.task_start`, the path the admin's Start
button takes. Django models are imported inside the functions: this module is
imported before `django.setup()` has run.
"""

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from benchmarks.report import progress
from emulators.telegram import EmulatorClient


@dataclass(frozen=True)
class FleetBot:
    token: str
    telegram_id: int  # the emulator's bot id, as in its call log
    bot_pk: int
    task_pk: int


@dataclass
class StartReport:
    wall_s: float = 0.0
    started_at: dict[int, float] = field(default_factory=dict)  # telegram id -> time.time()
    call_s: list[float] = field(default_factory=list)  # how long each task_start took
    failures: list[str] = field(default_factory=list)


def register_bots(emulator: EmulatorClient, count: int, label: str) -> list[dict]:
    """Bots on the emulator only (the baseline's, or before the rows are created)."""
    return [emulator.add_bot(first_name=f"{label} {n}") for n in range(1, count + 1)]


def name_prefix(label: str) -> str:
    """Every row of a fleet is named with this prefix (see tasks_stop_labelled)."""
    return f"bench {label} "


def fleet_create(
    *, emulator: EmulatorClient, count: int, label: str, update_mode: str = ""
) -> list[FleetBot]:
    """Persona, offline AI credential, bots pointing at the emulator, one task each (AI on).
    `update_mode`: the bots' (the model's default, polling, unless given: "webhook")."""
    from django.db import transaction

    from bots.models import Bot, BotTask
    from conversations.models import Persona
    from credentials.models import AICredential

    infos = register_bots(emulator, count, f"Bench {label}")
    with transaction.atomic():
        persona = Persona.objects.create(
            name=f"bench {label}", instructions="You are a helpful assistant."
        )
        credential = AICredential.objects.create(
            name=f"bench {label}", provider=AICredential.Provider.OFFLINE
        )
        fleet = []
        for n, info in enumerate(infos, start=1):
            bot = Bot.objects.create(
                name=f"{name_prefix(label)}{n}",
                token=info["token"],
                api_base_url=emulator.base_url,
                persona=persona,
                credential=credential,
                **({"update_mode": update_mode} if update_mode else {}),
            )
            task = BotTask.objects.create(name=f"{name_prefix(label)}{n}", bot=bot, use_ai=True)
            fleet.append(
                FleetBot(
                    token=info["token"], telegram_id=info["id"], bot_pk=bot.pk, task_pk=task.pk
                )
            )
    return fleet


def fleet_start(fleet: list[FleetBot], *, threads: int, label: str) -> StartReport:
    """Start every task in parallel threads, as many operators pressing Start at once."""
    report = StartReport()
    began = time.monotonic()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="start")
    try:
        futures = [pool.submit(_start_one, bot) for bot in fleet]
        for done, future in enumerate(futures, start=1):
            telegram_id, called_at, seconds, failure = future.result()
            report.started_at[telegram_id] = called_at
            report.call_s.append(seconds)
            if failure:
                report.failures.append(failure)
            progress(f"{label}: started {done}/{len(fleet)} tasks", every=1.0)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on Ctrl-C: no new Start presses
    report.wall_s = time.monotonic() - began
    return report


def _start_one(bot: FleetBot) -> tuple[int, float, float, str]:
    from django.db import connections

    from bots.models import BotTask
    from bots.services import task_start

    called_at, began = time.time(), time.monotonic()
    try:
        task_start(task=BotTask.objects.get(pk=bot.task_pk))
        failure = ""
    except Exception as error:  # reported, not fatal: the figure says how many failed
        failure = f"task {bot.task_pk}: {type(error).__name__}: {error}"
    finally:
        connections.close_all()  # this thread's connection; the pool thread lives on
    return bot.telegram_id, called_at, time.monotonic() - began, failure


def fleet_stop(fleet: list[FleetBot]) -> None:
    """Stop every task (so the next scenario's workers have nothing left to poll)."""
    from bots.models import BotTask
    from bots.services import TaskError, task_stop

    for task in BotTask.objects.filter(pk__in=[bot.task_pk for bot in fleet], status="running"):
        try:
            task_stop(task=task)
        except TaskError:
            pass


def tasks_stop_labelled(label: str) -> int:
    """Stop whatever task of this label still runs (a scenario that failed half-way):
    otherwise the next scenario's workers would keep polling a dead emulator."""
    from bots.models import BotTask

    running = BotTask.objects.filter(bot__name__startswith=name_prefix(label), status="running")
    fleet = [FleetBot(token="", telegram_id=0, bot_pk=t.bot_id, task_pk=t.pk) for t in running]
    fleet_stop(fleet)
    return len(fleet)


def reply_states(fleet: list[FleetBot]) -> dict[str, int]:
    """Incoming messages by reply state: what the message log says happened."""
    from conversations.models import Message

    rows = Message.objects.filter(bot_id__in=[bot.bot_pk for bot in fleet], direction="in")
    return dict(Counter(rows.values_list("reply_state", flat=True)))


def task_health(fleet: list[FleetBot]) -> dict[str, object]:
    """Statuses, error counters and the most frequent last errors of the tasks."""
    from bots.models import BotTask

    tasks = list(BotTask.objects.filter(pk__in=[bot.task_pk for bot in fleet]))
    errors = Counter(task.last_error[:160] for task in tasks if task.last_error)
    return {
        "statuses": dict(Counter(task.status for task in tasks)),
        "error_count": sum(task.error_count for task in tasks),
        "last_errors": dict(errors.most_common(3)),
    }
