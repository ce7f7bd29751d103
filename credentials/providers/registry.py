from credentials.models import AICredential
from credentials.providers.base import Provider
from credentials.providers.offline import OfflineProvider


def provider_for(credential: AICredential | None) -> Provider:
    """The provider for a credential; the offline one when there is none.

    Gemini and OpenAI-compatible providers are not built yet: until they are, every
    credential answers through the offline provider.
    """
    return OfflineProvider()
