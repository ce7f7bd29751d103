"""``parse_mode="MarkdownV2"`` and legacy ``"Markdown"`` parsers.

Both follow TDLib's ``parse_markdown_v2`` / ``parse_markdown`` closely enough to
reproduce the errors bots hit most often in production, e.g.
``Character '.' is reserved and must be escaped with the preceding '\\'`` and
``Can't find end of Italic entity at byte offset 5``. Offsets are UTF-16.

Known simplifications: MarkdownV2 block quotes are supported for plain ``>``
lines (consecutive lines form one quote) and ``**>``-style expandable quotes
ending in ``||``; custom emoji ``![x](tg://emoji?id=...)`` is supported; the
rarely-relevant nesting restrictions of Telegram are not enforced.
"""

from __future__ import annotations

from .html_entities import (
    Entity,
    EntityParseError,
    UserResolver,
    _default_user,
    byte_offset,
    char_units,
    link_user_id,
    normalize_link,
    sort_entities,
)

_V2_RESERVED = "_*[]()~`>#+-=|{}.!"

# Names TDLib prints for unterminated entities ("Can't find end of Bold entity ...").
_V2_TYPE_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


def _reserved_error(ch: str) -> EntityParseError:
    return EntityParseError(
        f"Character '{ch}' is reserved and must be escaped with the preceding '\\'"
    )


def parse_markdown_v2(
    text: str, *, resolve_user: UserResolver | None = None
) -> tuple[str, list[Entity]]:
    """Parse MarkdownV2 into ``(plain_text, entities)`` or raise :class:`EntityParseError`."""
    resolve = resolve_user or _default_user
    out: list[str] = []
    offset16 = 0
    entities: list[Entity] = []
    # (type, argument, utf16 offset, python index of the opening marker, len(out) at open)
    stack: list[tuple[str, str, int, int, int]] = []
    n = len(text)
    i = 0
    # Block quote state: start offset of the current quote, whether expandable.
    quote_start: int | None = None
    quote_expandable = False

    def at_line_start(idx: int) -> bool:
        return idx == 0 or text[idx - 1] == "\n"

    while i < n:
        ch = text[i]

        # ---- block quotes: only meaningful at the start of a line
        if at_line_start(i) and not (stack and stack[-1][0] in ("code", "pre")):
            is_quote_line = ch == ">" or (text.startswith("**>", i))
            if is_quote_line:
                if quote_start is None:
                    quote_start = offset16
                    quote_expandable = text.startswith("**>", i)
                i += 3 if text.startswith("**>", i) else 1
                continue
            if quote_start is not None and i > 0:
                _close_quote(entities, quote_start, offset16, quote_expandable, out)
                quote_start = None

        if ch == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            out.append(text[i + 1])
            offset16 += 1
            i += 2
            continue

        in_code = bool(stack) and stack[-1][0] in ("code", "pre")
        reserved = "`" if in_code else _V2_RESERVED
        if ch not in reserved:
            out.append(ch)
            offset16 += char_units(ch)
            i += 1
            continue

        # Expandable quote terminator "||" at end of a quoted line.
        if (
            quote_start is not None
            and quote_expandable
            and text.startswith("||", i)
            and (i + 2 >= n or text[i + 2] == "\n")
            and not (stack and stack[-1][0] == "spoiler")
        ):
            _close_quote(entities, quote_start, offset16, True, out)
            quote_start = None
            i += 2
            continue

        top = stack[-1][0] if stack else None
        ends = False
        if top == "bold":
            ends = ch == "*"
        elif top == "italic":
            ends = ch == "_" and not text.startswith("__", i)
        elif top == "code":
            ends = ch == "`"
        elif top == "pre":
            ends = text.startswith("```", i)
        elif top in ("text_link", "custom_emoji"):
            ends = ch == "]"
        elif top == "underline":
            ends = text.startswith("__", i)
        elif top == "strikethrough":
            ends = ch == "~"
        elif top == "spoiler":
            ends = text.startswith("||", i)

        if not ends:
            start_idx = i
            argument = ""
            if ch == "_":
                if text.startswith("__", i):
                    kind = "underline"
                    i += 2
                else:
                    kind = "italic"
                    i += 1
            elif ch == "*":
                kind = "bold"
                i += 1
            elif ch == "~":
                kind = "strikethrough"
                i += 1
            elif ch == "|":
                if not text.startswith("||", i):
                    raise _reserved_error(ch)
                kind = "spoiler"
                i += 2
            elif ch == "[":
                kind = "text_link"
                i += 1
            elif ch == "!":
                if not text.startswith("![", i):
                    raise _reserved_error(ch)
                kind = "custom_emoji"
                i += 2
            elif ch == "`":
                if text.startswith("```", i):
                    kind = "pre"
                    i += 3
                    lang_end = i
                    while lang_end < n and text[lang_end] not in " \t\r\n`":
                        lang_end += 1
                    if lang_end != i and lang_end < n and text[lang_end] != "`":
                        argument = text[i:lang_end]
                        i = lang_end
                    # A single newline right after the opening fence is not content.
                    if i < n and text[i] in "\r\n":
                        if i + 1 < n and text[i + 1] in "\r\n" and text[i] != text[i + 1]:
                            i += 2
                        else:
                            i += 1
                else:
                    kind = "code"
                    i += 1
            else:
                raise _reserved_error(ch)
            stack.append((kind, argument, offset16, start_idx, len(out)))
            continue

        # ---- end of an entity
        kind, argument, start16, _start_idx, start_out = stack.pop()
        skip = offset16 == start16
        extra: dict[str, object] = {}
        if kind in ("bold", "italic", "code", "strikethrough"):
            i += 1
        elif kind in ("underline", "spoiler"):
            i += 2
        elif kind == "pre":
            i += 3
            if argument:
                extra["language"] = argument
        elif kind in ("text_link", "custom_emoji"):
            i += 1  # past ']'
            url_chars: list[str] = []
            if i < n and text[i] == "(":
                i += 1
                url_begin = i
                while i < n and text[i] != ")":
                    if text[i] == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
                        url_chars.append(text[i + 1])
                        i += 2
                        continue
                    url_chars.append(text[i])
                    i += 1
                if i >= n:
                    raise EntityParseError(
                        f"Can't find end of a URL at byte offset {byte_offset(text, url_begin)}"
                    )
                i += 1  # past ')'
                url = "".join(url_chars)
            else:
                url = "".join(out[start_out:])
            if kind == "custom_emoji":
                prefix = "tg://emoji?id="
                if not url.startswith(prefix) or not url[len(prefix) :].isdigit():
                    raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
                extra["custom_emoji_id"] = url[len(prefix) :]
            else:
                user_id = link_user_id(url)
                if user_id is not None:
                    kind = "text_mention"
                    extra["user"] = resolve(user_id)
                else:
                    link = normalize_link(url)
                    if link is None:
                        skip = True
                    else:
                        extra["url"] = link
        if not skip:
            entities.append(
                {"type": kind, "offset": start16, "length": offset16 - start16, **extra}
            )

    if stack:
        kind, _arg, _s16, start_idx, _o = stack[-1]
        raise EntityParseError(
            f"Can't find end of {_V2_TYPE_NAMES.get(kind, kind)} entity at byte offset {byte_offset(text, start_idx)}"
        )
    if quote_start is not None:
        _close_quote(entities, quote_start, offset16, quote_expandable, out)
    return "".join(out), sort_entities(entities)


