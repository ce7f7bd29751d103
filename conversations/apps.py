from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"

    def ready(self) -> None:
        # bots.polling hands stored batches up to this app through the registered sink:
        # bots never imports conversations.
        from bots import polling
        from conversations.ingest import ConversationSink

        polling.sink_register(ConversationSink())
