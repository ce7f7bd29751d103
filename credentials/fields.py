"""A model field for secrets: encrypted in the database, masked everywhere else.

The Python value is a `Secret`. Its str() and repr() never show the value; code that
needs the plaintext calls `.reveal()`, which decrypts on demand. Decrypting lazily
means a wrong key breaks only the code that uses the secret (with a clear
DecryptionError), not every admin page that lists the row.
"""

from typing import TYPE_CHECKING, Any

from django import forms
from django.db import models
from django.db.models.query_utils import DeferredAttribute

from core import redaction
from credentials import encryption

MASK = "••••"


class Secret:
    __slots__ = ("_ciphertext", "_plaintext")

    def __init__(self, *, ciphertext: str = "", plaintext: str | None = None) -> None:
        self._ciphertext = ciphertext
        self._plaintext = plaintext

    @classmethod
    def wrap(cls, value: "Secret | str | None") -> "Secret":
        if isinstance(value, Secret):
            return value
        return cls(plaintext=value or "")

    def reveal(self) -> str:
        """The plaintext ("" when nothing is stored). Raises DecryptionError when no
        configured key fits."""
        if self._plaintext is None:
            # An empty column is "no secret", not ciphertext: decrypting it would blame
            # FIELD_ENCRYPTION_KEYS for a value that was never set.
            self._plaintext = encryption.decrypt(self._ciphertext) if self._ciphertext else ""
        redaction.register_secret(self._plaintext)  # whoever holds it may log it
        return self._plaintext

    @property
    def ciphertext(self) -> str:
        if not self._ciphertext and self._plaintext:
            self._ciphertext = encryption.encrypt(self._plaintext)
        return self._ciphertext

    def hint(self) -> str:
        """A masked hint such as '••••a1B2' for admin pages, or '' when empty."""
        if not self:
            return ""
        try:
            plaintext = self.reveal()
        except encryption.DecryptionError:
            return "(cannot be decrypted with the configured keys)"
        return MASK + plaintext[-4:] if len(plaintext) > 8 else MASK

    def __bool__(self) -> bool:
        return bool(self._ciphertext or self._plaintext)

    def __str__(self) -> str:
        return MASK if self else ""

    def __repr__(self) -> str:
        return "<Secret: set>" if self else "<Secret: empty>"


class _SecretAttribute(DeferredAttribute):
    """Wraps whatever is assigned (a str from code or a form) into a Secret."""

    def __set__(self, instance: models.Model, value: Any) -> None:
        instance.__dict__[self.field.attname] = Secret.wrap(value)


# What the type checker sees (django-stubs' Field[set type, get type]): a str or a Secret
# may be assigned, and the attribute always reads as a Secret (see _SecretAttribute).
# Django's Field cannot be subscripted at run time, hence the plain TextField there.
if TYPE_CHECKING:
    _SecretTextField = models.TextField[Secret | str | None, Secret]
else:
    _SecretTextField = models.TextField


class EncryptedSecretField(_SecretTextField):
    descriptor_class = _SecretAttribute

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret:
        return Secret(ciphertext=value or "")

    def to_python(self, value: Any) -> Secret:
        return Secret.wrap(value)

    def get_prep_value(self, value: Any) -> str:
        return Secret.wrap(value).ciphertext

    def formfield(self, **kwargs: Any) -> forms.Field | None:
        # Write-only in every form, the admin's included (it would pass a textarea):
        # the value is never rendered back into HTML.
        kwargs["widget"] = forms.PasswordInput(render_value=False)
        kwargs["form_class"] = forms.CharField
        return super().formfield(**kwargs)


class HttpsURLField(models.URLField):
    """A URL field whose form reads "example.com" as https://example.com (Django 6's
    default, chosen explicitly now instead of the deprecated http)."""

    def formfield(self, **kwargs: Any) -> forms.Field | None:
        kwargs.setdefault("assume_scheme", "https")
        return super().formfield(**kwargs)
