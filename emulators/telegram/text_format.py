"""Turn a sendMessage ``text`` + ``parse_mode``/``entities`` into what Telegram stores.

Steps, in the order the real server applies them:

1. parse the markup (HTML / MarkdownV2 / Markdown) or take explicit ``entities``;
2. trim leading/trailing whitespace (Telegram never stores it) and fix entities;
3. auto-detect ``mention``, ``hashtag``, ``bot_command``, ``url`` and ``email``
   entities, as Telegram does for every message;
4. the caller checks emptiness and the UTF-16 length limit.
"""

from __future__ import annotations

import re

from .html_entities import (
    Entity,
    EntityParseError,
    UserResolver,
    link_user_id,
    parse_html,
    sort_entities,
    utf16_len,
    utf16_prefix,
)
from .links import LinkError, check_link, describe_link_error
from .markdown_entities import parse_markdown, parse_markdown_v2

MAX_MESSAGE_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024

# Entity types that only style text: auto-detection may still happen inside them.
_STYLE_TYPES = frozenset(
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

_ENTITY_TYPES = frozenset(
    {
        "mention",
        "hashtag",
        "cashtag",
        "bot_command",
        "url",
        "email",
        "phone_number",
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "spoiler",
        "blockquote",
        "expandable_blockquote",
        "code",
        "pre",
        "text_link",
        "text_mention",
        "custom_emoji",
    }
)

# Order matters: earlier patterns win on overlap (an e-mail is not a mention).
_AUTODETECT = [
    ("email", re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    ("url", re.compile(r"(?<![\w@/])(?:https?://|www\.)[^\s<>\"]+[^\s<>\".,;:!?)\]}'»]")),
    (
        "bot_command",
        re.compile(r"(?<![\w/\\])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z][A-Za-z0-9_]{2,31})?(?![\w/])"),
    ),
    ("mention", re.compile(r"(?<![\w@])@[A-Za-z][A-Za-z0-9_]{3,31}(?![\w@])")),
    ("hashtag", re.compile(r"(?<![\w#])#\w*[^\W\d]\w*")),
]

_WS = " \t\r\n\f\v\u00a0\u2028\u2029"


class MessageTextError(ValueError):
    """A non-parse text problem ("message text is empty", ...); ``reason`` is Telegram's text."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def parse_text(
    text: str,
    parse_mode: str | None,
    entities: list[Entity] | None,
    *,
    strict_html_ampersand: bool = True,
    resolve_user: UserResolver | None = None,
    autodetect: bool = True,
) -> tuple[str, list[Entity]]:
    """Return Telegram's stored ``(text, entities)`` for an outgoing message.

    Raises :class:`EntityParseError` for bad markup. Explicit ``entities`` win over
    ``parse_mode`` (the Bot API ignores parse_mode when entities are given).
    """
    if entities:
        parsed_text, parsed_entities = text, _clean_explicit_entities(text, entities, resolve_user)
    else:
        mode = (parse_mode or "").strip().lower()
        if mode == "html":
            parsed_text, parsed_entities = parse_html(
                text, strict_ampersand=strict_html_ampersand, resolve_user=resolve_user
            )
        elif mode == "markdownv2":
            parsed_text, parsed_entities = parse_markdown_v2(text, resolve_user=resolve_user)
        elif mode == "markdown":
            parsed_text, parsed_entities = parse_markdown(text)
        elif mode == "":
            parsed_text, parsed_entities = text, []
        else:
            raise EntityParseError(f'Unsupported parse_mode "{parse_mode}"')
    parsed_text, parsed_entities = trim(parsed_text, parsed_entities)
    if autodetect:
        parsed_entities = add_autodetected(parsed_text, parsed_entities)
    return parsed_text, parsed_entities


def _clean_explicit_entities(
    text: str, entities: list[Entity], resolve_user: UserResolver | None = None
) -> list[Entity]:
    """Validate caller-supplied entities loosely: known type, in-bounds, positive length.

    ``text_link`` URLs are checked strictly, as TDLib does before anything else: one
    bad URL fails the whole request, even on an entity that would then be dropped.
    """
    total = utf16_len(text)
    cleaned: list[Entity] = []
    for raw in entities:
        if not isinstance(raw, dict):
            raise MessageTextError("can't parse entities: entity must be an object")
        etype = raw.get("type")
        if etype not in _ENTITY_TYPES:
            raise MessageTextError(f'can\'t parse entities: unsupported entity type "{etype}"')
        link_fields = _text_link_fields(raw, resolve_user) if etype == "text_link" else {}
        try:
            offset, length = int(raw["offset"]), int(raw["length"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MessageTextError(
                "can't parse entities: entity offset and length must be integers"
            ) from exc
        if offset < 0 or length <= 0 or offset >= total:
            continue  # Telegram silently drops such entities
        entity = {**raw, **link_fields}
        if link_fields.get("type") == "text_mention":
            del entity["url"]  # a tg://user link became a mention of that user
        entity["offset"], entity["length"] = offset, min(length, total - offset)
        cleaned.append(entity)
    return sort_entities(cleaned)


def _text_link_fields(raw: Entity, resolve_user: UserResolver | None) -> Entity:
    """What an explicit ``text_link`` becomes: a checked URL, or a ``text_mention``
    for ``tg://user?id=`` links (as TDLib converts them)."""
    url = raw.get("url")
    if not isinstance(url, str):
        raise MessageTextError("can't parse MessageEntity: Can't find field \"url\"")
    user_id = link_user_id(url)
    if user_id is not None and resolve_user is not None:
        return {"type": "text_mention", "user": resolve_user(user_id)}
    try:
        return {"url": check_link(url)}
    except LinkError as exc:
        raise MessageTextError(describe_link_error(url, exc)) from None


def trim(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    """Strip surrounding whitespace and clip/shift entities accordingly (UTF-16 maths)."""
    stripped_left = text.lstrip(_WS)
    left = utf16_len(text[: len(text) - len(stripped_left)])
    result = stripped_left.rstrip(_WS)
    if left == 0 and len(result) == len(text):
        return text, entities
    total = utf16_len(result)
    fixed: list[Entity] = []
    for entity in entities:
        start = max(entity["offset"] - left, 0)
        end = min(entity["offset"] + entity["length"] - left, total)
        if end > start:
            fixed.append({**entity, "offset": start, "length": end - start})
    return result, fixed


def add_autodetected(text: str, entities: list[Entity]) -> list[Entity]:
    """Add Telegram's automatic entities that don't collide with explicit non-style ones."""
    if not text or not any(ch in text for ch in "@#/.:"):
        return entities
    prefix = utf16_prefix(text)
    blocked = [
        (e["offset"], e["offset"] + e["length"]) for e in entities if e["type"] not in _STYLE_TYPES
    ]
    found: list[Entity] = []
    for etype, pattern in _AUTODETECT:
        for match in pattern.finditer(text):
            start, end = match.start(), match.end()
            if prefix is not None:
                start, end = prefix[start], prefix[end]
            if any(start < b_end and b_start < end for b_start, b_end in blocked):
                continue
            blocked.append((start, end))
            found.append({"type": etype, "offset": start, "length": end - start})
    if not found:
        return entities
    return sort_entities([*entities, *found])


def describe_parse_error(exc: EntityParseError) -> str:
    """Bot API description for a parse failure."""
    return f"Bad Request: can't parse entities: {exc.reason}"


def message_entities_for(text: str, extra: list[Entity] | None = None) -> list[Entity]:
    """Entities of a *user* message: explicit ones (mentions we built) + auto-detected."""
    return add_autodetected(text, sort_entities(list(extra or [])))


__all__ = [
    "MAX_CAPTION_LENGTH",
    "MAX_MESSAGE_LENGTH",
    "EntityParseError",
    "MessageTextError",
    "add_autodetected",
    "describe_parse_error",
    "message_entities_for",
    "parse_text",
    "trim",
]
