"""Answering stored messages as a batch, on the process's I/O loop.

    a stored batch, claimed for this process ─▶ answer_start(items)
      take each chat's turn at once (a chat's messages are answered in the order stored)
      one read: the messages with their bots, personas, credentials, tasks, AI context
      per chat, in order (chats side by side):
        compose: the persona's fixed line, or the AI through the credential's async client
        ─▶ one write: the parts become outbox rows; the message moves to SENDING
        ─▶ the outbox sends them and closes the message (REPLIED / FAILED)

A batch's AI calls run concurrently, bounded by each credential's rate limit, not by
threads; its writes share transactions with everything else the process writes
(core.dbwork).

The incoming message's reply_state is the source of truth:

    GENERATING (claimed) --parts queued--> SENDING --all parts sent--> REPLIED
                         (or FAILED; NONE when the bot's task was stopped)

A claimed message whose process dies is taken over by the reaper after its claim
expires and answered from the start (nothing of it was sent: its parts did not exist).
"""

import asyncio
import logging
from collections import defaultdict
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from bots import telegram
from bots.formatting import FormattedText, reply_parts
from bots.models import BotTask
from conversations import (
    claims,
    context,
    gate,
    media,
    memory,
    operator_commands,
    outbox,
    streaming,
    wording,
)
from conversations.models import Chat, Message, Persona
from core import aio, dbwork
from core.workers import worker_id
from credentials.encryption import DecryptionError
from credentials.generation import text_generate_async
from credentials.models import AICredential
from credentials.providers import GenerationRequest, MediaPart, ProviderError
from policy import access, usage
from policy.access import BotPolicy

log = logging.getLogger(__name__)

TASK_STOPPED = "Not answered: the bot's task was stopped."


@dataclass(frozen=True)
class Composition:
    text: str
    ai_model: str = ""
    ai_latency_ms: int | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    finish_reason: str = ""
    error: str = ""
    first_token_ms: int | None = None  # streamed: the AI's first text
    first_draft_ms: int | None = None  # streamed: the first draft (or group preview) the person saw
    preview_message_id: int | None = None  # streamed in a group: the message the answer replaces

    @property
    def tokens(self) -> int:
        """Prompt and answer together, as the quotas count them."""
        return (self.tokens_in or 0) + (self.tokens_out or 0)

    def fields(self) -> dict[str, object]:
        """What the first part of the reply records of how it was written."""
        return {
            "ai_model": self.ai_model, "ai_latency_ms": self.ai_latency_ms,
            "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
            "finish_reason": self.finish_reason, "error": self.error,
            "ai_first_token_ms": self.first_token_ms, "first_draft_ms": self.first_draft_ms,
        }


@dataclass(frozen=True)
class _Job:
    """One message to answer, with everything loaded (the I/O loop must not query)."""

    message: Message
    persona: Persona
    max_length: int = 0
    endpoint: telegram.BotEndpoint | None = None
    fixed: str | None = None  # the persona's own line, no AI
    fixed_note: str = ""  # why, when the AI would have answered
    credential: AICredential | None = None
    # Built at load time only without history; with it, once the chat's turn comes (the
    # previous answer of the chat must be in it).
    request: GenerationRequest | None = None
    remote: bool = False  # a networked AI (reads the history): worth a "typing…" first
    skip_state: str = ""  # close without answering, in this state…
    skip_reason: str = ""  # …for this reason
    policy: BotPolicy | None = None  # the bot's access rules and quotas (conversations.gate)
    operator_command: str = ""  # an operator's command to run instead of answering
    refusal: str = ""  # why the gate refused it (Message.Refusal); `fixed` is what is said…
    refusal_reason: str = ""  # …and this, in words, is recorded on the message
    shows_media: bool = False  # the message's photo, voice note or video goes to the AI


# --- entry points ----------------------------------------------------------------------


def answer_start(items: Sequence[tuple[int, int]]) -> "asyncio.Task[None]":
    """On the I/O loop: answer these (message id, chat id) pairs, claimed by this
    process. Each chat's turn is taken now, before anything is awaited, so a later
    batch of the same chat is answered after this one."""
    turns = {chat: _turns.take(chat) for chat in dict.fromkeys(chat for _, chat in items)}
    return _spawn(_batch_answer([m for m, _ in items], turns))


def answer_soon(items: Sequence[tuple[int, int]]) -> "Future[None]":
    """From any thread but the loop's: the same, returning a future of the whole batch."""

    async def answer() -> None:
        await answer_start(items)

    return aio.submit(answer())


