"""What the bots did: their Bot API calls, the messages they sent (as they read now,
after any editMessageText) and their edits, chat actions, drafts, and the files they
may fetch (those of the media in their updates) and fetched.

Records are what tests and benchmarks read (``sent_messages``, ``calls``, ...) and
wait for (``wait_for_sent``, ``wait_for_calls``). A call log entry never holds a
token, only the bot id.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import random
import string
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._common.ops import control_op
from .errors import bad_request
from .world import bot_id_from_token

JSON = dict[str, Any]

# getFile refuses larger files ("file is too big"): the Bot API server's 20 MiB limit.
MAX_DOWNLOAD_FILE_SIZE = 20 * 1024 * 1024
# Media kind -> (usual file size, MIME type, file_path directory).
MEDIA_FILES: dict[str, tuple[int, str, str]] = {
    "photo": (64_120, "image/jpeg", "photos"),
    "sticker": (23_456, "image/webp", "stickers"),
    "voice": (12_345, "audio/ogg", "voice"),
    "audio": (3_456_789, "audio/mpeg", "music"),
    "document": (45_678, "application/pdf", "documents"),
    "video": (456_789, "video/mp4", "videos"),
    "animation": (456_789, "video/mp4", "animations"),
    "video_note": (98_765, "video/mp4", "video_notes"),
}
NO_MIME_TYPE_FIELD = frozenset({"photo", "sticker", "video_note"})  # in the Bot API
# The fields of each kind besides the file's.
MEDIA_FIELDS: dict[str, JSON] = {
    "sticker": {
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
        "emoji": "😀",
    },
    "voice": {"duration": 3},
    "audio": {"duration": 180, "title": "Song"},
    "document": {},
    "video": {"width": 640, "height": 360, "duration": 5},
    "animation": {"width": 640, "height": 360, "duration": 5},
    "video_note": {"length": 240, "duration": 4},
}
_EXTENSIONS = {"image/jpeg": "jpg", "audio/ogg": "oga", "audio/mpeg": "mp3"}  # Telegram's


def file_extension(mime_type: str) -> str:
    return _EXTENSIONS.get(mime_type) or (mimetypes.guess_extension(mime_type) or ".bin").lstrip(
        "."
    )


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    size: int
    mime_type: str
    directory: str  # of its file_path: "photos", "voice", ...
    content: bytes | None = None  # None: deterministic fake bytes of ``size``
    file_path: str | None = None  # given by the first getFile, as on Telegram

    def data(self) -> bytes:
        if self.content is not None:
            return self.content
        block = hashlib.sha256(self.file_unique_id.encode()).digest()
        return (block * (self.size // len(block) + 1))[: self.size]


@dataclass
class Log:
    """One bot's records."""

    messages: list[JSON] = field(default_factory=list)
    by_chat: dict[int, list[JSON]] = field(default_factory=dict)
    by_id: dict[tuple[int, int], JSON] = field(default_factory=dict)  # (chat_id, message_id)
    edits: list[JSON] = field(default_factory=list)
    actions: list[JSON] = field(default_factory=list)
    drafts: list[JSON] = field(default_factory=list)
    call_counts: dict[str, int] = field(default_factory=dict)  # by lower-cased method
    files: dict[str, StoredFile] = field(default_factory=dict)  # by file_id
    file_paths: dict[str, StoredFile] = field(default_factory=dict)  # by file_path
    downloads: list[JSON] = field(default_factory=list)
    # wait_for_sent / wait_for_calls: (done?, future), checked on each record.
    waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = field(default_factory=list)

    def changed(self) -> None:
        for done, future in self.waiters:
            if not future.done() and done():
                future.set_result(None)


