"""Who may scrape /metrics: a bearer token, an explicit allowlist, staff who may view
tasks; and, with DEBUG off, nobody anonymous until one of the first two is configured
(checked in a fresh process, where the settings are read as in production)."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import Permission, User
from django.test import Client

from tests.factories import make_bot, make_task

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "scrape-token-0123456789-abcdefghij"
OUTSIDE = "203.0.113.9"  # an address in no allowlist

# Requests /metrics in a fresh process, as the web server would serve it, and prints
# [status, body] for each set of extra request headers given.
SCRAPER = """
import json, sys
import django
django.setup()
from django.test import Client
answers = []
for headers in json.loads(sys.argv[1]):
    response = Client().get("/metrics", secure=True, REMOTE_ADDR="127.0.0.1", headers=headers)
    answers.append([response.status_code, response.content.decode()])
print(json.dumps(answers))
"""


@pytest.fixture(scope="module")
def production_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated SQLite database of its own, for the production processes to read."""
    url = f"sqlite:///{tmp_path_factory.mktemp('metrics') / 'db.sqlite3'}"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True, timeout=120,
        env={**os.environ, "DEBUG": "true", "DATABASE_URL": url},
    )
    yield url


def production_scrape(database_url: str, *requests: dict[str, str], **env: str) -> list[tuple[int, str]]:
    """Scrapes from loopback, DEBUG off, with nothing of METRICS_* set unless given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_")}
    result = subprocess.run(
        [sys.executable, "-c", SCRAPER, json.dumps(list(requests))],
        env={
            **clean, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "false",
            "SECRET_KEY": "x" * 50, "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "testserver", "DATABASE_URL": database_url, **env,
        },
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [(status, body) for status, body in json.loads(result.stdout.strip().splitlines()[-1])]


# --- production defaults ------------------------------------------------------------


def test_it_serves_metrics_to_no_one_in_production_until_a_token_or_allowlist_is_set(production_database) -> None:  # type: ignore[no-untyped-def]
    [(status, body)] = production_scrape(production_database, {})

    assert status == 403  # even from loopback: a proxy on the same host is loopback too
    assert "botfleet_" not in body
    assert "METRICS_TOKEN" in body and "METRICS_ALLOWED_IPS" in body  # says how to open it


def test_it_serves_metrics_in_production_to_a_scraper_with_the_token(production_database) -> None:  # type: ignore[no-untyped-def]
    (without, _), (wrong, _), (right, body) = production_scrape(
        production_database, {}, {"Authorization": "Bearer not-the-token"},
        {"Authorization": f"Bearer {TOKEN}"}, METRICS_TOKEN=TOKEN,
    )

    assert (without, wrong, right) == (403, 403, 200)
    assert "botfleet_tasks" in body


def test_it_serves_metrics_in_production_to_an_explicit_allowlist(production_database) -> None:  # type: ignore[no-untyped-def]
    [(status, body)] = production_scrape(production_database, {}, METRICS_ALLOWED_IPS="127.0.0.1")

    assert status == 200
    assert "botfleet_tasks" in body


def test_it_keeps_the_loopback_convenience_with_debug_on(production_database) -> None:  # type: ignore[no-untyped-def]
    [(status, _)] = production_scrape(production_database, {}, DEBUG="true")

    assert status == 200


# --- the token, the allowlist and staff (in this process) ------------------------------


@pytest.mark.django_db
def test_it_lets_a_scraper_with_the_bearer_token_in_from_any_address(client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []
    make_task(make_bot(name="helpdesk"), messages_processed=3)

    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE, headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert 'botfleet_updates_received_total{bot="helpdesk"} 3.0' in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("header", [
    f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer ", "",
])
def test_it_refuses_any_other_authorization(client, settings, header: str) -> None:  # type: ignore[no-untyped-def]
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []

    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE, headers={"Authorization": header})

    assert response.status_code == 403
    assert "botfleet_" not in response.content.decode()


@pytest.mark.django_db
def test_an_empty_bearer_opens_nothing_when_no_token_is_set(client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = []

    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE, headers={"Authorization": "Bearer "}).status_code == 403


def staff(*codenames: str) -> Client:
    user = User.objects.create_user("ops", password="x-ops-pass", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_it_refuses_metrics_to_staff_who_may_not_view_tasks(settings) -> None:  # type: ignore[no-untyped-def]
    settings.METRICS_ALLOWED_IPS = []

    assert staff().get("/metrics", REMOTE_ADDR=OUTSIDE).status_code == 403


@pytest.mark.django_db
def test_it_serves_metrics_to_staff_who_may_view_tasks(settings) -> None:  # type: ignore[no-untyped-def]
    settings.METRICS_ALLOWED_IPS = []

    assert staff("view_bottask").get("/metrics", REMOTE_ADDR=OUTSIDE).status_code == 200
