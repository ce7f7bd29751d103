from django.apps import AppConfig


class CredentialsConfig(AppConfig):
    name = "credentials"
    verbose_name = "AI credentials"

    def ready(self) -> None:
        # Secrets must never reach a log line, whoever logs it (httpx, PTB, Celery).
        from core.redaction import install_log_redaction

        install_log_redaction()
