"""Production settings refuse to start without their secrets, DEBUG is off unless set,
and a command beside bin/run finds its Redis (checked in fresh processes)."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from config import keys

ROOT = Path(__file__).resolve().parents[2]


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



def test_a_process_that_finds_no_key_keeps_the_one_another_wrote_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # bin/run starts the web, a worker and beat at once on a fresh checkout (CI, two
    # suites): each may see no key, and the one that writes second must not replace it.
    key_file = tmp_path / "var" / "field-encryption.key"
    first = keys.field_encryption_keys([], debug=True, dev_key_file=key_file)
    monkeypatch.setattr(Path, "exists", lambda self: False)  # it looked before the write

    second = keys.field_encryption_keys([], debug=True, dev_key_file=key_file)

    assert second == first and key_file.read_text().strip() == first[0]
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in key_file.parent.iterdir()] == ["field-encryption.key"]  # no draft left


# --- DEBUG off by default; what a command elsewhere takes from a running bin/run --------

RUNTIME_NAMES = ("DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "REDIS_URL", "BOTFLEET_EMBEDDED_REDIS")


def django_command(code: str, var_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`code` after django.setup() in a fresh process, as a shell without bin/run's or
    bin/test's variables has it; runtime files (and any run file) in `var_dir`."""
    clean = {k: v for k, v in os.environ.items() if k not in RUNTIME_NAMES}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", "BOTFLEET_VAR_DIR": str(var_dir), **env},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def production_secrets() -> dict[str, str]:
    return {"SECRET_KEY": "x" * 50, "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode()}


@pytest.fixture
def fake_bin_run(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A live process that looks like bin/run's runner (`config.devrun` in its command line)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "config.devrun"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def run_file_write(var_dir: Path, pid: int, **env: str) -> None:
    var_dir.mkdir(parents=True, exist_ok=True)
    (var_dir / "run.json").write_text(json.dumps({"pid": pid, "env": env}))


def test_it_runs_with_debug_off_when_debug_is_unset(tmp_path: Path) -> None:
    result = django_command("from django.conf import settings; print(settings.DEBUG)", tmp_path, **production_secrets())

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_it_refuses_without_secret_key_in_one_line_when_debug_is_unset(tmp_path: Path) -> None:
    result = django_command("print('started')", tmp_path, FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode())

    assert result.returncode != 0
    assert "started" not in result.stdout
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line, no traceback
    assert result.stderr.startswith("Botfleet cannot start: SECRET_KEY is not set and DEBUG is off.")
    assert "DEBUG=1" in result.stderr  # and how to run in development


def test_it_refuses_without_encryption_keys_in_one_line_and_never_makes_a_dev_key(tmp_path: Path) -> None:
    result = django_command("print('started')", tmp_path, SECRET_KEY="x" * 50)

    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "FIELD_ENCRYPTION_KEYS is not set and DEBUG is off" in result.stderr
    assert not (tmp_path / "field-encryption.key").exists()


def test_a_command_beside_bin_run_takes_its_redis_and_debug(tmp_path: Path, fake_bin_run: subprocess.Popen[bytes]) -> None:
    run_file_write(tmp_path, fake_bin_run.pid, DEBUG="1", REDIS_URL="redis://127.0.0.1:45678/0")

    result = django_command(
        "from django.conf import settings; print(settings.DEBUG, settings.REDIS_URL, settings.CELERY_BROKER_URL)", tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "redis://127.0.0.1:45678/0", "redis://127.0.0.1:45678/0"]


def test_its_own_environment_wins_over_bin_runs(tmp_path: Path, fake_bin_run: subprocess.Popen[bytes]) -> None:
    run_file_write(tmp_path, fake_bin_run.pid, DEBUG="1", REDIS_URL="redis://127.0.0.1:45678/0")

    result = django_command(
        "from django.conf import settings; print(settings.DEBUG, settings.REDIS_URL)", tmp_path,
        DEBUG="false", REDIS_URL="redis://10.0.0.9:6380/2", **production_secrets(),
    )

    assert result.stdout.split() == ["False", "redis://10.0.0.9:6380/2"], result.stderr


def test_it_ignores_the_run_file_of_a_bin_run_that_is_gone(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass", "config.devrun"])
    gone.wait()
    run_file_write(tmp_path, gone.pid, DEBUG="1", REDIS_URL="redis://127.0.0.1:45678/0")

    result = django_command("print('started')", tmp_path)

    assert result.returncode != 0  # DEBUG off again: the secrets are wanted
    assert "SECRET_KEY is not set" in result.stderr


def test_without_redis_url_or_bin_run_it_never_falls_back_to_localhost_6379(tmp_path: Path) -> None:
    result = django_command(
        "from django.conf import settings; print(settings.REDIS_URL); print(settings.CELERY_BROKER_URL); "
        "print(settings.REDIS_URL_MISSING)", tmp_path, DEBUG="1",
    )

    redis_url, broker_url, missing = result.stdout.splitlines()
    assert "6379" not in redis_url + broker_url and "127.0.0.1" not in redis_url + broker_url
    assert "REDIS_URL is not set and bin/run is not running" in missing
