from typing import Any

from django.core.management.base import BaseCommand, CommandError

from credentials.rotation import secrets_reencrypt


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (bot tokens, API keys) with the first key in "
        "FIELD_ENCRYPTION_KEYS. Put the new key first, keep the old ones after it, run "
        "this, then remove the old keys."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = secrets_reencrypt(progress=lambda line: self.stdout.write(line))
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {report.reencrypted} secret(s)."))
        if report.failures:
            raise CommandError(
                f"{len(report.failures)} secret(s) could not be decrypted with any configured "
                f"key and were left as they are: {', '.join(report.failures)}"
            )
