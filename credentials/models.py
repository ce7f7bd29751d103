import ipaddress
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from credentials.fields import EncryptedSecretField, HttpsURLField


class AICredential(models.Model):
    class Provider(models.TextChoices):
        GEMINI = "gemini", "Google Gemini"
        OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible"
        OFFLINE = "offline", "Offline (no network, for demos and tests)"

    name = models.CharField(max_length=100, unique=True)
    provider = models.CharField(max_length=32, choices=Provider.choices, default=Provider.GEMINI)
    api_key = EncryptedSecretField(
        "API key", blank=True, help_text="Stored encrypted. The offline provider needs none."
    )
    base_url = HttpsURLField(
        "Base URL",
        blank=True,
        help_text="Provider endpoint override: a proxy, a self-hosted model, or an emulator. "
        "Blank uses the provider's public endpoint.",
    )
    model = models.CharField(
        max_length=100, default="gemini-2.5-flash", blank=True,
        help_text="The provider's model name. The offline provider has none.",
    )
    is_active = models.BooleanField(default=True)
    requests_per_minute = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(1), MaxValueValidator(100_000)],
        help_text="Shared by every worker; calls beyond it wait for the next slot.",
    )
    requests_total = models.PositiveIntegerField(default=0, editable=False)
    failures_total = models.PositiveIntegerField(default=0, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=500, blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_check_ok = models.BooleanField(null=True, blank=True)
    last_check_message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "AI credential"

    def __str__(self) -> str:
        return f"{self.name} ({self.get_provider_display()})"

    @property
    def needs_api_key(self) -> bool:
        """Gemini always; an OpenAI-compatible server unless it is local (a model server on
        this machine or network, such as Ollama, often takes no key)."""
        if self.provider == self.Provider.OFFLINE:
            return False
        return self.provider == self.Provider.GEMINI or not url_is_local(self.base_url)

    def clean(self) -> None:
        super().clean()
        if self.provider == self.Provider.OFFLINE:
            self.model = ""  # it answers by itself: a model name there would mislead
        elif not self.model.strip():
            raise ValidationError({"model": "Name the provider's model, e.g. gemini-2.5-flash."})
        # On edit, the form has already put the stored key back when the field was left
        # empty (credentials.forms): this sees the key that would be stored.
        if self.needs_api_key and not self.api_key:
            raise ValidationError({"api_key": (
                "Gemini needs an API key." if self.provider == self.Provider.GEMINI else
                "An OpenAI-compatible server needs an API key unless its base URL is local "
                "(localhost or a private network address)."
            )})


def url_is_local(url: str) -> bool:
    """On this machine or a private network: localhost, or a loopback, private or
    link-local address."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:  # e.g. an unclosed "[" of an IPv6 address
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")
    return address.is_loopback or address.is_private or address.is_link_local
