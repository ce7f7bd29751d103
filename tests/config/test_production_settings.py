"""Production mode (DEBUG off, secrets and ALLOWED_HOSTS set) passes Django's deployment
checks as shipped, and its HTTPS settings do what the README says (fresh processes)."""

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_NAMES = ("DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "SECURE_COOKIES", "SECURE_SSL_REDIRECT",
                 "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD")


def production(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in RUNTIME_NAMES}
    return subprocess.run(
        args,
        env={
            **clean, "DJANGO_SETTINGS_MODULE": "config.settings", "BOTFLEET_VAR_DIR": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "SECRET_KEY": "production-" + "k" * 50, "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "bots.example.com", **env,
        },
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def test_it_passes_check_deploy_with_no_warning(tmp_path: Path) -> None:
    result = production([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path)

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stderr and "security." not in result.stderr


# A production request through Django's test client: what a browser and a probe get.
REQUESTS = """
import django; django.setup()
from django.test import Client
client = Client(SERVER_NAME="bots.example.com")
http = client.get("/dashboard/")
https = client.get("/dashboard/", secure=True)  # staff only: on to the login page
print(http.status_code, http.headers.get("Location"))
print(https.status_code, https.headers.get("Strict-Transport-Security"))
print(client.get("/healthz").status_code)
"""


def test_it_sends_browsers_to_https_with_hsts_but_answers_health_checks_over_http(tmp_path: Path) -> None:
    result = production([sys.executable, "-c", REQUESTS], tmp_path)

    http, https, healthz = result.stdout.splitlines()
    assert http == "301 https://bots.example.com/dashboard/", result.stderr
    assert https == "302 max-age=31536000; includeSubDomains; preload"
    assert healthz == "200"  # load balancers ask gunicorn directly, over http


def test_its_https_settings_can_be_turned_down(tmp_path: Path) -> None:
    result = production(
        [sys.executable, "-c", REQUESTS], tmp_path,
        SECURE_SSL_REDIRECT="false", SECURE_HSTS_SECONDS="3600",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="false", SECURE_HSTS_PRELOAD="false",
    )

    http, https, _ = result.stdout.splitlines()
    assert http.startswith("302 /admin/login/"), result.stderr  # no redirect to https first
    assert https == "302 max-age=3600"


def test_plain_http_trial_mode_turns_https_off(tmp_path: Path) -> None:
    result = production([sys.executable, "-c", REQUESTS], tmp_path, SECURE_COOKIES="false")

    http, https, _ = result.stdout.splitlines()
    assert http.startswith("302 /admin/login/"), result.stderr
    assert https == "302 None"
