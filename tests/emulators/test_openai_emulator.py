"""Contract tests of the OpenAI-compatible emulator: what Botfleet's product code and its
tests rely on, driven through the real ``openai`` client with its retries off, as the
product builds it. One emulator per module, reset per test.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from emulators.openai_compat import FaultKind, OpenAICompatEmulator

pytestmark = pytest.mark.timeout(20)

GOOD_KEY = "sk-test-openai-key"
MODEL = "llama3"  # a local server's model: accepted without configuring any
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(100))


@pytest.fixture(scope="module")
def emulator() -> Iterator[OpenAICompatEmulator]:
    with OpenAICompatEmulator(valid_keys={GOOD_KEY}) as emu:
        yield emu


@pytest.fixture(autouse=True)
def fresh(emulator: OpenAICompatEmulator) -> None:
    emulator.reset()


def ask(
    emulator: OpenAICompatEmulator, text: str = "hello", *, key: str = GOOD_KEY, model: str = MODEL,
    timeout: float = 5.0,
) -> ChatCompletion:
    client = openai.OpenAI(api_key=key, base_url=emulator.base_url, max_retries=0, timeout=timeout)
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])


async def stream(
    emulator: OpenAICompatEmulator, text: str, received: list[tuple[float, ChatCompletionChunk]]
) -> None:
    """Appends (arrival time, chunk) for each chunk of one streamed answer, asked as the product asks."""
    client = openai.AsyncOpenAI(api_key=GOOD_KEY, base_url=emulator.base_url, max_retries=0)
    started = time.monotonic()
    try:
        chunks = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": text}],
            stream=True, stream_options={"include_usage": True},
        )
        async for chunk in chunks:
            received.append((time.monotonic() - started, chunk))
    finally:
        await client.close()


def test_it_records_the_request_and_answers_with_text_usage_and_finish_reason(
    emulator: OpenAICompatEmulator,
) -> None:
    client = openai.OpenAI(api_key=GOOD_KEY, base_url=emulator.base_url, max_retries=0)
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Name a colour."},
        ],
        temperature=0.2, max_tokens=64,
    )

    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == (
        f"[openai-emulator:{MODEL}] You said: Name a colour.", "stop",
    )
    assert completion.model == MODEL
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    [rec] = emulator.requests()
    assert (rec.model, rec.api_key, rec.status, rec.stream) == (MODEL, GOOD_KEY, 200, False)
    assert [(m.role, m.content) for m in rec.messages] == [
        ("system", "You are terse."), ("user", "Hi"), ("assistant", "Hello."), ("user", "Name a colour."),
    ]
    assert (rec.temperature, rec.max_tokens) == (0.2, 64)


def test_it_answers_with_scripted_replies_then_the_default(emulator: OpenAICompatEmulator) -> None:
    emulator.script_replies(["first", "second"])

    texts = [ask(emulator, "q").choices[0].message.content for _ in range(3)]

    assert texts == ["first", "second", f"[openai-emulator:{MODEL}] You said: q"]


def test_it_records_an_inline_image_beside_the_caption(emulator: OpenAICompatEmulator) -> None:
    data_url = f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
    content = [{"type": "image_url", "image_url": {"url": data_url}}, {"type": "text", "text": "What is it?"}]
    client = openai.OpenAI(api_key=GOOD_KEY, base_url=emulator.base_url, max_retries=0)

    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])

    asked = emulator.requests()[0].messages[-1]
    assert (asked.content, list(asked.media)) == ("What is it?", [("image/png", len(PNG))])


def test_it_rejects_a_wrong_key_with_401_and_takes_any_key_without_a_valid_set(
    emulator: OpenAICompatEmulator,
) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(emulator, key="sk-wrong")
    emulator.set_valid_keys(None)

    assert caught.value.status_code == 401
    assert ask(emulator, key="none").choices[0].message.content  # what the product sends without a key


def test_it_answers_an_unknown_model_with_404_once_models_are_restricted(emulator: OpenAICompatEmulator) -> None:
    emulator.set_known_models([MODEL])

    with pytest.raises(openai.NotFoundError):
        ask(emulator, model="gpt-0")
    assert ask(emulator).choices[0].message.content


def test_it_rate_limits_with_a_retry_after_header(emulator: OpenAICompatEmulator) -> None:
    emulator.add_fault(FaultKind.RATE_LIMIT, retry_after=2)

    with pytest.raises(openai.RateLimitError) as caught:
        ask(emulator)

    assert caught.value.response.headers["retry-after"] == "2"
    assert ask(emulator).choices[0].message.content  # one fault, used once


@pytest.mark.parametrize(("kind", "status"), [("internal", 500), ("unavailable", 503)])
def test_a_server_fault_answers_its_status_with_the_given_message(
    emulator: OpenAICompatEmulator, kind: str, status: int
) -> None:
    emulator.add_fault(kind, message="proxy says no", times=None)

    for _ in range(2):  # times=None: never runs out
        with pytest.raises(openai.InternalServerError) as caught:
            ask(emulator)
        assert caught.value.status_code == status and "proxy says no" in caught.value.message

    assert [(r.status, r.fault) for r in emulator.requests()] == [(status, kind)] * 2


def test_it_can_answer_200_with_html_broken_json_or_negative_usage(emulator: OpenAICompatEmulator) -> None:
    for kind in (FaultKind.HTML_BODY, FaultKind.INVALID_JSON, FaultKind.NEGATIVE_USAGE):
        emulator.add_fault(kind)  # used in the order added

    html = ask(emulator)  # the client trusts the content type and returns the text
    with pytest.raises(json.JSONDecodeError):
        ask(emulator)
    negative = ask(emulator)

    assert isinstance(html, str) and html.startswith("<!DOCTYPE html>")
    assert negative.choices[0].message.content
    assert (negative.usage.prompt_tokens, negative.usage.completion_tokens) == (-1, -1)


def test_a_slow_answer_outlasts_the_clients_timeout(emulator: OpenAICompatEmulator) -> None:
    emulator.add_fault(FaultKind.SLOW, delay=2)

    with pytest.raises(openai.APITimeoutError):
        ask(emulator, timeout=0.3)


def test_it_streams_the_reply_in_chunks_with_the_configured_timing(emulator: OpenAICompatEmulator) -> None:
    emulator.set_stream_timing(first_chunk_delay=0.3, chunk_delay=0.2, chunks=3)
    emulator.script_replies(["one two three four five six"])
    received: list[tuple[float, ChatCompletionChunk]] = []

    asyncio.run(stream(emulator, "tell me", received))

    texts = [(at, c.choices[0].delta.content) for at, c in received if c.choices and c.choices[0].delta.content]
    arrivals = [at for at, _ in texts]
    assert len(texts) == 3 and arrivals[0] >= 0.25
    assert all(later - earlier >= 0.15 for earlier, later in itertools.pairwise(arrivals))
    assert "".join(text for _, text in texts) == "one two three four five six"
    *_, (_, finish), (_, usage) = received
    assert finish.choices[0].finish_reason == "stop"
    assert usage.choices == [] and usage.usage.completion_tokens > 0
    assert emulator.requests()[0].stream is True


@pytest.mark.parametrize(
    ("kind", "after_chunks", "raised"),
    [
        (FaultKind.STREAM_BREAK, 2, openai.APIConnectionError),  # the connection cut halfway
        (FaultKind.STREAM_ERROR, 1, openai.APIError),  # an error event halfway
        (FaultKind.RATE_LIMIT, None, openai.RateLimitError),  # refused before the stream starts
    ],
)
def test_a_stream_fails_after_the_given_number_of_chunks(
    emulator: OpenAICompatEmulator, kind: FaultKind, after_chunks: int | None, raised: type[Exception]
) -> None:
    emulator.set_stream_timing(first_chunk_delay=0, chunk_delay=0, chunks=4)
    emulator.add_fault(kind, **({"after_chunks": after_chunks} if after_chunks else {}))
    received: list[tuple[float, Any]] = []

    with pytest.raises(raised) as caught:
        asyncio.run(stream(emulator, "a b c d", received))

    assert type(caught.value) is raised  # not a subclass: the product tells them apart
    assert sum(1 for _, c in received if c.choices and c.choices[0].delta.content) == (after_chunks or 0)
    assert emulator.requests()[0].fault == kind.value