def pushed_answer(*, message_ids: Sequence[int], force: bool = False) -> list[int]:
    """A worker's share of pushed (webhook) messages: claim the ones still waiting and
    start answering them here. A message behind an earlier one of its chat (by Telegram's
    update id: concurrent pushes may be stored in either order) that is not answered yet
    and not by this process waits (returned: the caller asks again shortly), so a chat's
    answers stay in order even when its messages reach different workers; `force` claims
    regardless (it waited long enough)."""
    waiting = Message.objects.filter(
        pk__in=message_ids, direction=Message.Direction.IN, reply_state=Message.ReplyState.PENDING,
        claimed_by="",
    )
    ready = waiting
    if not force:
        earlier_open = Message.objects.filter(
            chat_id=OuterRef("chat_id"), direction=Message.Direction.IN,
            update_id__lt=OuterRef("update_id"),
            reply_state__in=OPEN_STATES,
        ).exclude(claimed_by=worker_id()).exclude(pk__in=message_ids)
        ready = waiting.filter(~Exists(earlier_open))
    items = list(
        claims.take(ready, now=timezone.now(), limit=len(message_ids), reply_state=Message.ReplyState.GENERATING)
        .values_list("pk", "chat_id")
    )
    if items:
        answer_soon(items)
    if len(items) == len(set(message_ids)):
        return []  # every one claimed here: none can still be waiting (the usual case)
    return list(waiting.exclude(pk__in=[pk for pk, _ in items]).values_list("pk", flat=True))


# An incoming message in one of these states is still being answered (or waits to be).
OPEN_STATES = [Message.ReplyState.PENDING, Message.ReplyState.GENERATING, Message.ReplyState.SENDING]


def messages_answer(*, message_ids: Sequence[int], timeout: float = 120) -> None:
    """Answer messages this process has claimed, and wait (tests, shell)."""
    items = list(
        Message.objects.filter(pk__in=message_ids).order_by("id").values_list("pk", "chat_id")
    )
    answer_soon(items).result(timeout)


_background: set["asyncio.Task[None]"] = set()  # a task nobody holds can be collected


def _spawn(work: Coroutine[Any, Any, None]) -> "asyncio.Task[None]":
    """Run `work` on the I/O loop in the background, held until it is done."""
    task = asyncio.get_running_loop().create_task(work)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


# --- a chat's turn --------------------------------------------------------------------------


class _Turn:
    def __init__(self, previous: "asyncio.Future[None] | None", mine: "asyncio.Future[None]") -> None:
        self.previous, self.mine = previous, mine

    async def wait(self) -> None:
        if self.previous is not None:
            await asyncio.shield(self.previous)


class _ChatTurns:
    """First come, first answered, per chat (on the I/O loop only)."""

    def __init__(self) -> None:
        self._last: dict[int, asyncio.Future[None]] = {}

    def take(self, chat_id: int) -> _Turn:
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        turn = _Turn(self._last.get(chat_id), mine)
        self._last[chat_id] = mine
        return turn

    def done(self, chat_id: int, turn: _Turn) -> None:
        turn.mine.set_result(None)
        if self._last.get(chat_id) is turn.mine:
            del self._last[chat_id]


_turns = _ChatTurns()


# --- answering --------------------------------------------------------------------------------


async def _batch_answer(message_ids: list[int], turns: dict[int, _Turn]) -> None:
    with claims.working.on(message_ids):
        try:
            jobs = await dbwork.read(_jobs_load, message_ids)
        except Exception:
            # Their claims lapse (no longer renewed) and the reaper answers them.
            log.exception("could not load %s message(s) to answer", len(message_ids))
            jobs = []
        by_chat: dict[int, list[_Job]] = defaultdict(list)
        for job in jobs:
            by_chat[job.message.chat_id].append(job)
        await asyncio.gather(*(_chat_answer(chat, by_chat[chat], turn) for chat, turn in turns.items()))


async def _chat_answer(chat_id: int, jobs: list[_Job], turn: _Turn) -> None:
    await turn.wait()
    try:
        for job in jobs:
            try:
                await _answer_one(job)
            except Exception:
                # A bug or the database: the claim lapses and the reaper tries again
                # (a bounded number of times).
                log.exception("message %s: answering failed", job.message.pk)
    finally:
        _turns.done(chat_id, turn)


