"""Telegram's ``parse_mode="HTML"`` parser, plus the UTF-16 helpers every entity needs.

Telegram measures entity ``offset``/``length`` in UTF-16 code units, not Python
characters: an emoji outside the Basic Multilingual Plane (e.g. "😀") counts as 2.
Getting this wrong is a classic bot bug, so the emulator computes offsets exactly
the way the real server does and clients (python-telegram-bot's ``parse_entities``)
can slice them back.

The HTML parser follows the algorithm of TDLib's ``parse_html`` (the code behind
the real Bot API), including its error messages ("Unsupported start tag \"foo\" at
byte offset 3", "Can't find end tag corresponding to start tag \"b\"", ...).
Byte offsets in error messages are UTF-8 byte offsets into the *original* text,
as Telegram reports them.

One deliberate difference, configurable: by default a bare ``&`` that does not
start a recognised entity is rejected (the Bot API docs say every ``&`` must be
escaped). Real Telegram silently keeps such an ``&``; pass
``strict_ampersand=False`` to get that behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Entity = dict[str, Any]
"""A MessageEntity in Bot API JSON shape: ``{"type", "offset", "length", ...}``."""

ALLOWED_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)

# Simple tags: tag name -> Bot API entity type.
_SIMPLE_TAG_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",  # only <span class="tg-spoiler"> is accepted
}

_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

_SPACES = frozenset(" \t\r\n\f\v")

ALLOWED_URL_SCHEMES = ("http://", "https://", "tg://", "ton://", "ftp://", "mailto:")


class EntityParseError(ValueError):
    """The text could not be parsed; ``reason`` is Telegram's wording (without prefix)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"can't parse entities: {reason}")


# --------------------------------------------------------------------------- UTF-16


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (what Telegram calls "characters")."""
    # Fast path: pure-BMP strings (the vast majority) need no encoding.
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def char_units(ch: str) -> int:
    """UTF-16 code units of one Python character (2 for astral-plane characters)."""
    return 2 if ord(ch) > 0xFFFF else 1


def utf16_prefix(text: str) -> list[int] | None:
    """Map python index -> UTF-16 offset, or ``None`` when they are identical (BMP only)."""
    if text.isascii() or utf16_len(text) == len(text):
        return None
    prefix = [0] * (len(text) + 1)
    acc = 0
    for idx, ch in enumerate(text):
        prefix[idx] = acc
        acc += char_units(ch)
    prefix[len(text)] = acc
    return prefix


def utf16_slice(text: str, offset: int, length: int) -> str:
    """Substring addressed by a UTF-16 ``offset``/``length`` (inverse of entity maths)."""
    raw = text.encode("utf-16-le", "surrogatepass")
    return raw[offset * 2 : (offset + length) * 2].decode("utf-16-le", "surrogatepass")


def byte_offset(text: str, index: int) -> int:
    """UTF-8 byte offset of python index ``index`` (only computed for error messages)."""
    return len(text[:index].encode("utf-8", "surrogatepass"))


# --------------------------------------------------------------------------- links


def normalize_link(url: str) -> str | None:
    """Roughly TDLib's ``check_link``: returns the URL to store or ``None`` if rejected."""
    url = url.strip()
    if not url or any(ch in _SPACES for ch in url):
        return None
    lowered = url.lower()
    if lowered.startswith(ALLOWED_URL_SCHEMES):
        return url
    if "://" in lowered or lowered.startswith(("javascript:", "data:", "file:")):
        return None
    if "." not in url:
        return None
    return "http://" + url


def link_user_id(url: str) -> int | None:
    """``tg://user?id=123`` links become ``text_mention`` entities, like on Telegram."""
    lowered = url.strip().lower()
    prefix = "tg://user?id="
    if lowered.startswith(prefix):
        rest = lowered[len(prefix) :].split("&", 1)[0]
        if rest.isdigit():
            return int(rest)
    return None


UserResolver = Callable[[int], dict[str, Any]]


def _default_user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": ""}


# --------------------------------------------------------------------------- HTML


