"""A provider with no network: deterministic, clearly labelled replies.

For the demo, tests and benchmarks, and for tasks with "use AI" off.
"""

import time

from credentials.providers.base import GenerationRequest, GenerationResult

LABEL = "[offline reply]"
QUOTE_LIMIT = 300


class OfflineProvider:
    name = "offline"

    def generate(self, request: GenerationRequest) -> GenerationResult:
        started = time.perf_counter()
        said = request.message.text.strip()
        if len(said) > QUOTE_LIMIT:
            said = said[:QUOTE_LIMIT] + "…"
        text = f"{LABEL} You said: {said}" if said else f"{LABEL} I got your message."
        return GenerationResult(
            text=text,
            model="offline",
            latency_ms=int((time.perf_counter() - started) * 1000),
            tokens_in=len(request.message.text.split()),
            tokens_out=len(text.split()),
            finish_reason="STOP",
        )