async def _answer_one(job: _Job) -> None:
    if job.skip_state:
        await dbwork.write(_close, job, job.skip_state, job.skip_reason)
        return
    if job.operator_command:
        composition = Composition(text=await operator_commands.run(job.message, job.operator_command))
    elif gate.command_of(job.message)[0] == "reset" and not job.refusal:
        # /reset: the chat's summary goes with the rest of what the AI remembered.
        await dbwork.write(lambda: memory.summary_forget(
            chat_id=job.message.chat_id, topic=job.message.message_thread_id or 0))
        composition = Composition(text=wording.CONTEXT_RESET)
    else:
        if job.fixed is None and job.policy is not None:
            decision = await gate.admit(job.message, job.persona, job.policy, now=timezone.now())
            if decision.refusal:
                job = _refused(job, decision)
                if job.skip_state:
                    await dbwork.write(_close, job, job.skip_state, job.skip_reason)
                    return
        composition = await _compose(job)
        if composition.tokens:
            await _tokens_spent(job, composition)
    parts = _parts(composition.text, job) or _parts(job.persona.fallback_reply, job)
    if not parts:  # never an empty message: the persona's fallback is empty too
        await dbwork.write(_close, job, Message.ReplyState.FAILED, "Nothing to send.")
        return
    rows = await dbwork.write_many("replies.enqueue", _replies_enqueue, (job, composition, parts))
    if rows:
        await outbox.parts_send(rows)


async def _tokens_spent(job: _Job, composition: Composition) -> None:
    if job.policy is None:
        return
    try:
        await gate.tokens_spent(job.message, job.policy, now=timezone.now(), tokens=composition.tokens)
    except Exception:
        # The count of today's tokens is off by this answer; the answer itself is sent.
        log.warning("message %s: could not count its tokens", job.message.pk, exc_info=True)


def _refused(job: _Job, decision: gate.Decision) -> _Job:
    """The job as the gate refused it: the line to say, or closed in silence."""
    if decision.line:
        return replace(job, fixed=decision.line, refusal=decision.refusal, refusal_reason=decision.reason)
    return replace(job, skip_state=Message.ReplyState.NONE, skip_reason=decision.reason, refusal=decision.refusal)


def _parts(text: str, job: _Job) -> list[FormattedText]:
    try:
        return reply_parts(text, max_length=job.max_length)
    except Exception:
        log.exception("message %s: could not format the reply; sending the fallback", job.message.pk)
        return []


async def _compose(job: _Job) -> Composition:
    if job.fixed is not None:
        return Composition(text=job.fixed, error=job.fixed_note)
    if job.remote and job.endpoint is not None:
        _typing(job.endpoint, job.message.chat.telegram_id)
    if job.request is not None:
        request = job.request
    else:
        built = await dbwork.read(_context_with_history, job)
        request = await _media_attach(job, built.request) if job.shows_media else built.request
        if built.summary_due:
            _spawn(memory.summary_request(chat_id=job.message.chat_id, topic=job.message.message_thread_id or 0))
    if job.persona.remembers_users and job.message.sender_id is not None:
        _spawn(memory.notes_request(bot_id=job.message.bot_id, user_id=job.message.sender_id))
    stream = _stream(job)
    try:
        composition = await _generate(job, request, stream)
    finally:
        if stream is not None:
            await stream.finish()  # the update in flight lands before the final message
    # Whatever the answer became (the AI's, a retry's, the fallback line), it replaces
    # the preview (_replies_enqueue): a half answer never stays as the last word.
    return replace(
        composition, first_draft_ms=stream.first_shown_ms if stream is not None else None,
        preview_message_id=stream.preview_message_id if isinstance(stream, streaming.PreviewStream) else None,
    )


async def _generate(job: _Job, request: GenerationRequest, stream: streaming.Stream | None) -> Composition:
    try:
        result = await text_generate_async(
            credential=job.credential, request=request, on_text=stream.update if stream else None
        )
    except ProviderError as failure:
        return Composition(text=job.persona.fallback_reply, error=str(failure))
    except Exception:
        # Never silence: whatever broke, the person gets the persona's fallback line.
        log.exception("message %s: the AI call failed unexpectedly", job.message.pk)
        return Composition(text=job.persona.fallback_reply, error="Unexpected error from the AI provider; see the worker log.")
    if not result.text.strip():
        return Composition(
            text=job.persona.fallback_reply, ai_model=result.model,
            finish_reason=result.finish_reason, error="The AI returned no text.",
        )
    return Composition(
        text=result.text, ai_model=result.model, ai_latency_ms=result.latency_ms,
        tokens_in=result.tokens_in, tokens_out=result.tokens_out, finish_reason=result.finish_reason,
        first_token_ms=result.first_token_ms,
    )