def _decode_entity(text: str, pos: int) -> tuple[str, int] | None:
    """Decode ``&...;`` at ``pos`` the way TDLib does; returns (char, next_index) or None.

    The trailing ``;`` is optional (TDLib accepts ``&lt`` too). Supports the four
    named entities Telegram documents plus numeric ``&#NN;`` / ``&#xHH;``.
    """
    n = len(text)
    end = pos + 1
    if end < n and text[end] == "#":
        end += 1
        hex_mode = end < n and text[end] in "xX"
        if hex_mode:
            end += 1
        start_digits = end
        digits = "0123456789abcdefABCDEF" if hex_mode else "0123456789"
        while end < n and text[end] in digits and end - start_digits < 8:
            end += 1
        if end == start_digits:
            return None
        code = int(text[start_digits:end], 16 if hex_mode else 10)
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return None
        decoded = chr(code)
    else:
        while end < n and text[end].isascii() and text[end].isalpha():
            end += 1
        name = text[pos + 1 : end]
        decoded_or_none = _NAMED_ENTITIES.get(name)
        if decoded_or_none is None:
            return None
        decoded = decoded_or_none
    if end < n and text[end] == ";":
        end += 1
    return decoded, end


def parse_html(
    text: str,
    *,
    strict_ampersand: bool = True,
    resolve_user: UserResolver | None = None,
) -> tuple[str, list[Entity]]:
    """Parse Telegram-flavoured HTML into ``(plain_text, entities)``.

    Raises :class:`EntityParseError` with Telegram's reason text on bad markup.
    Entities are returned in the order Telegram returns them (by offset, then
    longest first); offsets/lengths are in UTF-16 code units.
    """
    resolve = resolve_user or _default_user
    out: list[str] = []
    offset16 = 0
    entities: list[Entity] = []
    # Open tags: (tag_name, argument, utf16_offset, len(out) at open, python index of '<')
    stack: list[tuple[str, str, int, int, int]] = []
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        if ch == "&":
            decoded = _decode_entity(text, i)
            if decoded is not None:
                value, i = decoded
                out.append(value)
                offset16 += char_units(value)
                continue
            if strict_ampersand:
                raise EntityParseError(
                    'Character "&" must be escaped as "&amp;" (not a valid HTML entity) '
                    f"at byte offset {byte_offset(text, i)}"
                )
        if ch != "<":
            out.append(ch)
            offset16 += char_units(ch)
            i += 1
            continue

        begin = i
        i += 1
        if i < n and text[i] == "/":
            # ---- end tag
            if not stack:
                raise EntityParseError(
                    f"Unexpected end tag at byte offset {byte_offset(text, begin)}"
                )
            while i < n and text[i] not in _SPACES and text[i] != ">":
                i += 1
            end_name = text[begin + 2 : i].lower()
            while i < n and text[i] in _SPACES:
                i += 1
            if i >= n or text[i] != ">":
                raise EntityParseError(
                    f"Unclosed end tag at byte offset {byte_offset(text, begin)}"
                )
            i += 1  # past '>'
            tag, argument, start16, start_out, _ = stack.pop()
            if end_name and end_name != tag:
                raise EntityParseError(
                    f"Unmatched end tag at byte offset {byte_offset(text, begin)}, "
                    f'expected "</{tag}>", found "</{end_name}>"'
                )
            length = offset16 - start16
            if length > 0:
                _close_html_entity(
                    entities, tag, argument, start16, length, "".join(out[start_out:]), resolve
                )
            continue

        # ---- start tag
        tag_end = i
        while tag_end < n and text[tag_end] not in _SPACES and text[tag_end] != ">":
            tag_end += 1
        if tag_end >= n:
            raise EntityParseError(f"Unclosed start tag at byte offset {byte_offset(text, begin)}")
        tag = text[i:tag_end].lower()
        if tag not in ALLOWED_TAGS:
            raise EntityParseError(
                f'Unsupported start tag "{tag}" at byte offset {byte_offset(text, begin)}'
            )
        i = tag_end
        argument = ""
        while True:
            while i < n and text[i] in _SPACES:
                i += 1
            if i >= n:
                raise EntityParseError(
                    f'Unclosed start tag "{tag}" at byte offset {byte_offset(text, begin)}'
                )
            if text[i] == ">":
                break
            attr_begin = i
            while i < n and text[i] not in _SPACES and text[i] not in "=>":
                i += 1
            attr_name = text[attr_begin:i].lower()
            if not attr_name:
                raise EntityParseError(
                    f'Empty attribute name in the tag "{tag}" at byte offset {byte_offset(text, begin)}'
                )
            while i < n and text[i] in _SPACES:
                i += 1
            if i < n and text[i] != "=" and tag == "blockquote" and attr_name == "expandable":
                # Value-less boolean attribute: <blockquote expandable>
                argument = "expandable"
                continue
            if i >= n or text[i] != "=":
                raise EntityParseError(
                    "Expected equal sign in declaration of an attribute of the tag "
                    f'"{tag}" at byte offset {byte_offset(text, begin)}'
                )
            i += 1
            while i < n and text[i] in _SPACES:
                i += 1
            if i >= n:
                raise EntityParseError(
                    f'Unclosed start tag "{tag}" at byte offset {byte_offset(text, begin)}'
                )
            if text[i] not in "'\"":
                token_begin = i
                while i < n and (text[i].isalnum() or text[i] in ".-"):
                    i += 1
                value = text[token_begin:i].lower()
                if i >= n or (text[i] not in _SPACES and text[i] != ">"):
                    raise EntityParseError(
                        f"Unexpected end of name token at byte offset {byte_offset(text, token_begin)}"
                    )
            else:
                quote = text[i]
                i += 1
                value_chars: list[str] = []
                while i < n and text[i] != quote:
                    if text[i] == "&":
                        decoded = _decode_entity(text, i)
                        if decoded is not None:
                            value_chars.append(decoded[0])
                            i = decoded[1]
                            continue
                    value_chars.append(text[i])
                    i += 1
                if i >= n:
                    raise EntityParseError(
                        f"Unclosed start tag at byte offset {byte_offset(text, begin)}"
                    )
                i += 1  # closing quote
                value = "".join(value_chars)
            if tag == "a" and attr_name == "href":
                argument = value
            elif tag == "code" and attr_name == "class" and value.startswith("language-"):
                argument = value[len("language-") :]
            elif tag == "span" and attr_name == "class" and value.startswith("tg-"):
                argument = value[len("tg-") :]
            elif tag == "tg-emoji" and attr_name == "emoji-id":
                argument = value
            elif tag == "blockquote" and attr_name == "expandable":
                argument = "expandable"
        i += 1  # past '>'
        if tag == "span" and argument != "spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {byte_offset(text, begin)}'
            )
        if tag == "tg-emoji" and not argument.isdigit():
            raise EntityParseError(
                f'Tag "tg-emoji" must have a valid "emoji-id" attribute at byte offset {byte_offset(text, begin)}'
            )
        stack.append((tag, argument, offset16, len(out), begin))

    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return "".join(out), sort_entities(entities)


