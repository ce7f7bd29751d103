"""Secrets the settings need: SECRET_KEY and the field-encryption keys.

Development needs no configuration (a key is generated once into a git-ignored
file); production refuses to start without them and says how to make them.
"""

import os
from pathlib import Path

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

SECRET_KEY_HOWTO = (
    "Set SECRET_KEY to a long random string, for example the output of: "
    "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
)
FIELD_KEYS_HOWTO = (
    "Set FIELD_ENCRYPTION_KEYS to one or more comma-separated Fernet keys (the first "
    "encrypts, all decrypt). Generate one with: "
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)
DEV_SECRET_KEY = "django-insecure-botfleet-development-only"
DEVELOPMENT_HINT = "On a development machine set DEBUG=1 instead (bin/run and bin/test do)."


def secret_key(value: str, *, debug: bool) -> str:
    if value:
        return value
    if debug:
        return DEV_SECRET_KEY
    raise ImproperlyConfigured(
        f"SECRET_KEY is not set and DEBUG is off. {SECRET_KEY_HOWTO}. {DEVELOPMENT_HINT}"
    )


def field_encryption_keys(values: list[str], *, debug: bool, dev_key_file: Path) -> list[str]:
    keys = [v.strip() for v in values if v.strip()]
    if not keys:
        if not debug:
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS is not set and DEBUG is off. {FIELD_KEYS_HOWTO}. "
                f"{DEVELOPMENT_HINT}"
            )
        keys = [_development_key(dev_key_file)]
    for position, key in enumerate(keys, start=1):
        _check_fernet_key(key, position)
    return keys


def _development_key(path: Path) -> str:
    """One key per checkout, kept across runs so stored secrets stay readable.

    Processes of a fresh checkout may start together (the web, a worker and beat; two
    test runs): the key is written whole, owner-only from the first byte, to a file of
    this process's own, then linked into place, which fails if another process got there
    first. Everyone then reads the one key that won."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        draft.unlink(missing_ok=True)  # a crashed start's draft: its mode is not ours to trust
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(Fernet.generate_key().decode() + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def _check_fernet_key(key: str, position: int) -> None:
    try:
        Fernet(key)
    except ValueError:
        # Never echo the key itself: it is a secret even when malformed.
        raise ImproperlyConfigured(
            f"FIELD_ENCRYPTION_KEYS entry #{position} is not a valid Fernet key "
            f"(32 url-safe base64-encoded bytes). {FIELD_KEYS_HOWTO}"
        ) from None
