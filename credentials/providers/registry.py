from credentials.models import AICredential
from credentials.providers.base import Provider
from credentials.providers.gemini import GeminiProvider
from credentials.providers.offline import OfflineProvider
from credentials.providers.openai_compat import OpenAICompatProvider


def provider_for(credential: AICredential | None) -> Provider:
    """The provider for a credential; the offline one when there is none."""
    if credential is None or credential.provider == AICredential.Provider.OFFLINE:
        return OfflineProvider()
    if credential.provider == AICredential.Provider.GEMINI:
        return GeminiProvider(credential)
    return OpenAICompatProvider(credential)
