from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"

    def ready(self) -> None:
        # bots.updates hands stored batches up to this app through the registered sink:
        # bots never imports conversations.
        from bots import updates
        from conversations.ingest import ConversationSink

        updates.sink_register(ConversationSink())
