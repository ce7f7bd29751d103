"""Keep secrets out of every log record.

python-telegram-bot's InvalidToken message contains the full token and httpx logs
request URLs (which contain the token). A filter on our own handlers would miss
handlers others add (pytest's capture, Celery's), so redaction happens where every
record is born: the log record factory.
"""

import logging
import re
import threading

# A Telegram bot token is "<bot id>:<35 url-safe chars>"; Google API keys start "AIza".
SECRET_PATTERNS = [
    re.compile(r"(?<!\d)\d{5,}:[A-Za-z0-9_-]{30,}"),  # also inside ".../bot<token>/..."
    re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
]
REDACTED = "[REDACTED]"
MIN_REGISTERED_LENGTH = 8  # shorter values would redact ordinary words

_installed = False
_lock = threading.Lock()
_known_secrets: set[str] = set()
_known_pattern: re.Pattern[str] | None = None
_known_pattern_stale = False


def register_secret(value: str) -> None:
    """Redact this exact value too: keys of custom providers match no pattern.

    Called on every decryption, so it must be cheap: values the patterns already
    catch (every bot token) are not kept, and the combined pattern is rebuilt lazily,
    once per change, not once per call (a thousand bots would make that quadratic).
    """
    global _known_pattern_stale
    if len(value) < MIN_REGISTERED_LENGTH or value in _known_secrets:
        return
    if any(pattern.fullmatch(value) for pattern in SECRET_PATTERNS):
        return
    with _lock:
        _known_secrets.add(value)
        _known_pattern_stale = True


def _known_secrets_pattern() -> re.Pattern[str] | None:
    global _known_pattern, _known_pattern_stale
    if _known_pattern_stale:
        with _lock:
            # Longest first, so a secret that contains another is replaced whole.
            alternatives = sorted(_known_secrets, key=len, reverse=True)
            _known_pattern = re.compile("|".join(re.escape(v) for v in alternatives))
            _known_pattern_stale = False
    return _known_pattern


def redact(text: str) -> str:
    known = _known_secrets_pattern()
    if known is not None:
        text = known.sub(REDACTED, text)
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def install_log_redaction() -> None:
    global _installed
    if _installed:
        return
    previous_factory = logging.getLogRecordFactory()

    def redacting_factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous_factory(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(redacting_factory)
    _installed = True


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed record is logging's problem to report, not ours
        return
    record.msg, record.args = redact(message), None
    if record.exc_info and record.exc_info[1] is not None:
        # Format the traceback now, redacted; formatters reuse exc_text when it is set.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
