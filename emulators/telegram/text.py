"""Message text as Telegram stores it: entities in UTF-16 units, trimmed, auto-detected.

Botfleet sends explicit ``entities``; ``parse_mode`` (HTML, Markdown) is not
emulated and is refused by the server. What a sent text becomes: its entities
checked loosely (known type, positive length, inside the text), surrounding
whitespace trimmed (entities moved with it), then the entities Telegram detects
in any text (e-mail, URL, bot command, mention, hashtag) added where no explicit
one is. User messages get the same detection.
"""

from __future__ import annotations

import re
from typing import Any

Entity = dict[str, Any]

MAX_MESSAGE_LENGTH = 4096  # UTF-16 code units

ENTITY_TYPES = frozenset(
    {
        *("mention", "hashtag", "cashtag", "bot_command", "url", "email", "phone_number"),
        *("bold", "italic", "underline", "strikethrough", "spoiler", "blockquote"),
        *("expandable_blockquote", "code", "pre", "text_link", "text_mention", "custom_emoji"),
    }
)
# Entity types that only style text: detection may still find a URL inside them.
STYLE_TYPES = frozenset(
    {
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "spoiler",
        "blockquote",
        "expandable_blockquote",
    }
)

# Order matters: earlier patterns win on overlap (an e-mail is not a mention).
_DETECTED = [
    ("email", re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    ("url", re.compile(r"(?<![\w@/])(?:https?://|www\.)[^\s<>\"]+[^\s<>\".,;:!?)\]}'»]")),
    (
        "bot_command",
        re.compile(r"(?<![\w/\\])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z][A-Za-z0-9_]{2,31})?(?![\w/])"),
    ),
    ("mention", re.compile(r"(?<![\w@])@[A-Za-z][A-Za-z0-9_]{3,31}(?![\w@])")),
    ("hashtag", re.compile(r"(?<![\w#])#\w*[^\W\d]\w*")),
]

_WHITESPACE = " \t\r\n\f\v\u00a0\u2028\u2029"


class TextError(ValueError):
    """A text Telegram refuses; the message is its reason (after "Bad Request: ")."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units (what Telegram counts)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _utf16_offsets(text: str) -> list[int] | None:
    """Python index -> UTF-16 offset, or None when they are the same."""
    if utf16_len(text) == len(text):
        return None
    offsets, total = [], 0
    for ch in text:
        offsets.append(total)
        total += 2 if ord(ch) > 0xFFFF else 1
    return [*offsets, total]


def sort_entities(entities: list[Entity]) -> list[Entity]:
    """Telegram's order: by offset, the longer first."""
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


def detected(text: str, entities: list[Entity] | None = None) -> list[Entity]:
    """``entities`` plus those Telegram detects where no explicit non-style entity is."""
    entities = sort_entities(list(entities or []))
    if not text or not any(ch in text for ch in "@#/.:"):
        return entities
    offsets = _utf16_offsets(text)
    taken = [
        (e["offset"], e["offset"] + e["length"]) for e in entities if e["type"] not in STYLE_TYPES
    ]
    found: list[Entity] = []
    for kind, pattern in _DETECTED:
        for match in pattern.finditer(text):
            start, end = match.start(), match.end()
            if offsets is not None:
                start, end = offsets[start], offsets[end]
            if any(start < b_end and b_start < end for b_start, b_end in taken):
                continue
            taken.append((start, end))
            found.append({"type": kind, "offset": start, "length": end - start})
    return sort_entities([*entities, *found]) if found else entities


def stored(text: str, entities: Any) -> tuple[str, list[Entity]]:
    """What Telegram stores for a sent ``text`` with ``entities`` (None or a list)."""
    if entities is not None and not isinstance(entities, list):
        raise TextError("can't parse entities JSON object")
    total = utf16_len(text)
    kept: list[Entity] = []
    for entity in entities or []:
        if not isinstance(entity, dict) or entity.get("type") not in ENTITY_TYPES:
            raise TextError(f"can't parse entities: unsupported entity {entity!r}")
        if entity["type"] == "text_link" and not isinstance(entity.get("url"), str):
            raise TextError("can't parse MessageEntity: Can't find field \"url\"")
        try:
            offset, length = int(entity["offset"]), int(entity["length"])
        except (KeyError, TypeError, ValueError):
            raise TextError("can't parse entities: offset and length must be integers") from None
        if offset >= 0 and length > 0 and offset < total:  # others are dropped silently
            kept.append({**entity, "offset": offset, "length": min(length, total - offset)})
    text, kept = _trimmed(text, kept)
    return text, detected(text, kept)


def _trimmed(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    """Without surrounding whitespace (Telegram never stores it), entities moved along."""
    left = utf16_len(text[: len(text) - len(text.lstrip(_WHITESPACE))])
    result = text.strip(_WHITESPACE)
    if len(result) == len(text):
        return text, entities
    total = utf16_len(result)
    moved = []
    for entity in entities:
        start = max(entity["offset"] - left, 0)
        end = min(entity["offset"] + entity["length"] - left, total)
        if end > start:
            moved.append({**entity, "offset": start, "length": end - start})
    return result, moved
