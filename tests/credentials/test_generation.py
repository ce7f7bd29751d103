"""One AI reply through credentials.generation, against the Gemini and OpenAI-compatible
emulators: what comes back, how failures read, retries, the circuit, the rate limit,
and that many calls wait side by side on the process's I/O loop."""

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core import aio
from credentials.generation import text_generate, text_generate_async
from credentials.models import AICredential
from credentials.providers import ChatTurn, GenerationRequest, GenerationResult, ProviderError
from emulators.gemini import GeminiEmulator
from emulators.openai_compat import OpenAICompatEmulator
from tests.conftest import GEMINI_TEST_KEY, OPENAI_TEST_KEY
from tests.support.timing import most_in_flight

# The usage counters are written on a worker thread of the I/O loop: it must see (and
# leave) committed rows.
pytestmark = pytest.mark.django_db(transaction=True)

REQUEST = GenerationRequest(instructions="Be brief.", message=ChatTurn(role="user", text="hi"))


@dataclass
class AI:
    """One emulated provider and a credential pointing at it."""

    emulator: GeminiEmulator | OpenAICompatEmulator
    credential: AICredential
    key: str

    def generate(self) -> GenerationResult:
        return aio.run(text_generate_async(credential=self.credential, request=REQUEST), timeout=60)

    def failure(self) -> ProviderError:
        with pytest.raises(ProviderError) as caught:
            self.generate()
        return caught.value

    def stored(self) -> AICredential:
        return AICredential.objects.get(pk=self.credential.pk)


@pytest.fixture(scope="module")
def openai_api() -> Iterator[OpenAICompatEmulator]:
    with OpenAICompatEmulator(valid_keys=[OPENAI_TEST_KEY]) as emulator:
        yield emulator


@pytest.fixture
def openai_credential(openai_api: OpenAICompatEmulator) -> AICredential:
    openai_api.reset()
    return AICredential.objects.create(
        name="Local LLM (emulated)", provider=AICredential.Provider.OPENAI_COMPATIBLE,
        api_key=OPENAI_TEST_KEY, base_url=openai_api.base_url, model="llama3", requests_per_minute=1000,
    )


@pytest.fixture(params=["gemini", "openai"])
def ai(request: pytest.FixtureRequest) -> AI:
    if request.param == "gemini":
        return AI(request.getfixturevalue("gemini_api"), request.getfixturevalue("gemini_credential"), GEMINI_TEST_KEY)
    return AI(request.getfixturevalue("openai_api"), request.getfixturevalue("openai_credential"), OPENAI_TEST_KEY)


def test_it_returns_the_reply_and_counts_the_request(ai: AI) -> None:
    ai.emulator.script_replies(["Hello there."])

    result = ai.generate()

    assert result.text == "Hello there."
    assert result.finish_reason == "STOP" and result.tokens_in and result.tokens_out
    assert ai.emulator.requests()[0].api_key == ai.key
    stored = ai.stored()
    assert (stored.requests_total, stored.failures_total, stored.last_error) == (1, 0, "")


def test_the_sync_wrapper_returns_the_same_reply(gemini_api: GeminiEmulator, gemini_credential: AICredential) -> None:
    gemini_api.script_replies(["From a sync caller."])

    result = text_generate(credential=gemini_credential, request=REQUEST)

    assert result.text == "From a sync caller."


def test_a_bad_key_is_bad_key_and_the_key_is_in_no_message(ai: AI) -> None:
    ai.emulator.set_valid_keys(["some-other-key-that-is-valid-0000"])

    failure = ai.failure()

    assert failure.kind == ProviderError.BAD_KEY
    assert ai.key not in str(failure)
    assert len(ai.emulator.requests()) == 1  # a bad key is not retried
    stored = ai.stored()
    assert (stored.requests_total, stored.failures_total) == (1, 1)
    assert stored.last_error == str(failure)


def test_a_429_is_retried_after_its_retry_after(ai: AI) -> None:
    # 2 s: longer than the first back-off could be (0.5 s + up to 0.5 s of jitter).
    ai.emulator.add_fault("rate_limit", retry_after=2)
    ai.emulator.script_replies(["Second time lucky."])

    result = ai.generate()

    first, second = ai.emulator.requests()
    assert (first.status, second.status) == (429, 200)
    assert second.monotonic - first.monotonic >= 1.9
    assert result.text == "Second time lucky."
    assert ai.stored().failures_total == 0


def test_a_5xx_is_retried_and_then_succeeds(ai: AI) -> None:
    ai.emulator.add_fault("unavailable")
    ai.emulator.script_replies(["Back again."])

    result = ai.generate()

    assert [r.status for r in ai.emulator.requests()] == [503, 200]
    assert result.text == "Back again."


def test_the_circuit_opens_after_repeated_failures_and_then_fails_fast(ai: AI, settings: Any) -> None:
    settings.AI_CIRCUIT_FAILURES, settings.AI_MAX_ATTEMPTS = 3, 1
    ai.emulator.add_fault("internal", times=None)

    kinds = [ai.failure().kind for _ in range(3)]
    skipped = ai.failure()

    assert kinds == [ProviderError.SERVER] * 3
    assert skipped.kind == ProviderError.CIRCUIT_OPEN and "Skipped the AI" in str(skipped)
    assert len(ai.emulator.requests()) == 3  # the fourth call never reached the provider