def _close_quote(
    entities: list[Entity], start16: int, end16: int, expandable: bool, out: list[str]
) -> None:
    # The newline that ends the last quoted line is not part of the quote.
    length = end16 - start16
    if out and out[-1] == "\n" and length > 0:
        length -= 1
    if length > 0:
        entities.append(
            {
                "type": "expandable_blockquote" if expandable else "blockquote",
                "offset": start16,
                "length": length,
            }
        )


def parse_markdown(text: str) -> tuple[str, list[Entity]]:
    """Legacy ``Markdown`` (v1): ``*bold*``, ``_italic_``, `` `code` ``, ```` ```pre``` ````, ``[t](url)``."""
    out: list[str] = []
    offset16 = 0
    entities: list[Entity] = []
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.append(text[i + 1])
            offset16 += 1
            i += 2
            continue
        if ch not in "_*`[":
            out.append(ch)
            offset16 += char_units(ch)
            i += 1
            continue
        begin = i
        start16 = offset16
        if ch in "_*":
            end = text.find(ch, i + 1)
            if end == -1:
                raise EntityParseError(
                    f"Can't find end of the entity starting at byte offset {byte_offset(text, begin)}"
                )
            inner = text[i + 1 : end]
            out.append(inner)
            offset16 += sum(char_units(c) for c in inner)
            if inner:
                entities.append(
                    {
                        "type": "bold" if ch == "*" else "italic",
                        "offset": start16,
                        "length": offset16 - start16,
                    }
                )
            i = end + 1
        elif ch == "`":
            if text.startswith("```", i):
                end = text.find("```", i + 3)
                if end == -1:
                    raise EntityParseError(
                        f"Can't find end of the entity starting at byte offset {byte_offset(text, begin)}"
                    )
                inner = text[i + 3 : end]
                language = ""
                first_line, sep, rest = inner.partition("\n")
                if sep and first_line and " " not in first_line:
                    language, inner = first_line, rest
                out.append(inner)
                offset16 += sum(char_units(c) for c in inner)
                if inner:
                    entity: Entity = {
                        "type": "pre",
                        "offset": start16,
                        "length": offset16 - start16,
                    }
                    if language:
                        entity["language"] = language
                    entities.append(entity)
                i = end + 3
            else:
                end = text.find("`", i + 1)
                if end == -1:
                    raise EntityParseError(
                        f"Can't find end of the entity starting at byte offset {byte_offset(text, begin)}"
                    )
                inner = text[i + 1 : end]
                out.append(inner)
                offset16 += sum(char_units(c) for c in inner)
                if inner:
                    entities.append(
                        {"type": "code", "offset": start16, "length": offset16 - start16}
                    )
                i = end + 1
        else:  # '['
            end = text.find("]", i + 1)
            if end == -1:
                raise EntityParseError(
                    f"Can't find end of the entity starting at byte offset {byte_offset(text, begin)}"
                )
            inner = text[i + 1 : end]
            url = ""
            i = end + 1
            if i < n and text[i] == "(":
                close = text.find(")", i + 1)
                if close == -1:
                    raise EntityParseError(
                        f"Can't find end of the entity starting at byte offset {byte_offset(text, begin)}"
                    )
                url = text[i + 1 : close]
                i = close + 1
            out.append(inner)
            offset16 += sum(char_units(c) for c in inner)
            link = normalize_link(url or inner)
            if inner and link is not None:
                entities.append(
                    {
                        "type": "text_link",
                        "offset": start16,
                        "length": offset16 - start16,
                        "url": link,
                    }
                )
    return "".join(out), sort_entities(entities)
