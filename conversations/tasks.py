"""Celery tasks of the conversation side: thin, ids in, one service call each."""

from celery import shared_task

from conversations import replies


@shared_task(name="conversations.tasks.reply_to_message")
def reply_to_message(message_id: int) -> None:
    outcome = replies.reply_process(message_id=message_id)
    if outcome.retry_in is not None:
        # A new message rather than self.retry(): waits for rate limits are not
        # failures and must not count against a retry budget.
        reply_to_message.apply_async((message_id,), countdown=outcome.retry_in)
