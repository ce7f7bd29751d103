"""Re-encrypt every stored secret with the first key in FIELD_ENCRYPTION_KEYS."""

from collections.abc import Callable
from dataclasses import dataclass, field

from django.apps import apps
from django.db import models, transaction

from credentials import encryption
from credentials.fields import EncryptedSecretField, Secret


@dataclass
class RotationReport:
    reencrypted: int = 0
    failures: list[str] = field(default_factory=list)


def secrets_reencrypt(*, progress: Callable[[str], None] = lambda _: None) -> RotationReport:
    report = RotationReport()
    for model in apps.get_models():
        for secret_field in model._meta.fields:
            if isinstance(secret_field, EncryptedSecretField):
                _reencrypt_column(model, secret_field.attname, report)
                progress(f"{model._meta.label}.{secret_field.attname}: done")
    return report


def _reencrypt_column(model: type[models.Model], attname: str, report: RotationReport) -> None:
    rows = model._default_manager.exclude(**{attname: ""}).values_list("pk", attname)
    for pk, secret in rows.iterator():
        try:
            rotated = encryption.reencrypt(secret.ciphertext)
        except encryption.DecryptionError:
            report.failures.append(f"{model._meta.label} #{pk} {attname}")
            continue
        with transaction.atomic():
            model._default_manager.filter(pk=pk).update(**{attname: Secret(ciphertext=rotated)})
        report.reencrypted += 1
