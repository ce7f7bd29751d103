import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

PASSWORD_FILE = settings.VAR_DIR / "dev-admin-password.txt"


class Command(BaseCommand):
    help = (
        "Development only: create the superuser 'admin' with a random password, print it "
        "once, and keep it in var/dev-admin-password.txt (git-ignored)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("create_dev_admin runs only with DEBUG on; use createsuperuser.")
        users = get_user_model()
        if users.objects.filter(username=username).exists():
            self.stdout.write(
                f"Admin user '{username}' exists; its password is in {PASSWORD_FILE} "
                f"(change it with: manage.py changepassword {username})."
            )
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        PASSWORD_FILE.write_text(password + "\n")
        PASSWORD_FILE.chmod(0o600)
        self.stdout.write(self.style.SUCCESS(
            f"Created admin user '{username}' with password: {password}\n"
            f"(also saved in {PASSWORD_FILE})"
        ))
