"""Production settings refuse to start without their secrets (checked in a fresh process)."""

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

from config import keys

ROOT = Path(__file__).resolve().parent.parent


def start_django(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def test_it_refuses_to_start_in_production_without_secret_key() -> None:
    result = start_django(DEBUG="false", FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode())

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "secrets.token_urlsafe" in result.stderr  # says how to make one


def test_it_refuses_to_start_in_production_without_encryption_keys() -> None:
    result = start_django(DEBUG="false", SECRET_KEY="x" * 50)

    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS is not set" in result.stderr
    assert "Fernet.generate_key()" in result.stderr


def test_it_starts_in_production_with_both_secrets() -> None:
    result = start_django(
        DEBUG="false", SECRET_KEY="x" * 50, FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode()
    )

    assert result.returncode == 0, result.stderr


def test_it_rejects_a_malformed_key_without_echoing_it() -> None:
    bad_key = "not-a-real-fernet-key-but-secret-anyway"
    result = start_django(DEBUG="false", SECRET_KEY="x" * 50, FIELD_ENCRYPTION_KEYS=bad_key)

    assert result.returncode != 0
    assert "entry #1 is not a valid Fernet key" in result.stderr
    assert bad_key not in result.stderr


def test_it_generates_one_development_key_and_keeps_it(tmp_path: Path) -> None:
    key_file = tmp_path / "field-encryption.key"

    first = keys.field_encryption_keys([], debug=True, dev_key_file=key_file)
    second = keys.field_encryption_keys([], debug=True, dev_key_file=key_file)

    assert first == second and len(first) == 1
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
