"""What the workers and beat complained about: warnings, errors and tracebacks, with
the most frequent messages (digits masked so the same complaint about different bots
counts once)."""

import re
from collections import Counter

# Our format ("2025-01-01 12:00:00,123 WARNING bots.polling: ...") and Celery's own
# ("[2025-01-01 12:00:00,123: WARNING/MainProcess] ..."); never the start-up banner.
_LEVEL = re.compile(
    r"^(?:\d{4}-\d\d-\d\d [\d:,]+ (WARNING|ERROR|CRITICAL) [\w.]+: (.*)"
    r"|\[[^\]]*: (WARNING|ERROR|CRITICAL)/[^\]]*\] (.*))"
)


def log_summary(texts: list[str], *, top: int = 5) -> dict[str, object]:
    counts: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    tracebacks = 0
    for text in texts:
        for line in text.splitlines():
            if line.startswith("Traceback"):
                tracebacks += 1
            match = _LEVEL.match(line)
            if match:
                level, message = match.group(1) or match.group(3), match.group(2) or match.group(4)
                counts[level] += 1
                messages[_normalised(message)] += 1
    return {
        "warnings": counts["WARNING"],
        "errors": counts["ERROR"] + counts["CRITICAL"],
        "tracebacks": tracebacks,
        "top": dict(messages.most_common(top)),
    }


def _normalised(message: str) -> str:
    return re.sub(r"\d+", "#", message.strip())[:140]
