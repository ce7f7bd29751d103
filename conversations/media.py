"""Photos, voice notes, audio, short videos and image files: what a message carries,
whether the bot's AI can take it, and fetching it from Telegram within the size cap.

Stored on the message at ingest (kind, Telegram's file id, size, type; never the
bytes). The bytes are fetched when the message is answered (getFile, then the file
URL, through bots.telegram), only when Telegram's stated size is within
MEDIA_MAX_BYTES, and handed to the provider with the caption as the prompt: Gemini
takes images, audio and video inline; an OpenAI-compatible model takes images (as data
URLs); the offline provider none.
"""

from dataclasses import dataclass

import telegram as ptb
from django.conf import settings

from credentials.models import AICredential

PHOTO, VOICE, AUDIO, VIDEO, VIDEO_NOTE, IMAGE_FILE = "photo", "voice", "audio", "video", "video_note", "image_file"
IMAGES = {PHOTO, IMAGE_FILE}
UNDERSTOOD_BY: dict[str, set[str]] = {
    AICredential.Provider.GEMINI: {PHOTO, IMAGE_FILE, VOICE, AUDIO, VIDEO, VIDEO_NOTE},
    AICredential.Provider.OPENAI_COMPATIBLE: IMAGES,
}
# What each kind is called when the AI is told about it.
NAMES = {PHOTO: "photo", IMAGE_FILE: "image", VOICE: "voice message", AUDIO: "audio file",
         VIDEO: "video", VIDEO_NOTE: "video message"}


@dataclass(frozen=True)
class Media:
    kind: str
    file_id: str
    size: int | None
    mime: str


def media_of(message: ptb.Message) -> Media | None:
    """The understandable media of a message, if any (stickers, GIFs, locations and
    other files are not: they stay placeholders)."""
    if message.photo:
        # The largest size within the cap (Telegram sends several); else the smallest,
        # whose size then says "too large".
        sizes = sorted(message.photo, key=lambda p: p.file_size or 0)
        fitting = [p for p in sizes if (p.file_size or 0) <= settings.MEDIA_MAX_BYTES]
        photo = fitting[-1] if fitting else sizes[0]
        return Media(PHOTO, photo.file_id, photo.file_size, "image/jpeg")
    if message.voice:
        return Media(VOICE, message.voice.file_id, message.voice.file_size, message.voice.mime_type or "audio/ogg")
    if message.audio:
        return Media(AUDIO, message.audio.file_id, message.audio.file_size, message.audio.mime_type or "audio/mpeg")
    if message.video:
        return Media(VIDEO, message.video.file_id, message.video.file_size, message.video.mime_type or "video/mp4")
    if message.video_note:
        return Media(VIDEO_NOTE, message.video_note.file_id, message.video_note.file_size, "video/mp4")
    document = message.document
    if document and (document.mime_type or "").startswith("image/"):
        return Media(IMAGE_FILE, document.file_id, document.file_size, document.mime_type or "image/jpeg")
    return None


def fields_of(message: ptb.Message) -> dict[str, object]:
    media = media_of(message)
    if media is None:
        return {}
    return {"media_kind": media.kind, "media_file_id": media.file_id[:255], "media_size": media.size,
            "media_mime": media.mime[:100]}


def too_large(size: int | None) -> bool:
    return size is not None and size > settings.MEDIA_MAX_BYTES


def understood(kind: str, credential: AICredential | None) -> bool:
    return credential is not None and kind in UNDERSTOOD_BY.get(credential.provider, set())


def cap_label() -> str:
    megabytes = settings.MEDIA_MAX_BYTES / 1_000_000
    return f"{megabytes:g} MB"