def _stream(job: _Job) -> streaming.Stream | None:
    """How the answer is shown while it is written, if at all: drafts in a private chat;
    in a group, a preview message edited as it grows, when the persona streams there too
    (off by default: Telegram has no drafts in groups, and edits spend the group's 20
    messages a minute). Only with a networked AI (whether its provider can stream is the
    provider's business: text_generate_async streams only where it can, and the stream
    then stays unused), and only for a message answered promptly: one that waited in a
    backlog would see its first draft later than a whole answer comes when the worker
    keeps up, and streaming costs the CPU the backlog needs (measured: a burst answered
    0.69x as fast with drafts as without). An answer redone after a crash whose preview
    was sent already is not streamed again: it replaces that preview."""
    message = job.message
    waited = (timezone.now() - message.created_at).total_seconds()
    if not (job.remote and job.endpoint is not None and job.persona.stream_replies
            and waited < streaming.BACKLOG_SECONDS):
        return None
    chat_id, thread = message.chat.telegram_id, message.message_thread_id
    if message.chat.type == Chat.Type.PRIVATE:
        return streaming.DraftStream(
            endpoint=job.endpoint, chat_id=chat_id, thread=thread, max_length=job.max_length, message_id=message.pk,
        )
    if message.chat.is_group and job.persona.stream_group_edits and message.preview_message_id is None:
        return streaming.PreviewStream(
            endpoint=job.endpoint, chat_id=chat_id, thread=thread, max_length=job.max_length,
            incoming_pk=message.pk, quote=message.telegram_message_id,
        )
    return None


async def _media_attach(job: _Job, request: GenerationRequest) -> GenerationRequest:
    """The message's media, fetched from Telegram within the cap, shown with the question;
    if it cannot be fetched, the AI is told so (and says it)."""
    message = job.message
    if job.endpoint is None:
        return request
    try:
        data = await telegram.file_download(job.endpoint, message.media_file_id, max_bytes=settings.MEDIA_MAX_BYTES)
    except telegram.TelegramFailure as failure:
        log.warning("message %s: could not fetch its %s: %s", message.pk, message.media_kind, failure)
        what = media.NAMES.get(message.media_kind, "file")
        return replace(request, message=replace(
            request.message, text=f"{request.message.text}\n\n{wording.MEDIA_NOT_FETCHED.format(what=what)}"
        ))
    shown = MediaPart(mime_type=message.media_mime or "application/octet-stream", data=data)
    return replace(request, message=replace(request.message, media=(shown,)))


def _typing(endpoint: telegram.BotEndpoint, chat_id: int) -> None:
    async def send() -> None:
        try:
            await telegram.send_chat_action(endpoint, chat_id=chat_id)
        except telegram.TelegramFailure:
            pass  # only a courtesy: the reply itself will surface any real problem

    _spawn(send())


# --- reads and writes (on dbwork's threads) ----------------------------------------------------


def _jobs_load(message_ids: list[int]) -> list[_Job]:
    rows = list(
        claims.mine(Message.objects.filter(pk__in=message_ids, reply_state=Message.ReplyState.GENERATING))
        .select_related("bot__persona", "bot__credential", "chat", "sender")
        # Telegram's order: pushes arriving side by side may be stored in either order.
        .order_by("update_id", "id")
    )
    tasks = {
        task.bot_id: task
        for task in BotTask.objects.filter(
            bot_id__in={row.bot_id for row in rows}, status=BotTask.Status.RUNNING
        )
    }
    policies = access.policies_load({row.bot_id: row.bot for row in rows}.values())
    return [_job(row, tasks.get(row.bot_id), policies[row.bot_id]) for row in rows]


