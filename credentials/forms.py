"""Admin/form support for write-only secrets."""

from typing import Any

from django import forms
from django.db import models

from credentials.fields import EncryptedSecretField


def secret_field_names(model: type[models.Model]) -> list[str]:
    return [f.name for f in model._meta.fields if isinstance(f, EncryptedSecretField)]


class SecretFieldsFormMixin(forms.ModelForm):
    """Secrets are write-only: the page shows a masked hint, never the value, and an
    empty field on edit keeps what is stored."""

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
                cleaned[name] = getattr(self.instance, name)
        return cleaned
