"""The poll leases a worker process renews (bots.polling._leases_renew)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from bots import polling
from bots.models import BotTask
from core.workers import worker_id
from tests.factories import make_task

pytestmark = pytest.mark.django_db


def owned_lease(claimed_ago: float) -> BotTask:
    now = timezone.now()
    return make_task(
        status=BotTask.Status.RUNNING, poll_token="t" * 32, poll_owner=worker_id(),
        poll_claimed_at=now - timedelta(seconds=claimed_ago), lease_expires_at=now + timedelta(seconds=20),
    )


def test_a_lease_taken_while_its_poller_registers_is_renewed_not_expired() -> None:
    launching = owned_lease(claimed_ago=0.1)  # taken in the database, not on the loop yet

    polling._leases_renew({})

    launching.refresh_from_db()
    assert launching.poll_owner == worker_id()
    assert launching.lease_expires_at > timezone.now()


def test_a_lease_whose_poller_died_is_expired_for_the_supervisor() -> None:
    orphan = owned_lease(claimed_ago=polling.LAUNCH_GRACE + 5)

    polling._leases_renew({})

    orphan.refresh_from_db()
    assert orphan.poll_owner == ""
    assert orphan.lease_expires_at <= timezone.now()
