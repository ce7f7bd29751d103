import signal
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bots.services import TaskError
from sandbox.demo import demo_seed, demo_wire
from sandbox.emulator import emulator_client

PASSWORD_FILE = settings.VAR_DIR / "dev-admin-password.txt"


class Command(BaseCommand):
    help = (
        "Development demo (a Procfile process of bin/run): seed the demo persona, credential, "
        "bot and task once, register the bot with the Telegram emulator, start it, print the "
        "URLs, then stay up until stopped (honcho stops everything when one process exits)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument("--once", action="store_true", help="wire the demo and exit")

    def handle(self, *args: Any, base_url: str, once: bool, **options: Any) -> None:
        setup = demo_seed()
        client = emulator_client()
        try:
            client.wait_until_up(timeout=60)
        except TimeoutError as error:
            raise CommandError(f"{error}. Is the 'telegram' process running?") from None
        try:
            task = demo_wire(client=client, setup=setup)
        except TaskError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(self._banner(base_url, task.status))
        if not once:
            _wait_for_stop()

    def _banner(self, base_url: str, status: str) -> str:
        password = PASSWORD_FILE.read_text().strip() if PASSWORD_FILE.exists() else "(see createsuperuser)"
        return self.style.SUCCESS(
            "\n"
            "  Botfleet is up. The demo bot is " + status + ".\n"
            f"    admin      {base_url}/admin/\n"
            f"    dashboard  {base_url}/dashboard/\n"
            f"    sandbox    {base_url}/sandbox/   ← chat with the demo bot here\n"
            f"    login      admin / {password}\n"
        )


def _wait_for_stop() -> None:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        time.sleep(0.5)
