import warnings

from django.apps import AppConfig


class BotsConfig(AppConfig):
    name = "bots"

    def ready(self) -> None:
        from telegram.warnings import PTBUserWarning

        # bots.telegram.get_updates asks for getUpdates through do_api_request on purpose
        # (to read each update on its own); PTB suggests its own get_updates each time.
        warnings.filterwarnings(
            "ignore", message=r"Please use 'Bot\.getUpdates'", category=PTBUserWarning
        )