def test_the_per_minute_limit_refuses_with_rate_limited(ai: AI, settings: Any) -> None:
    settings.AI_RATE_LIMIT_MAX_WAIT = 0.2
    AICredential.objects.filter(pk=ai.credential.pk).update(requests_per_minute=2)
    ai.credential.refresh_from_db()

    ai.generate()
    ai.generate()
    failure = ai.failure()

    assert failure.kind == ProviderError.RATE_LIMITED
    assert "limit of 2 requests per minute" in str(failure)
    assert len(ai.emulator.requests()) == 2


@pytest.mark.parametrize("fault", ["html_body", "invalid_json"])
def test_a_gemini_answer_that_is_not_a_response_is_a_server_error(
    gemini_api: GeminiEmulator, gemini_credential: AICredential, settings: Any, fault: str
) -> None:
    settings.AI_MAX_ATTEMPTS = 1
    gemini_api.add_fault(fault, times=None)

    with pytest.raises(ProviderError) as caught:
        aio.run(text_generate_async(credential=gemini_credential, request=REQUEST))

    assert caught.value.kind == ProviderError.SERVER
    assert str(caught.value) == "Gemini sent an answer that could not be read (JSONDecodeError)."
    assert AICredential.objects.get(pk=gemini_credential.pk).failures_total == 1


@contextmanager
def fixed_answer_server(body: bytes, content_type: str) -> Iterator[str]:
    """A loopback server answering every request 200 with `body` (a proxy's login page,
    say): the OpenAI-compatible emulator has no such fault. Yields an API base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"<html><body>Sign in to continue</body></html>", "text/html",
         "The provider sent an answer that is not a chat completion (not JSON)."),
        (b'{"choices": [{"message": {"content": "Hel', "application/json",
         "The provider sent an answer that could not be read (JSONDecodeError)."),
    ],
)
def test_an_openai_answer_that_is_not_a_completion_is_a_server_error(
    settings: Any, body: bytes, content_type: str, message: str
) -> None:
    settings.AI_MAX_ATTEMPTS = 1
    with fixed_answer_server(body, content_type) as base_url:
        credential = AICredential.objects.create(
            name="Behind a proxy", provider=AICredential.Provider.OPENAI_COMPATIBLE,
            api_key=OPENAI_TEST_KEY, base_url=base_url, model="llama3",
        )
        with pytest.raises(ProviderError) as caught:
            aio.run(text_generate_async(credential=credential, request=REQUEST))

    assert caught.value.kind == ProviderError.SERVER
    assert str(caught.value) == message


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_refused_connection_is_unreachable_at_once(gemini_credential: AICredential, settings: Any) -> None:
    settings.AI_MAX_ATTEMPTS = 1
    AICredential.objects.filter(pk=gemini_credential.pk).update(base_url=f"http://127.0.0.1:{_closed_port()}")
    gemini_credential.refresh_from_db()

    with pytest.raises(ProviderError) as caught:
        # Within 1 s: the SDK's own hidden retry of a refused connection sleeps 1-10 s first.
        aio.run(text_generate_async(credential=gemini_credential, request=REQUEST), timeout=1)

    assert caught.value.kind == ProviderError.UNREACHABLE
    assert str(caught.value).startswith("Could not reach Gemini (ClientConnectorError): ")
    assert "Connect call failed" in str(caught.value)


def test_a_gemini_time_out_is_unreachable(
    gemini_api: GeminiEmulator, gemini_credential: AICredential, settings: Any
) -> None:
    settings.AI_MAX_ATTEMPTS, settings.AI_REQUEST_TIMEOUT = 1, 0.5
    gemini_api.add_fault("slow", delay=3)

    with pytest.raises(ProviderError) as caught:
        aio.run(text_generate_async(credential=gemini_credential, request=REQUEST))

    assert caught.value.kind == ProviderError.UNREACHABLE
    assert str(caught.value) == "Could not reach Gemini (TimeoutError): no answer within 0.5 s"


def test_twenty_calls_on_the_io_loop_are_in_flight_together(
    gemini_api: GeminiEmulator, gemini_credential: AICredential
) -> None:
    gemini_api.set_latency(1.0)

    async def twenty() -> list[GenerationResult]:
        calls = [text_generate_async(credential=gemini_credential, request=REQUEST) for _ in range(20)]
        return await asyncio.gather(*calls)

    try:
        results = aio.run(twenty(), timeout=60)
    finally:
        gemini_api.set_latency(0)

    recorded = gemini_api.requests()
    assert len(results) == 20 and all(r.text for r in results)
    spans = [(r.monotonic, r.finished_monotonic) for r in recorded if r.finished_monotonic is not None]
    assert len(spans) == 20
    assert most_in_flight(spans) >= 15
    assert AICredential.objects.get(pk=gemini_credential.pk).requests_total == 20


def test_aio_run_refuses_to_wait_on_the_loops_own_thread(gemini_credential: AICredential) -> None:
    async def nested() -> GenerationResult:
        return text_generate(credential=gemini_credential, request=REQUEST)  # a deadlock if allowed

    with pytest.raises(RuntimeError, match="own thread"):
        aio.run(nested(), timeout=5)
