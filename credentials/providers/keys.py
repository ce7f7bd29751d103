"""The API key a call sends, or why there is none to send."""

from credentials.encryption import DecryptionError
from credentials.models import AICredential
from credentials.providers.base import ProviderError


def api_key(credential: AICredential) -> str:
    """The credential's key ("" for a local server that needs none), or the ProviderError
    that says why no call can be made. Checked before any client is built, so the words
    name the real problem, not the SDK's complaint about an empty key."""
    try:
        key = credential.api_key.reveal()
    except DecryptionError as failure:
        raise ProviderError(
            ProviderError.KEY_UNREADABLE, f"The API key of “{credential.name}” cannot be read: {failure}"
        ) from None
    if not key and credential.needs_api_key:
        raise ProviderError(
            ProviderError.MISSING_KEY,
            f"The AI credential “{credential.name}” has no API key: add one in the admin (AI credentials).",
        )
    return key
