"""AI Markdown to Telegram text + entities, cut to length and split into messages.

telegramify-markdown does the Markdown rendering (bold, italic, code, links...) into
plain text plus MessageEntity spans, so nothing needs HTML escaping on the wire. It
would silently drop raw HTML like `<b>`; we escape `<` outside code first so users see
what the AI wrote. Splitting is ours: telegramify splits only on newlines, and
Telegram's limit counts UTF-16 code units, which we measure exactly.
"""

import re
from dataclasses import dataclass, field

import telegram
import telegramify_markdown

from bots.telegram import cleaned

TELEGRAM_TEXT_LIMIT = 4096
ELLIPSIS = "…"

# Code spans and fenced blocks keep `<` as is: inside them Markdown shows it verbatim.
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.S)
# Preferred cut points, best first: paragraph, line, sentence end, word.
_BOUNDARIES = (
    re.compile(r"\n\s*\n"),
    re.compile(r"\n"),
    re.compile(r"(?<=[.!?…])\s+"),
    re.compile(r"\s+"),
)


@dataclass(frozen=True)
class FormattedText:
    text: str
    entities: list[telegram.MessageEntity] = field(default_factory=list)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def markdown_render(markdown: str) -> FormattedText:
    markdown = cleaned(markdown)  # an AI's unpaired surrogate would fail the send
    pieces, last = [], 0
    for match in _CODE.finditer(markdown):
        pieces.append(markdown[last : match.start()].replace("<", "\\<"))
        pieces.append(match.group())
        last = match.end()
    pieces.append(markdown[last:].replace("<", "\\<"))
    text, entities = telegramify_markdown.convert("".join(pieces))
    return FormattedText(
        text, [telegram.MessageEntity(**e.to_dict()) for e in entities if _safe_link(e.to_dict())]
    )


def _safe_link(entity: dict[str, object]) -> bool:
    """Only web links become links: `javascript:`, `data:`, `tg:` and the like stay
    plain text (their label shows, nothing to click)."""
    if entity.get("type") != "text_link":
        return True
    url = str(entity.get("url") or "").strip().lower()
    return url.startswith(("http://", "https://"))


class _Utf16Index:
    """Python index -> UTF-16 offset, for mapping cuts onto entity offsets."""

    def __init__(self, text: str) -> None:
        self.offsets = [0]
        for char in text:
            self.offsets.append(self.offsets[-1] + (2 if ord(char) > 0xFFFF else 1))

    def __getitem__(self, index: int) -> int:
        return self.offsets[index]

    def last_index_within(self, start: int, budget: int) -> int:
        """The largest python index `end` with text[start:end] at most `budget` units."""
        limit, end = self.offsets[start] + budget, start
        lo, hi = start, len(self.offsets) - 1
        while lo <= hi:  # binary search: offsets only grow
            mid = (lo + hi) // 2
            if self.offsets[mid] <= limit:
                end, lo = mid, mid + 1
            else:
                hi = mid - 1
        return end


def _slice(formatted: FormattedText, index: _Utf16Index, start: int, end: int) -> FormattedText:
    a, b = index[start], index[end]
    entities = []
    for entity in formatted.entities:
        lo, hi = max(entity.offset, a), min(entity.offset + entity.length, b)
        if hi > lo:  # an entity crossing the cut is clipped into both parts
            entities.append(_moved(entity, lo - a, hi - lo))
    return FormattedText(formatted.text[start:end], entities)


def _moved(entity: telegram.MessageEntity, offset: int, length: int) -> telegram.MessageEntity:
    data = entity.to_dict()
    data.update(offset=offset, length=length)
    return telegram.MessageEntity.de_json(data, None)


def _cut(text: str, start: int, hard_end: int) -> tuple[int, int]:
    """Where to end this part and where the next begins, preferring natural breaks
    in the second half of the window so parts are not needlessly short."""
    floor = start + (hard_end - start) // 2
    for boundary in _BOUNDARIES:
        best = None
        for match in boundary.finditer(text, floor, hard_end + 1):
            if match.start() > start:
                best = match
        if best is not None:
            return best.start(), best.end()
    return hard_end, hard_end


def split_message(formatted: FormattedText, limit: int = TELEGRAM_TEXT_LIMIT) -> list[FormattedText]:
    """Parts of at most `limit` UTF-16 units, cut at paragraph, line, sentence or word
    boundaries when there is one, never inside a character."""
    index = _Utf16Index(formatted.text)
    parts, start, length = [], 0, len(formatted.text)
    while start < length:
        hard_end = index.last_index_within(start, limit)
        if hard_end >= length:
            end = next_start = length
        else:
            end, next_start = _cut(formatted.text, start, hard_end)
        part = _slice(formatted, index, start, end)
        if part.text.strip():
            parts.append(part)
        start = next_start
    return parts


def truncate(formatted: FormattedText, max_length: int) -> FormattedText:
    """Cut to `max_length` UTF-16 units at a word boundary, marking the cut with '…'."""
    if utf16_len(formatted.text) <= max_length:
        return formatted
    index = _Utf16Index(formatted.text)
    hard_end = index.last_index_within(0, max(max_length - 1, 0))
    cut = formatted.text.rfind(" ", 0, hard_end)
    end = cut if cut > hard_end // 2 else hard_end
    part = _slice(formatted, index, 0, end)
    return FormattedText(part.text.rstrip() + ELLIPSIS, part.entities)


def reply_parts(markdown: str, *, max_length: int) -> list[FormattedText]:
    """The messages to send for one reply: rendered, cut to the task's maximum length,
    split at Telegram's limit."""
    return split_message(truncate(markdown_render(markdown), max_length))
