"""core.dbwork's writer: a deadlock (PostgreSQL picks one of two writers to fail) runs
the transaction again instead of failing the writes in it."""

from collections.abc import Callable

import pytest
from django.db import OperationalError

from bots.models import PushedUpdate
from core import dbwork
from tests.factories import make_bot


class _PsycopgDeadlock(Exception):
    sqlstate = "40P01"  # what psycopg's DeadlockDetected carries


def deadlock() -> OperationalError:
    error = OperationalError("deadlock detected")
    error.__cause__ = _PsycopgDeadlock()
    return error


def keep(bot_id: int, update_id: int, *, deadlocks: int = 0) -> tuple[Callable[[], int], list[int]]:
    """A write that stores a row, then hits `deadlocks` deadlocks before it goes through."""
    runs: list[int] = []

    def write() -> int:
        PushedUpdate.objects.create(bot_id=bot_id, update_id=update_id, payload="{}")
        runs.append(update_id)
        if len(runs) <= deadlocks:
            raise deadlock()
        return update_id

    return write, runs


@pytest.mark.django_db(transaction=True)
def test_a_deadlocked_transaction_runs_again_and_every_write_lands_once() -> None:
    bot = make_bot()
    first, first_runs = keep(bot.pk, 1)
    second, second_runs = keep(bot.pk, 2, deadlocks=1)

    outcomes = dbwork._transaction_run([first, second])

    assert outcomes == [(True, 1), (True, 2)]
    assert (len(first_runs), len(second_runs)) == (2, 2)  # the whole transaction, again
    assert sorted(PushedUpdate.objects.values_list("update_id", flat=True)) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_a_write_that_keeps_deadlocking_fails_in_the_end_and_leaves_nothing() -> None:
    bot = make_bot()
    write, runs = keep(bot.pk, 3, deadlocks=99)

    with pytest.raises(OperationalError, match="deadlock"):
        dbwork.transaction_retrying(write)

    assert len(runs) == dbwork.TRANSACTION_ATTEMPTS
    assert not PushedUpdate.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_other_failures_are_not_run_again() -> None:
    runs: list[int] = []

    def broken() -> None:
        runs.append(1)
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        dbwork.transaction_retrying(broken)
    assert runs == [1]
