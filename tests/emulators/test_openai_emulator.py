"""The OpenAI-compatible emulator, driven through the real ``openai`` client (no network).

One emulator per module, reset before each test. Clients use ``max_retries=0``
unless a test is about retries, so error responses surface immediately.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from emulators.openai_compat import FaultKind, OpenAICompatEmulator, OpenAICompatEmulatorClient

pytestmark = pytest.mark.timeout(20)

GOOD_KEY = "sk-test-openai-key"
MODEL = "gpt-4o-mini"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def emulator() -> Iterator[OpenAICompatEmulator]:
    with OpenAICompatEmulator(valid_keys={GOOD_KEY}) as emu:
        yield emu


@pytest.fixture(autouse=True)
def fresh(emulator: OpenAICompatEmulator) -> None:
    emulator.reset()


def make_client(
    emulator: OpenAICompatEmulator, key: str = GOOD_KEY, **options: object
) -> openai.OpenAI:
    settings: dict[str, object] = {"max_retries": 0, "timeout": 5.0, **options}
    return openai.OpenAI(api_key=key, base_url=emulator.base_url, **settings)  # type: ignore[arg-type]


def ask(client: openai.OpenAI, text: str = "hello") -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])


def test_it_records_messages_model_and_sampling_settings(emulator: OpenAICompatEmulator) -> None:
    client = make_client(emulator)
    client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]},
        ],
        temperature=0.2,
        max_tokens=64,
    )

    [rec] = emulator.requests()
    assert rec.path == "/v1/chat/completions"
    assert rec.model == MODEL
    assert rec.api_key == GOOD_KEY
    assert [(m.role, m.content) for m in rec.messages] == [
        ("system", "You are terse."),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("user", "Name a colour."),
    ]
    assert (rec.temperature, rec.max_tokens, rec.max_completion_tokens) == (0.2, 64, None)


def test_it_records_max_completion_tokens(emulator: OpenAICompatEmulator) -> None:
    client = make_client(emulator)
    client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], max_completion_tokens=32
    )

    assert emulator.requests()[0].max_completion_tokens == 32


def test_it_returns_a_parsable_chat_completion(emulator: OpenAICompatEmulator) -> None:
    completion = ask(make_client(emulator), "ping")

    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == f"[openai-emulator:{MODEL}] You said: ping"
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0


def test_it_rejects_an_invalid_key_with_authentication_error(
    emulator: OpenAICompatEmulator,
) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(make_client(emulator, key="sk-wrong"))

    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert "sk-wrong" not in str(caught.value)


def test_it_raises_rate_limit_error_with_retry_after(emulator: OpenAICompatEmulator) -> None:
    emulator.add_fault(FaultKind.RATE_LIMIT, retry_after=2)

    with pytest.raises(openai.RateLimitError) as caught:
        ask(make_client(emulator))

    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "2"


def test_it_raises_rate_limit_error_for_exhausted_quota(emulator: OpenAICompatEmulator) -> None:
    emulator.add_fault(FaultKind.QUOTA_EXCEEDED)

    with pytest.raises(openai.RateLimitError) as caught:
        ask(make_client(emulator))

    assert caught.value.code == "insufficient_quota"


@pytest.mark.parametrize(
    ("kind", "status"), [(FaultKind.INTERNAL, 500), (FaultKind.UNAVAILABLE, 503)]
)
def test_it_raises_internal_server_error_on_5xx(
    emulator: OpenAICompatEmulator, kind: FaultKind, status: int
) -> None:
    emulator.add_fault(kind)

    with pytest.raises(openai.InternalServerError) as caught:
        ask(make_client(emulator))

    assert caught.value.status_code == status


def test_it_lets_the_client_retry_after_a_429(emulator: OpenAICompatEmulator) -> None:
    emulator.add_fault(FaultKind.RATE_LIMIT, times=2, retry_after=0.05)

    completion = ask(make_client(emulator, max_retries=2), "eventually")

    assert completion.choices[0].message.content.endswith("You said: eventually")
    assert [(r.status, r.retry_count) for r in emulator.requests()] == [
        (429, 0),
        (429, 1),
        (200, 2),
    ]


def test_it_times_out_a_slow_answer_with_api_timeout_error(emulator: OpenAICompatEmulator) -> None:
    emulator.add_fault(FaultKind.SLOW, delay=2)

    with pytest.raises(openai.APITimeoutError):
        ask(make_client(emulator, timeout=0.3))


def test_it_drops_the_connection_as_api_connection_error(emulator: OpenAICompatEmulator) -> None:
    emulator.add_fault(FaultKind.DROP_CONNECTION)

    with pytest.raises(openai.APIConnectionError):
        ask(make_client(emulator))


@pytest.mark.parametrize(
    ("kind", "content", "finish_reason"),
    [(FaultKind.CONTENT_FILTER, None, "content_filter"), (FaultKind.EMPTY, "", "stop")],
)
def test_it_returns_filtered_and_empty_answers(
    emulator: OpenAICompatEmulator, kind: FaultKind, content: str | None, finish_reason: str
) -> None:
    emulator.add_fault(kind)

    choice = ask(make_client(emulator)).choices[0]

    assert (choice.message.content, choice.finish_reason) == (content, finish_reason)


@pytest.mark.parametrize(
    ("kind", "content_type", "body_start"),
    [(FaultKind.HTML_BODY, "text/html", "<!DOCTYPE html>"), (FaultKind.INVALID_JSON, "application/json", '{"choices"')],
)
def test_it_answers_200_with_a_body_that_is_not_a_completion(
    emulator: OpenAICompatEmulator, kind: FaultKind, content_type: str, body_start: str
) -> None:
    emulator.add_fault(kind)

    response = make_client(emulator).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hello"}]
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    assert response.text.startswith(body_start)


def test_it_reports_negative_usage(emulator: OpenAICompatEmulator) -> None:
    emulator.add_fault(FaultKind.NEGATIVE_USAGE)

    completion = ask(make_client(emulator))

    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (-1, -1)


def test_it_truncates_a_length_answer(emulator: OpenAICompatEmulator) -> None:
    emulator.add_fault(FaultKind.LENGTH)

    choice = ask(make_client(emulator), "tell me a long story").choices[0]

    assert choice.finish_reason == "length"
    assert (
        0
        < len(choice.message.content)
        < len(f"[openai-emulator:{MODEL}] You said: tell me a long story")
    )


def test_it_answers_an_unknown_model_with_not_found_when_models_are_restricted(
    emulator: OpenAICompatEmulator,
) -> None:
    emulator.set_known_models([MODEL])
    client = make_client(emulator)

    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-0", messages=[{"role": "user", "content": "x"}])

    assert caught.value.code == "model_not_found"


def test_it_lists_models(emulator: OpenAICompatEmulator) -> None:
    client = make_client(emulator)

    ids = [m.id for m in client.models.list()]

    assert MODEL in ids


def test_it_uses_scripted_replies_then_the_reply_function(emulator: OpenAICompatEmulator) -> None:
    emulator.script_replies(["scripted"])
    emulator.set_reply(lambda rec: f"{len(rec.messages)} message(s)")
    client = make_client(emulator)

    texts = [ask(client).choices[0].message.content for _ in range(2)]

    assert texts == ["scripted", "1 message(s)"]


def test_it_serves_the_async_client(emulator: OpenAICompatEmulator) -> None:
    async def call() -> str | None:
        client = openai.AsyncOpenAI(api_key=GOOD_KEY, base_url=emulator.base_url, max_retries=0)
        completion = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "async"}]
        )
        await client.close()
        return completion.choices[0].message.content

    assert asyncio.run(call()) == f"[openai-emulator:{MODEL}] You said: async"


def test_it_delays_concurrent_answers_in_parallel(emulator: OpenAICompatEmulator) -> None:
    emulator.set_latency(0.5)

    async def burst() -> int:
        client = openai.AsyncOpenAI(api_key=GOOD_KEY, base_url=emulator.base_url, max_retries=0)
        calls = (
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"m{i}"}]
            )
            for i in range(50)
        )
        results = await asyncio.gather(*calls)
        await client.close()
        return len(results)

    started = time.monotonic()
    assert asyncio.run(burst()) == 50
    assert time.monotonic() - started < 3.0  # serial handling would take 25 s
    assert emulator.max_requests_in_window(60) == 50


def test_it_keeps_the_api_key_out_of_reprs(emulator: OpenAICompatEmulator) -> None:
    ask(make_client(emulator))

    assert GOOD_KEY not in repr(emulator.requests())


def test_it_is_controllable_over_http_with_the_sync_client(emulator: OpenAICompatEmulator) -> None:
    with OpenAICompatEmulatorClient(emulator.base_url) as control:
        control.add_fault("unavailable")
        control.script_replies(["over http"])
        client = make_client(emulator)
        with pytest.raises(openai.InternalServerError):
            ask(client)
        text = ask(client).choices[0].message.content
        recorded = control.requests()

    assert text == "over http"
    assert [(r.status, r.fault) for r in recorded] == [(503, "unavailable"), (200, None)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_it_runs_standalone_with_python_m() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulators.openai_compat",
            "--port",
            str(port),
            "--valid-key",
            GOOD_KEY,
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        with OpenAICompatEmulatorClient(base_url, timeout=2) as control:
            deadline = time.monotonic() + 10
            while True:
                try:
                    control.health()
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            client = openai.OpenAI(api_key=GOOD_KEY, base_url=base_url, max_retries=0)
            completion = ask(client, "standalone")
            recorded = control.requests()
    finally:
        proc.terminate()
        proc.wait(timeout=5)

    assert completion.choices[0].message.content.endswith("You said: standalone")
    assert [r.last_user_text for r in recorded] == ["standalone"]


# --------------------------------------------------------------------------- media parts

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(100))


def image_message(caption: str, url: str | None = None) -> list[Any]:
    data_url = url or f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
    content = [
        {"type": "text", "text": caption},
        {"type": "image_url", "image_url": {"url": data_url}},
    ]
    return [{"role": "user", "content": content}]


def test_it_records_image_parts_beside_the_caption(emulator: OpenAICompatEmulator) -> None:
    make_client(emulator).chat.completions.create(
        model=MODEL, messages=image_message("What is it?")
    )

    [rec] = emulator.requests()
    assert rec.messages[-1].content == "What is it?"
    assert rec.messages[-1].media == (("image/png", len(PNG)),)


def test_it_says_in_the_default_reply_what_media_it_received(
    emulator: OpenAICompatEmulator,
) -> None:
    completion = make_client(emulator).chat.completions.create(
        model=MODEL, messages=image_message("Look")
    )

    assert completion.choices[0].message.content == (
        f"[openai-emulator:{MODEL}] You said: Look [received image/png, {len(PNG)} bytes]"
    )


def test_it_records_input_audio_parts(emulator: OpenAICompatEmulator) -> None:
    audio = {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(b"RIFF1234").decode(), "format": "wav"},
    }
    make_client(emulator).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": [audio]}]
    )

    assert emulator.requests()[0].last_user_media == (("audio/wav", 8),)


def test_it_refuses_image_urls_it_would_have_to_fetch(emulator: OpenAICompatEmulator) -> None:
    with pytest.raises(openai.BadRequestError):
        make_client(emulator).chat.completions.create(
            model=MODEL, messages=image_message("Look", url="https://example.com/cat.png")
        )


# --------------------------------------------------------------------------- streaming


async def stream_chunks(
    emulator: OpenAICompatEmulator, text: str = "tell me more", **options: Any
) -> list[tuple[float, ChatCompletionChunk]]:
    """The chunks of one ``stream=True`` answer with their arrival times."""
    client = openai.AsyncOpenAI(api_key=GOOD_KEY, base_url=emulator.base_url, max_retries=0)
    started = time.monotonic()
    try:
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": text}], stream=True, **options
        )
        return [(time.monotonic() - started, chunk) async for chunk in stream]
    finally:
        await client.close()


def texts_of(chunks: list[tuple[float, ChatCompletionChunk]]) -> list[str]:
    return [
        c.choices[0].delta.content for _, c in chunks if c.choices and c.choices[0].delta.content
    ]


def test_it_streams_the_reply_in_chunks_that_arrive_one_by_one(
    emulator: OpenAICompatEmulator,
) -> None:
    emulator.set_stream_timing(first_chunk_delay=0.3, chunk_delay=0.2, chunks=3)

    chunks = asyncio.run(stream_chunks(emulator, "one two three"))

    arrivals = [at for at, chunk in chunks if chunk.choices[0].delta.content]
    assert len(arrivals) == 3
    assert arrivals[0] >= 0.25
    assert all(later - earlier >= 0.15 for earlier, later in itertools.pairwise(arrivals))


def test_it_streams_the_same_text_as_the_unstreamed_reply(emulator: OpenAICompatEmulator) -> None:
    emulator.set_stream_timing(first_chunk_delay=0, chunk_delay=0, chunks=4)

    texts = texts_of(asyncio.run(stream_chunks(emulator, "one two three four five")))

    assert len(texts) == 4
    assert (
        "".join(texts)
        == ask(make_client(emulator), "one two three four five").choices[0].message.content
    )
    assert emulator.requests()[0].stream is True


def test_it_ends_the_stream_with_the_finish_reason_and_the_usage_if_asked(
    emulator: OpenAICompatEmulator,
) -> None:
    emulator.set_stream_timing(first_chunk_delay=0, chunk_delay=0)

    chunks = [
        c for _, c in asyncio.run(stream_chunks(emulator, stream_options={"include_usage": True}))
    ]
    *_, finish, usage = chunks

    assert chunks[0].choices[0].delta.role == "assistant"
    assert finish.choices[0].finish_reason == "stop" and finish.usage is None
    assert usage.choices == [] and usage.usage.completion_tokens > 0


def test_it_breaks_the_connection_after_n_chunks(emulator: OpenAICompatEmulator) -> None:
    emulator.set_stream_timing(first_chunk_delay=0, chunk_delay=0, chunks=4)
    emulator.add_fault(FaultKind.STREAM_BREAK, after_chunks=2)
    received: list[str | None] = []

    async def main() -> None:
        client = openai.AsyncOpenAI(api_key=GOOD_KEY, base_url=emulator.base_url, max_retries=0)
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "a b c d"}], stream=True
        )
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIConnectionError):
        asyncio.run(main())

    assert len(received) == 2
    assert emulator.requests()[0].fault == "stream_break"


def test_it_ends_the_stream_with_an_error_event_after_n_chunks(
    emulator: OpenAICompatEmulator,
) -> None:
    emulator.set_stream_timing(first_chunk_delay=0, chunk_delay=0, chunks=4)
    emulator.add_fault(FaultKind.STREAM_ERROR, after_chunks=1, message="overloaded mid-stream")
    received: list[str | None] = []

    async def main() -> None:
        client = openai.AsyncOpenAI(api_key=GOOD_KEY, base_url=emulator.base_url, max_retries=0)
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "a b c d"}], stream=True
        )
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIError, match="overloaded mid-stream"):
        asyncio.run(main())

    assert len(received) == 1


def test_it_fails_an_unstreamed_answer_on_a_stream_fault(emulator: OpenAICompatEmulator) -> None:
    emulator.add_fault(FaultKind.STREAM_BREAK)

    with pytest.raises(openai.APIConnectionError):
        ask(make_client(emulator))


def test_it_answers_an_error_fault_before_the_stream_starts(emulator: OpenAICompatEmulator) -> None:
    emulator.add_fault(FaultKind.RATE_LIMIT, retry_after=0.1)

    with pytest.raises(openai.RateLimitError):
        asyncio.run(stream_chunks(emulator))
