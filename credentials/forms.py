"""Admin/form support for write-only secrets."""

from typing import Any

from django import forms
from django.db import models

from credentials.fields import EncryptedSecretField


def secret_field_names(model: type[models.Model]) -> list[str]:
    return [f.name for f in model._meta.fields if isinstance(f, EncryptedSecretField)]


SECRET_AGAIN = (
    "Enter the {secret} again: the {url} changed, and a stored secret is only sent to "
    "the server it was entered for."
)


class SecretFieldsFormMixin(forms.ModelForm):
    """Secrets are write-only: the page shows a masked hint, never the value, and an
    empty field on edit keeps what is stored, unless the address it is sent to changed.

    `secret_destinations` maps a secret field to the URL field that says where it goes:
    changing that URL needs the secret typed again in the same form, so an edit of the
    URL alone never hands a stored secret to a host nobody entered it for."""

    secret_destinations: dict[str, str] = {}

    def secret_destination(self, url_field: str, value: str) -> str:
        """Where a secret goes for this URL field value (subclasses resolve blanks)."""
        return value

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in secret_field_names(self._meta.model):
            if name not in self.fields:
                continue
            stored = getattr(self.instance, name)
            if self.instance.pk and stored:
                self.fields[name].required = False
                self.fields[name].help_text = (
                    f"Stored: {stored.hint()}. Leave empty to keep it; type a new value "
                    f"to replace it. {self.fields[name].help_text}"
                ).strip()

    def clean(self) -> dict[str, Any]:
        super().clean()
        # A ModelForm's clean() returns cleaned_data (typed Optional only because a
        # plain Form's clean() may return None).
        cleaned = self.cleaned_data
        for name in secret_field_names(self._meta.model):
            if name in cleaned and not cleaned[name] and self.instance.pk:
                if self._destination_changed(name):
                    self.add_error(name, forms.ValidationError(self._again(name), code="secret_again"))
                    continue
                cleaned[name] = getattr(self.instance, name)
        return cleaned

    def _destination_changed(self, secret: str) -> bool:
        url_field = self.secret_destinations.get(secret)
        if url_field is None or url_field not in self.cleaned_data or not getattr(self.instance, secret):
            return False
        before = self.secret_destination(url_field, getattr(self.instance, url_field) or "")
        after = self.secret_destination(url_field, self.cleaned_data[url_field] or "")
        return before != after

    def _again(self, secret: str) -> str:
        fields = self._meta.model._meta
        url_field = self.secret_destinations[secret]
        return SECRET_AGAIN.format(
            secret=fields.get_field(secret).verbose_name, url=fields.get_field(url_field).verbose_name
        )