def _job(message: Message, task: BotTask | None, policy: BotPolicy) -> _Job:
    persona = message.bot.persona or Persona(name="default", instructions="You are a helpful assistant.")
    if task is None:
        return _Job(message, persona, skip_state=Message.ReplyState.NONE, skip_reason=TASK_STOPPED)
    if not message.chat.is_active:
        return _Job(message, persona, skip_state=Message.ReplyState.FAILED,
                    skip_reason=f"Chat inactive: {message.chat.inactive_reason}")
    try:
        endpoint = telegram.BotEndpoint.of(message.bot)
    except DecryptionError as failure:
        return _Job(message, persona, skip_state=Message.ReplyState.FAILED, skip_reason=str(failure))
    job = _Job(message, persona, task.max_response_length, endpoint, policy=policy)
    decision = gate.decide(message, persona, policy)
    if decision.refusal:
        return _refused(job, decision)
    if decision.operator_command:
        return replace(job, operator_command=decision.operator_command)
    if decision.fixed is not None:
        return replace(job, fixed=decision.fixed)
    credential = message.bot.credential if task.use_ai else None
    if credential is None:
        # No AI for this bot: the persona's own fallback line, never an echo of the
        # message (the offline provider answers only where it was chosen). AI switched
        # off is a choice; AI wanted with no credential is a mistake worth showing.
        return replace(job, fixed=persona.fallback_reply,
                       fixed_note="" if not task.use_ai else wording.NO_CREDENTIAL)
    remote = credential.provider != AICredential.Provider.OFFLINE
    # The offline provider never reads the history (its query is the costliest part), so
    # its request is complete now; a remote one is built in the chat's turn.
    request = None if remote else context.generation_request(
        message=message, persona=persona, with_history=False
    )
    shows_media = bool(message.media_kind) and media.understood(message.media_kind, credential)
    return replace(job, credential=credential, request=request, remote=remote, shows_media=shows_media)


def _context_with_history(job: _Job) -> context.Context:
    """Read in the chat's turn, after its previous answer was recorded: a follow-up
    sent the moment the bot answered still sees that answer."""
    return context.generation_context(message=job.message, persona=job.persona, media_shown=job.shows_media)


def _close(job: _Job, state: str, error: str) -> None:
    now = timezone.now()
    closed = claims.mine(Message.objects.filter(pk=job.message.pk)).update(
        reply_state=state, error=error, refusal=job.refusal, updated_at=now, **claims.RELEASED
    )
    if closed and job.refusal and job.policy is not None:
        usage.usage_record([
            gate.use_of(job.message, job.policy, day=gate.day_of(job.policy, now), refused=True)
        ])


def _policy_record(answered: list[tuple[_Job, Composition]], now: datetime) -> None:
    """The gate's refusals that were answered with a line, and the day's usage."""
    for refusal, reason in {(job.refusal, job.refusal_reason) for job, _ in answered if job.refusal}:
        Message.objects.filter(
            pk__in=[job.message.pk for job, _ in answered if (job.refusal, job.refusal_reason) == (refusal, reason)]
        ).update(refusal=refusal, error=reason)
    usage.usage_record(
        gate.use_of(
            job.message, job.policy, day=gate.day_of(job.policy, now), refused=bool(job.refusal),
            answered=job.credential is not None and not job.refusal,
            tokens=composition.tokens,
        )
        for job, composition in answered
        if job.policy is not None and (job.refusal or job.credential is not None)
    )


def _replies_enqueue(
    replies: list[tuple[_Job, Composition, list[FormattedText]]],
) -> list[list[outbox.Part]]:
    """The parts become outbox rows and their messages move to SENDING, together (one
    UPDATE, one INSERT for all); nothing for a message another process took over."""
    ids = [job.message.pk for job, _, _ in replies]
    answering = claims.mine(Message.objects.filter(pk__in=ids, reply_state=Message.ReplyState.GENERATING))
    ours = set(answering.values_list("pk", flat=True))
    now = timezone.now()
    answering.filter(pk__in=ours).update(
        reply_state=Message.ReplyState.SENDING, updated_at=now, **claims.RELEASED
    )
    _policy_record([(job, composition) for job, composition, _ in replies if job.message.pk in ours], now)
    outgoing = [
        outbox.Outgoing(
            bot=job.message.bot, chat=job.message.chat, parts=parts, endpoint=job.endpoint,
            reply_to=job.message, first_fields=composition.fields(),
            # In groups the first part quotes the question, so people see whom the bot answers.
            quote=job.message.telegram_message_id if job.message.chat.is_group else None,
            thread=job.message.message_thread_id,
            # A preview streamed now, or before a crash: the answer replaces its text.
            edits=composition.preview_message_id or job.message.preview_message_id,
        )
        for job, composition, parts in replies
        if job.message.pk in ours and job.endpoint is not None
    ]
    created = iter(outbox.parts_create(outgoing))
    return [
        next(created) if job.message.pk in ours and job.endpoint is not None else []
        for job, _, _ in replies
    ]
