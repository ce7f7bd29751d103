"""Symmetric encryption of stored secrets (bot tokens, API keys) with MultiFernet.

FIELD_ENCRYPTION_KEYS lists the keys: the first encrypts, every one decrypts, so a
new key can be put in front and old ciphertext re-encrypted at leisure
(`manage.py rotate_encryption_keys`).
"""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key.

    The message never includes the ciphertext or any key.
    """


@lru_cache(maxsize=4)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _fernet() -> MultiFernet:
    # Keyed on the current setting so tests (and rotation) can change the keys.
    return _multifernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "A stored secret cannot be decrypted with the keys in FIELD_ENCRYPTION_KEYS. "
            "Add the key it was encrypted with (keys are tried in order), then run "
            "`manage.py rotate_encryption_keys`."
        ) from None


def reencrypt(ciphertext: str) -> str:
    """Re-encrypt with the first key (MultiFernet.rotate keeps the original timestamp)."""
    try:
        return _fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "A stored secret cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS."
        ) from None
