"""Telegram's URL check for ``text_link`` entities given explicitly (``entities=[...]``).

A port of TDLib's ``parse_url`` (tdutils/td/utils/HttpUrl.cpp) and
``LinkManager::check_link_impl``: the code the real Bot API runs on every
``text_link`` URL a bot sends. A rejected URL fails the whole request with
``Bad Request: entity URL '<url>' is invalid: <reason>``, for example
``javascript:alert(1)`` -> "Wrong port number specified in the URL" (TDLib reads
``javascript`` as a host and ``alert(1)`` as its port), ``docs/readme.md`` ->
"Wrong HTTP URL" (a host without a dot), ``ftp://host.org`` -> "Unsupported URL
protocol". An accepted URL is stored normalised (``https://example.com`` becomes
``https://example.com/``), as Telegram echoes it back.

Markup links (``<a href>``, Markdown ``[t](url)``) take another path in TDLib: an
invalid one is dropped silently, see :func:`.html_entities.normalize_link`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_HOST_SYMBOLS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_!$,~*'();&+=")
_HEX = frozenset("0123456789abcdef")
_PORT = re.compile(r"[0-9]+")
_TD_SPACES = " \t\r\n\0\v"  # td::is_space


class LinkError(ValueError):
    """A URL TDLib rejects; ``reason`` is its wording ("Wrong HTTP URL", ...)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class HttpUrl:
    protocol: str  # "http" or "https"
    userinfo: str
    host: str
    is_ipv6: bool
    specified_port: int
    query: str  # always starts with "/"

    def get_url(self) -> str:
        userinfo = f"{self.userinfo}@" if self.userinfo else ""
        port = f":{self.specified_port}" if self.specified_port > 0 else ""
        return f"{self.protocol}://{userinfo}{self.host}{port}{self.query}"


def _ascii_lower(text: str) -> str:
    # td::to_lower only touches ASCII letters.
    return "".join(ch.lower() if ch.isascii() else ch for ch in text)


def _find_any(text: str, symbols: str, start: int = 0) -> int:
    """Index of the first of ``symbols`` at or after ``start`` (``len(text)`` if none)."""
    for index in range(start, len(text)):
        if text[index] in symbols:
            return index
    return len(text)


def parse_url(url: str) -> HttpUrl:
    """``[https?://][userinfo@]host[:port][/query]``, with TDLib's checks and messages."""
    scheme_end = _find_any(url, ":/?#@[]")
    if url.startswith("://", scheme_end):
        scheme = _ascii_lower(url[:scheme_end])
        if scheme not in ("http", "https"):
            raise LinkError("Unsupported URL protocol")
        protocol, position = scheme, scheme_end + 3
    else:
        protocol, position = "http", 0
    authority_end = _find_any(url, "/?#", position)
    authority = url[position:authority_end]

    # The port is after the last ':' that is not inside "[ipv6]" or before '@'.
    colon = len(authority) - 1
    while colon > 0 and authority[colon] not in ":]@":
        colon -= 1
    port = 0
    userinfo_host = authority
    if colon > 0 and authority[colon] == ":":
        digits = authority[colon + 1 :].lstrip("0") or "0"
        port = int(digits) if _PORT.fullmatch(digits) and int(digits) != 0 else -1
        userinfo_host = authority[:colon]
    if port < 0 or port > 65535:
        raise LinkError("Wrong port number specified in the URL")

    userinfo, _at, host = userinfo_host.rpartition("@")
    is_ipv6 = host.startswith("[") and host.endswith("]") and len(host) >= 2
    if is_ipv6:
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise LinkError("Wrong IPv6 address specified in the URL") from None
    if not host:
        raise LinkError("URL host is empty")
    if host == ".":
        raise LinkError("Host is invalid")

    query = url[authority_end:].rstrip(_TD_SPACES) or "/"
    query = ("" if query.startswith("/") else "/") + "".join(
        f"%{ord(ch):02X}" if ord(ch) <= 0x20 else ch for ch in query
    )
    host = _ascii_lower(host)
    _check_host(host, is_ipv6)
    return HttpUrl(protocol, userinfo, host, is_ipv6, port, query)


def _check_host(host: str, is_ipv6: bool) -> None:
    index = 0
    while index < len(host):
        ch = host[index]
        if is_ipv6:
            if index in (0, len(host) - 1) or ch in _HEX or ch in ":.":
                index += 1
                continue
            raise LinkError("Wrong IPv6 URL host")
        if ch in _HOST_SYMBOLS or not ch.isascii():  # plain UTF-8 symbols are allowed
            index += 1
            continue
        if ch != "%":
            raise LinkError("Wrong URL host")
        # A slice past the end is "", which is not a hex digit either.
        if host[index + 1 : index + 2] not in _HEX or host[index + 2 : index + 3] not in _HEX:
            raise LinkError("Wrong percent-encoded symbol in URL host")
        index += 3


def check_link(link: str) -> str:
    """The URL Telegram stores for a ``text_link``, or :class:`LinkError` if it refuses it."""
    scheme = ""
    for prefix in ("tg:", "ton:", "tonsite:"):
        if _ascii_lower(link[: len(prefix)]) == prefix:
            scheme, link = prefix[:-1], link[len(prefix) :]
            break
    if scheme and link.startswith("//"):
        link = link[2:]
    url = parse_url(link)
    if scheme:
        if (
            _ascii_lower(link[:7]) == "http://"
            or url.protocol == "https"
            or url.userinfo
            or url.specified_port
            or url.is_ipv6
        ):
            raise LinkError("Wrong tg URL" if scheme == "tg" else "Wrong ton URL")
        query = url.query[1:] if url.query.startswith("/?") else url.query
        for ch in url.host:
            allowed = (
                (ch.isascii() and ch.isalnum()) or ch in "-_" or (scheme == "tonsite" and ch == ".")
            )
            if not allowed:
                raise LinkError("Unallowed characters in URL host")
        return f"{scheme}://{url.host}{query}"
    if "." not in url.host and not url.is_ipv6:
        raise LinkError("Wrong HTTP URL")
    return url.get_url()


def describe_link_error(url: str, error: LinkError) -> str:
    """The Bot API reason for a refused ``text_link`` URL (after "Bad Request: ")."""
    return f"entity URL '{url}' is invalid: {error.reason}"
