"""Contract tests of the Gemini emulator: what Botfleet's product code, its tests and its
benchmarks rely on, driven through the real google-genai client as the product builds it
(async, one attempt, timeouts in milliseconds). One emulator per module, reset per test.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types

from emulators.gemini import FaultKind, GeminiEmulator, GeminiEmulatorClient

pytestmark = pytest.mark.timeout(20)

GOOD_KEY = "test-gemini-key"
MODEL = "gemini-2.5-flash"
IMAGE = b"\xff\xd8\xff\xe0" + bytes(range(200))


@pytest.fixture(scope="module")
def emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator(valid_keys={GOOD_KEY}) as emu:
        yield emu


@pytest.fixture(autouse=True)
def fresh(emulator: GeminiEmulator) -> None:
    emulator.reset()


def make_client(base_url: str, key: str = GOOD_KEY, timeout_ms: int | None = None) -> genai.Client:
    """Built like credentials/providers/gemini.py builds it. Keep it referenced while in use:
    a garbage-collected Client closes its connections."""
    options = types.HttpOptions(
        base_url=base_url, timeout=timeout_ms, retry_options=types.HttpRetryOptions(attempts=1)
    )
    return genai.Client(api_key=key, http_options=options)


def ask(
    emulator: GeminiEmulator, contents: Any = "hello", *, model: str = MODEL, key: str = GOOD_KEY,
    config: types.GenerateContentConfig | None = None, timeout_ms: int | None = None,
) -> types.GenerateContentResponse:
    client = make_client(emulator.base_url, key, timeout_ms)
    return asyncio.run(client.aio.models.generate_content(model=model, contents=contents, config=config))


async def stream(client: genai.Client, text: str, received: list[tuple[float, Any]]) -> None:
    """Appends (arrival time, chunk) for each chunk of one streamed answer."""
    started = time.monotonic()
    async for chunk in await client.aio.models.generate_content_stream(model=MODEL, contents=text):
        received.append((time.monotonic() - started, chunk))


def test_it_records_the_request_and_answers_with_text_usage_and_finish_reason(emulator: GeminiEmulator) -> None:
    history = [
        types.Content(role="user", parts=[types.Part(text="Hi, I am Ann.")]),
        types.Content(role="model", parts=[types.Part(text="Hello Ann!")]),
        types.Content(role="user", parts=[types.Part(text="What is my name?")]),
    ]
    config = types.GenerateContentConfig(system_instruction="Be polite.", temperature=0.3, max_output_tokens=256)

    response = ask(emulator, history, config=config)

    assert response.text == f"[gemini-emulator:{MODEL}] You said: What is my name?"
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage.prompt_token_count > 0 and usage.candidates_token_count > 0
    [rec] = emulator.requests()
    assert (rec.model, rec.api_key, rec.action, rec.status) == (MODEL, GOOD_KEY, "generateContent", 200)
    assert rec.system_instruction == "Be polite."
    assert [(t.role, t.text) for t in rec.contents] == [
        ("user", "Hi, I am Ann."), ("model", "Hello Ann!"), ("user", "What is my name?"),
    ]
    assert rec.generation_config == {"temperature": 0.3, "maxOutputTokens": 256}


def test_it_answers_with_scripted_replies_then_the_default(emulator: GeminiEmulator) -> None:
    emulator.script_replies(["first", "second"])

    texts = [ask(emulator, "q").text for _ in range(3)]

    assert texts == ["first", "second", f"[gemini-emulator:{MODEL}] You said: q"]


def test_it_records_inline_media_beside_the_caption_and_names_it_in_the_default_reply(
    emulator: GeminiEmulator,
) -> None:
    image = types.Part.from_bytes(data=IMAGE, mime_type="image/jpeg")
    content = types.Content(role="user", parts=[image, types.Part(text="What is on this photo?")])

    response = ask(emulator, [content])

    asked = emulator.requests()[0].contents[-1]
    assert (asked.text, list(asked.media)) == ("What is on this photo?", [("image/jpeg", len(IMAGE))])
    assert response.text.endswith(f"You said: What is on this photo? [received image/jpeg, {len(IMAGE)} bytes]")


def test_it_rejects_a_key_not_in_the_valid_set_with_400_api_key_invalid_until_reset(
    emulator: GeminiEmulator,
) -> None:
    emulator.set_valid_keys(["another-key"])

    with pytest.raises(errors.ClientError) as caught:
        ask(emulator)
    assert ask(emulator, key="another-key").text
    emulator.reset()  # back to the keys it was built with

    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert ask(emulator).text
    with pytest.raises(errors.ClientError):
        ask(emulator, key="another-key")


def test_it_answers_an_unknown_model_with_404(emulator: GeminiEmulator) -> None:
    with pytest.raises(errors.ClientError) as caught:
        ask(emulator, model="gemini-0.1-nope")

    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")


def test_it_rate_limits_with_a_retry_after_header_and_retry_info(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.RATE_LIMIT, retry_after=3)

    with pytest.raises(errors.ClientError) as caught:
        ask(emulator)

    assert caught.value.code == 429
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.details["error"]["details"][-1]["retryDelay"] == "3s"
    assert ask(emulator).text  # one fault, used once


@pytest.mark.parametrize(
    ("kind", "code"),
    [("internal", 500), ("unavailable", 503), ("permission_denied", 403), ("invalid_argument", 400)],
)
def test_an_error_fault_answers_its_status_with_the_given_message(
    emulator: GeminiEmulator, kind: str, code: int
) -> None:
    emulator.add_fault(kind, message="proxy says no", times=None)

    for _ in range(2):  # times=None: never runs out
        with pytest.raises(errors.APIError) as caught:
            ask(emulator)
        assert (caught.value.code, caught.value.message) == (code, "proxy says no")

    assert [(r.status, r.fault) for r in emulator.requests()] == [(code, kind)] * 2


@pytest.mark.parametrize("kind", ["html_body", "invalid_json"])
def test_it_can_answer_200_with_a_body_the_client_cannot_parse(emulator: GeminiEmulator, kind: str) -> None:
    emulator.add_fault(kind)

    with pytest.raises(ValueError):  # json.JSONDecodeError
        ask(emulator)


def test_it_blocks_a_prompt_with_200_and_no_candidates(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.PROMPT_BLOCKED)

    response = ask(emulator)

    assert (response.text, response.candidates) == (None, None)
    assert response.prompt_feedback.block_reason == types.BlockedReason.SAFETY


def test_it_answers_empty_text_and_negative_usage(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.EMPTY_TEXT)
    emulator.add_fault(FaultKind.NEGATIVE_USAGE)

    empty, negative = ask(emulator), ask(emulator)  # faults are used in the order added

    assert (empty.text, empty.candidates[0].finish_reason) == ("", types.FinishReason.STOP)
    usage = negative.usage_metadata
    assert negative.text and (usage.prompt_token_count, usage.candidates_token_count) == (-1, -1)


def test_a_slow_answer_outlasts_the_clients_timeout(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.SLOW, delay=2)

    started = time.monotonic()
    with pytest.raises(TimeoutError):  # the async client's aiohttp time-out
        ask(emulator, timeout_ms=300)

    assert time.monotonic() - started < 1.5


def test_latency_delays_concurrent_answers_in_parallel(emulator: GeminiEmulator) -> None:
    emulator.set_latency(0.5)
    client = make_client(emulator.base_url)

    async def burst() -> list[types.GenerateContentResponse]:
        return await asyncio.gather(*(client.aio.models.generate_content(model=MODEL, contents=f"m{i}") for i in range(10)))

    started = time.monotonic()
    responses = asyncio.run(burst())

    assert len(responses) == 10
    assert 0.5 <= time.monotonic() - started < 3.0  # one at a time would take 5 s


def test_it_streams_the_reply_in_chunks_with_the_configured_timing(emulator: GeminiEmulator) -> None:
    emulator.set_stream_timing(first_chunk_delay=0.3, chunk_delay=0.2, chunks=3)
    emulator.script_replies(["one two three four five six"])
    received: list[tuple[float, Any]] = []

    asyncio.run(stream(make_client(emulator.base_url), "tell me", received))

    arrivals, chunks = zip(*received, strict=True)
    assert len(chunks) == 3 and arrivals[0] >= 0.25
    assert all(later - earlier >= 0.15 for earlier, later in itertools.pairwise(arrivals))
    assert "".join(c.text for c in chunks) == "one two three four five six"
    assert [c.candidates[0].finish_reason for c in chunks] == [None, None, types.FinishReason.STOP]
    assert chunks[-1].usage_metadata.candidates_token_count > 0
    assert emulator.requests()[0].action == "streamGenerateContent"


@pytest.mark.parametrize(
    ("kind", "after_chunks", "raised"),
    [
        (FaultKind.STREAM_BREAK, 2, aiohttp.ClientPayloadError),  # the connection cut halfway
        (FaultKind.STREAM_ERROR, 1, errors.ServerError),  # an error event halfway
        (FaultKind.RATE_LIMIT, None, errors.ClientError),  # refused before the stream starts
    ],
)
def test_a_stream_fails_after_the_given_number_of_chunks(
    emulator: GeminiEmulator, kind: FaultKind, after_chunks: int | None, raised: type[Exception]
) -> None:
    emulator.set_stream_timing(first_chunk_delay=0, chunk_delay=0, chunks=4)
    emulator.add_fault(kind, **({"after_chunks": after_chunks} if after_chunks else {}))
    received: list[tuple[float, Any]] = []

    with pytest.raises(raised):
        asyncio.run(stream(make_client(emulator.base_url), "a b c d", received))

    assert len(received) == (after_chunks or 0)
    assert emulator.requests()[0].fault == kind.value


def test_it_runs_standalone_and_is_controlled_over_http_as_the_benchmarks_do() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators.gemini", "--host", "127.0.0.1", "--port", "0", "--latency", "0.2"],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        while not (found := re.search(r"Running on (http://[\w.:\[\]-]+)", proc.stderr.readline())):
            assert proc.poll() is None, "the emulator exited"
        url = found.group(1)
        with GeminiEmulatorClient(url, timeout=5) as control:
            control.set_stream_timing(first_chunk_delay=0, chunk_delay=0, chunks=2)
            client = make_client(url, key="any key will do")
            asyncio.run(stream(client, "streamed", []))
            asyncio.run(client.aio.models.generate_content(model=MODEL, contents="whole"))
            waited = control.wait_for_requests(2, timeout=5)
            recorded = sorted(control.requests(), key=lambda r: r.seq)
            busiest, per_minute = control.max_requests_in_window(60.0), control.requests_per_minute()
            control.clear_requests()
            cleared = control.requests()
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        proc.stderr.close()

    assert len(waited) == 2
    assert [(r.action, r.status, r.last_user_text) for r in recorded] == [
        ("streamGenerateContent", 200, "streamed"), ("generateContent", 200, "whole"),
    ]
    assert recorded[1].time - recorded[0].time >= 0.2  # --latency
    assert busiest == sum(per_minute.values()) == 2
    assert cleared == []
