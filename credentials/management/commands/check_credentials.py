from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from credentials.checks import credential_check
from credentials.models import AICredential


class Command(BaseCommand):
    help = (
        "Make one minimal live call per AI credential and report OK or the provider's error "
        "in plain words (bad key, quota exhausted, model not found, unreachable)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="credential ids (default: all)")

    def handle(self, *args: Any, ids: list[int], **options: Any) -> None:
        credentials = AICredential.objects.order_by("pk")
        if ids:
            credentials = credentials.filter(pk__in=ids)
            missing = set(ids) - {c.pk for c in credentials}
            if missing:
                raise CommandError(f"No AI credential with id {', '.join(map(str, sorted(missing)))}.")
        failed = 0
        for credential in credentials:
            result = credential_check(credential=credential)
            style = self.style.SUCCESS if result.ok else self.style.ERROR
            self.stdout.write(style(f"#{credential.pk} {credential.name}: {result.message}"))
            failed += not result.ok
        if failed:
            raise CommandError(f"{failed} credential(s) failed the check.")
