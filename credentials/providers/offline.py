"""A provider with no network: deterministic, clearly labelled replies.

For the demo, tests and benchmarks, and for tasks with "use AI" off.
"""

import time

from credentials.providers.base import GenerationRequest, GenerationResult

LABEL = "[offline reply]"
QUOTE_LIMIT = 300


class OfflineProvider:
    name = "offline"

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        started = time.perf_counter()
        turn = request.message
        said, you = turn.text.strip(), "You"
        if turn.author and said.startswith(f"{turn.author}: "):
            # A group turn carries its sender's name: answer them by it.
            said, you = said[len(turn.author) + 2 :], f"{turn.author}, you"
        if len(said) > QUOTE_LIMIT:
            said = said[:QUOTE_LIMIT] + "…"
        text = f"{LABEL} {you} said: {said}" if said else f"{LABEL} I got your message."
        return GenerationResult(
            text=text,
            model="offline",
            latency_ms=int((time.perf_counter() - started) * 1000),
            tokens_in=len(request.message.text.split()),
            tokens_out=len(text.split()),
            finish_reason="STOP",
        )