def _close_html_entity(
    entities: list[Entity],
    tag: str,
    argument: str,
    offset: int,
    length: int,
    inner_text: str,
    resolve_user: UserResolver,
) -> None:
    """Append the entity produced by a closed tag (mirrors TDLib's switch on tag name)."""
    simple = _SIMPLE_TAG_TYPES.get(tag)
    if simple is not None:
        entities.append({"type": simple, "offset": offset, "length": length})
    elif tag == "a":
        url = argument or inner_text
        user_id = link_user_id(url)
        if user_id is not None:
            entities.append(
                {
                    "type": "text_mention",
                    "offset": offset,
                    "length": length,
                    "user": resolve_user(user_id),
                }
            )
        else:
            link = normalize_link(url)
            if link is not None:  # invalid links are dropped silently, like Telegram
                entities.append(
                    {"type": "text_link", "offset": offset, "length": length, "url": link}
                )
    elif tag == "pre":
        last = entities[-1] if entities else None
        if (
            last is not None
            and last["type"] == "code"
            and last["offset"] == offset
            and last["length"] == length
            and last.get("language")
        ):
            last["type"] = "pre"  # <pre><code class="language-x">...</code></pre>
        else:
            entities.append({"type": "pre", "offset": offset, "length": length})
    elif tag == "code":
        last = entities[-1] if entities else None
        if (
            last is not None
            and last["type"] == "pre"
            and last["offset"] == offset
            and last["length"] == length
            and argument
        ):
            last["language"] = argument
        else:
            entity: Entity = {"type": "code", "offset": offset, "length": length}
            if argument:
                # Kept only so an enclosing <pre> can pick it up; stripped in sort_entities.
                entity["language"] = argument
            entities.append(entity)
    elif tag == "blockquote":
        kind = "expandable_blockquote" if argument == "expandable" else "blockquote"
        entities.append({"type": kind, "offset": offset, "length": length})
    elif tag == "tg-emoji":
        entities.append(
            {
                "type": "custom_emoji",
                "offset": offset,
                "length": length,
                "custom_emoji_id": argument,
            }
        )


def sort_entities(entities: list[Entity]) -> list[Entity]:
    """Order entities like Telegram does (offset asc, longer first) and drop parser scratch."""
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))