class Sent:
    def __init__(
        self, rng: random.Random, bot_id: Callable[[str], int], call_log_size: int
    ) -> None:
        self.rng = rng
        self._bot_id = bot_id  # a token's bot; KeyError for an unknown one
        self.logs: dict[int, Log] = {}
        self.calls_log: deque[JSON] = deque(maxlen=call_log_size)  # bounded for long benchmarks

    def open(self, bot_id: int) -> None:
        self.logs[bot_id] = Log()

    def log(self, token: str) -> Log:
        return self.logs[self._bot_id(token)]

    # ---- recording (the Bot API methods)

    def call(self, token: str, method: str, params: JSON) -> JSON:
        entry = {
            "method": method,
            "bot_id": bot_id_from_token(token),
            "time": time.time(),
            "params": params,
            "status": None,
            "fault": None,
        }
        self.calls_log.append(entry)
        try:
            log = self.log(token)
        except KeyError:  # an unknown token: logged, counted for nobody
            return entry
        log.call_counts[method.lower()] = log.call_counts.get(method.lower(), 0) + 1
        log.changed()
        return entry

    def message(self, bot_id: int, message: JSON, method: str) -> None:
        reply = message.get("reply_to_message")
        record = {
            "bot_id": bot_id,
            "method": method,
            "chat_id": message["chat"]["id"],
            "message_id": message["message_id"],
            "text": message.get("text"),
            "entities": message.get("entities", []),
            "reply_to_message_id": reply["message_id"] if reply else None,
            "message_thread_id": message.get("message_thread_id"),
            "time": time.time(),
            "message": dict(message),
            "edits": 0,
            "edited_at": None,
        }
        log = self.logs[bot_id]
        log.messages.append(record)
        log.by_chat.setdefault(record["chat_id"], []).append(record)
        log.by_id[record["chat_id"], record["message_id"]] = record
        log.changed()

    def edited(self, bot_id: int, message: JSON) -> None:
        """editMessageText changed ``message``: its record now reads so (``edits``,
        ``edited_at``), and the edit is logged."""
        log, now = self.logs[bot_id], time.time()
        chat_id, message_id = message["chat"]["id"], message["message_id"]
        text, entities = message.get("text"), message.get("entities", [])
        record = log.by_id.get((chat_id, message_id))
        if record is not None:
            record.update(
                text=text,
                entities=entities,
                message=dict(message),
                edits=record["edits"] + 1,
                edited_at=now,
            )
        log.edits.append(
            {
                "chat_id": chat_id,
                "message_id": message_id,
                "text": text,
                "entities": entities,
                "at": now,
            }
        )
        log.changed()

    def action(self, bot_id: int, chat_id: int, action: str, thread_id: int | None) -> None:
        self.logs[bot_id].actions.append(
            {
                "bot_id": bot_id,
                "chat_id": chat_id,
                "action": action,
                "message_thread_id": thread_id,
                "time": time.time(),
            }
        )

    def draft(
        self,
        bot_id: int,
        chat_id: int,
        draft_id: int,
        text: str,
        entities: list[JSON],
        thread_id: int | None,
    ) -> None:
        self.logs[bot_id].drafts.append(
            {
                "chat_id": chat_id,
                "draft_id": draft_id,
                "text": text,
                "entities": entities,
                "message_thread_id": thread_id,
                "at": time.time(),
            }
        )

    # ---- files

    def media(
        self, bot_id: int, kind: str, size: int | None, mime_type: str | None, content: bytes | None
    ) -> Any:
        """A media object of ``kind`` whose file(s) the bot can fetch: ``size`` fake bytes
        (default: the kind's usual size) or ``content``. A photo comes in three sizes; the
        largest is the file itself."""
        if kind not in MEDIA_FILES:
            raise ValueError(f"unsupported media kind {kind!r}; one of {sorted(MEDIA_FILES)}")
        usual_size, usual_mime, directory = MEDIA_FILES[kind]
        if mime_type is not None and kind in NO_MIME_TYPE_FIELD:
            raise ValueError(f"a {kind} has no mime_type in the Bot API")
        if content is not None:
            if size is not None and size != len(content):
                raise ValueError(f"size {size} is not the length of content ({len(content)})")
            size = len(content)
        size = usual_size if size is None else int(size)
        if size < 1:
            raise ValueError("size must be >= 1")
        mime = mime_type or usual_mime
        files = self.logs[bot_id].files

        def stored(file_size: int, data: bytes | None = None) -> JSON:
            file = StoredFile(
                self._file_id(44), self._file_id(16), file_size, mime, directory, data
            )
            files[file.file_id] = file
            return {
                "file_id": file.file_id,
                "file_unique_id": file.file_unique_id,
                "file_size": file_size,
            }

        if kind == "photo":
            thumbs = [(90, 67, size * 1_342 // 64_120), (320, 240, size * 17_403 // 64_120)]
            return [
                *({**stored(max(1, s)), "width": w, "height": h} for w, h, s in thumbs),
                {**stored(size, content), "width": 800, "height": 600},
            ]
        media = stored(size, content)
        if kind not in NO_MIME_TYPE_FIELD:
            media["mime_type"] = mime
        if kind == "document":
            media["file_name"] = f"report.{file_extension(mime)}"
        return {**media, **MEDIA_FIELDS[kind]}

    def _file_id(self, length: int) -> str:
        alphabet = string.ascii_letters + string.digits + "_-"
        return "AgAC" + "".join(self.rng.choice(alphabet) for _ in range(length - 4))

    def get_file(self, bot_id: int, file_id: str) -> JSON:
        """getFile: the file's download path (given on the first call); over 20 MiB refused."""
        log = self.logs[bot_id]
        file = log.files.get(file_id)
        if file is None:
            raise bad_request("invalid file_id")
        if file.size > MAX_DOWNLOAD_FILE_SIZE:
            raise bad_request("file is too big")
        if file.file_path is None:
            file.file_path = (
                f"{file.directory}/file_{len(log.file_paths)}.{file_extension(file.mime_type)}"
            )
            log.file_paths[file.file_path] = file
        return {
            "file_id": file.file_id,
            "file_unique_id": file.file_unique_id,
            "file_size": file.size,
            "file_path": file.file_path,
        }

    def download(self, token: str, file_path: str) -> StoredFile | None:
        """The file at ``/file/bot<token>/<file_path>`` (None: not this bot's), recorded."""
        try:
            log = self.log(token)
        except KeyError:
            return None
        file = log.file_paths.get(file_path)
        if file is not None:
            log.downloads.append(
                {
                    "file_id": file.file_id,
                    "file_path": file_path,
                    "bytes": file.size,
                    "at": time.time(),
                }
            )
        return file

    # ---- control operations

    @control_op
    def sent_messages(self, token: str, chat_id: int | None = None) -> list[JSON]:
        """The bot's messages, oldest first: ``{bot_id, method, chat_id, message_id, text,
        entities, reply_to_message_id, message_thread_id, time, message, edits,
        edited_at}``. An edited one reads as it does now (``text``, ``entities``,
        ``message``); ``edits`` counts its edits, ``edited_at`` is the last one's time."""
        log = self.log(token)
        return list(log.messages if chat_id is None else log.by_chat.get(chat_id, ()))

    @control_op
    def chat_actions(self, token: str, chat_id: int | None = None) -> list[JSON]:
        """sendChatAction calls: ``{bot_id, chat_id, action, message_thread_id, time}``."""
        return [a for a in self.log(token).actions if chat_id in (None, a["chat_id"])]

    @control_op
    def drafts(self, token: str, chat_id: int | None = None) -> list[JSON]:
        """sendMessageDraft calls, oldest first: ``{chat_id, draft_id, text, entities,
        message_thread_id, at}`` (text "" is the "Thinking..." placeholder)."""
        return [d for d in self.log(token).drafts if chat_id in (None, d["chat_id"])]

    @control_op
    def edits(self, token: str, chat_id: int | None = None) -> list[JSON]:
        """editMessageText calls that changed a message, oldest first: ``{chat_id,
        message_id, text, entities, at}`` (the new text)."""
        return [e for e in self.log(token).edits if chat_id in (None, e["chat_id"])]

    @control_op
    def file_downloads(self, token: str) -> list[JSON]:
        """Files the bot downloaded, oldest first: ``{file_id, file_path, bytes, at}``."""
        return list(self.log(token).downloads)

    @control_op
    def calls(
        self, token: str | None = None, method: str | None = None, limit: int | None = None
    ) -> list[JSON]:
        """Bot API calls, oldest first (the last ``limit``): ``{method, bot_id, time, params,
        status, fault}``."""
        bot_id = bot_id_from_token(token) if token is not None else None
        key = method.lower() if method else None
        found = [
            c
            for c in self.calls_log
            if (token is None or c["bot_id"] == bot_id) and key in (None, c["method"].lower())
        ]
        return found[-limit:] if limit else found

    @control_op
    async def wait_for_sent(
        self, token: str, count: int, chat_id: int | None = None, timeout: float = 10.0
    ) -> list[JSON]:
        """The bot's sent messages (in ``chat_id``) once there are ``count``; TimeoutError
        after ``timeout`` seconds."""
        log = self.log(token)

        def sent() -> list[JSON]:
            return log.messages if chat_id is None else log.by_chat.get(chat_id, [])

        where = f" in chat {chat_id}" if chat_id is not None else ""
        await _until(
            log,
            lambda: len(sent()) >= count,
            timeout,
            lambda: (
                f"{count} message(s) sent{where}; got {len(sent())} (last: {[r['text'] for r in sent()[-3:]]!r})"
            ),
        )
        return list(sent())

    @control_op
    async def wait_for_calls(
        self, token: str, method: str, count: int = 1, timeout: float = 10.0
    ) -> int:
        """How often the bot called ``method``, once it is ``count`` times; TimeoutError after
        ``timeout`` seconds."""
        log, key = self.log(token), method.lower()
        counts = log.call_counts
        await _until(
            log,
            lambda: counts.get(key, 0) >= count,
            timeout,
            lambda: f"{count} call(s) of {method}; got {counts.get(key, 0)}",
        )
        return counts[key]

    def release(self) -> None:
        """The server is stopping: end every wait."""
        for log in self.logs.values():
            for _done, future in log.waiters:
                future.cancel()


async def _until(
    log: Log, done: Callable[[], bool], timeout: float, what: Callable[[], str]
) -> None:
    """Return once ``done()`` holds (checked on each of the bot's records); TimeoutError
    naming ``what()`` after ``timeout`` seconds."""
    if done():
        return
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    log.waiters.append((done, future))
    try:
        await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout}s waiting for {what()}") from None
    finally:
        log.waiters = [w for w in log.waiters if w[1] is not future]
