"""The Gemini emulator, driven through the real google-genai client (no network).

One emulator serves the whole module (starting one per test would dominate the
runtime); the autouse fixture resets it so every test starts from scratch.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from google import genai
from google.genai import errors, types

from emulators.gemini import FaultKind, GeminiEmulator, GeminiEmulatorClient
from emulators.gemini.state import max_in_window

pytestmark = pytest.mark.timeout(20)

GOOD_KEY = "test-gemini-key"
MODEL = "gemini-2.5-flash"
REPO_ROOT = Path(__file__).resolve().parents[2]

# google-genai 3.4.0 uses httpx2 by default (GOOGLE_GENAI_HTTP_CLIENT can switch
# it to httpx); transport errors are not wrapped, so accept either family.
try:
    import httpx2

    TRANSPORT_TIMEOUT: tuple[type[BaseException], ...] = (
        httpx.TimeoutException,
        httpx2.TimeoutException,
    )
    TRANSPORT_ERROR: tuple[type[BaseException], ...] = (httpx.TransportError, httpx2.TransportError)
except ImportError:  # pragma: no cover - depends on the installed client
    TRANSPORT_TIMEOUT = (httpx.TimeoutException,)
    TRANSPORT_ERROR = (httpx.TransportError,)


@pytest.fixture(scope="module")
def emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator(valid_keys={GOOD_KEY}) as emu:
        yield emu


@pytest.fixture(autouse=True)
def fresh(emulator: GeminiEmulator) -> None:
    emulator.reset()


def make_client(emulator: GeminiEmulator, key: str = GOOD_KEY, **http: object) -> genai.Client:
    # Keep the returned Client referenced while using it: a temporary
    # (make_client(...).models.generate_content(...)) is garbage-collected
    # mid-call and closes its HTTP client ("client has been closed").
    return genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=emulator.base_url, **http)
    )


def ask(client: genai.Client, text: str = "hello") -> types.GenerateContentResponse:
    return client.models.generate_content(model=MODEL, contents=text)


def test_it_records_system_instruction_history_and_generation_config(
    emulator: GeminiEmulator,
) -> None:
    history = [
        types.Content(role="user", parts=[types.Part(text="Hi, I am Ann.")]),
        types.Content(role="model", parts=[types.Part(text="Hello Ann!")]),
        types.Content(role="user", parts=[types.Part(text="What is my name?")]),
    ]
    config = types.GenerateContentConfig(
        system_instruction="You are a polite bot.", temperature=0.3, max_output_tokens=256
    )

    client = make_client(emulator)
    client.models.generate_content(model=MODEL, contents=history, config=config)

    [rec] = emulator.requests()
    assert rec.model == MODEL
    assert rec.api_key == GOOD_KEY
    assert rec.system_instruction == "You are a polite bot."
    assert [(t.role, t.text) for t in rec.contents] == [
        ("user", "Hi, I am Ann."),
        ("model", "Hello Ann!"),
        ("user", "What is my name?"),
    ]
    assert rec.generation_config == {"temperature": 0.3, "maxOutputTokens": 256}


def test_it_returns_text_usage_and_finish_reason(emulator: GeminiEmulator) -> None:
    response = ask(make_client(emulator), "ping")

    assert response.text == f"[gemini-emulator:{MODEL}] You said: ping"
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage.prompt_token_count > 0 and usage.candidates_token_count > 0
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count


def test_it_calls_the_v1_path_by_default_and_accepts_v1beta(emulator: GeminiEmulator) -> None:
    ask(make_client(emulator))
    ask(make_client(emulator, api_version="v1beta"))

    assert [r.path for r in emulator.requests()] == [
        f"/v1/models/{MODEL}:generateContent",
        f"/v1beta/models/{MODEL}:generateContent",
    ]


def test_it_rejects_an_unknown_key_with_400_invalid_argument(emulator: GeminiEmulator) -> None:
    with pytest.raises(errors.ClientError) as caught:
        ask(make_client(emulator, key="wrong-key"))

    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message == "API key not valid. Please pass a valid API key."


def test_it_sends_googles_api_key_invalid_error_info(emulator: GeminiEmulator) -> None:
    with pytest.raises(errors.ClientError) as caught:
        ask(make_client(emulator, key="wrong-key"))

    [info, *_] = caught.value.details["error"]["details"]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert info["reason"] == "API_KEY_INVALID"


def test_it_accepts_any_key_when_no_key_set_is_configured(emulator: GeminiEmulator) -> None:
    emulator.set_valid_keys(None)

    assert ask(make_client(emulator, key="anything")).text


def test_it_answers_an_unknown_model_with_404_not_found(emulator: GeminiEmulator) -> None:
    client = make_client(emulator)
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="gemini-0.1-nope", contents="hi")

    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")


def test_it_raises_client_error_429_with_retry_info(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.RATE_LIMIT, retry_after=3)

    with pytest.raises(errors.ClientError) as caught:
        ask(make_client(emulator))

    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert caught.value.response.headers["retry-after"] == "3"
    retry_info = caught.value.details["error"]["details"][-1]
    assert retry_info == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}


def test_it_raises_server_error_on_503(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.UNAVAILABLE)

    with pytest.raises(errors.ServerError) as caught:
        ask(make_client(emulator))

    assert (caught.value.code, caught.value.status) == (503, "UNAVAILABLE")
    assert "overloaded" in caught.value.message


def test_it_consumes_faults_in_order_and_honours_times(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.INTERNAL, times=2)
    emulator.add_fault(FaultKind.PERMISSION_DENIED)
    client = make_client(emulator)
    codes = []
    for _ in range(4):
        try:
            ask(client)
            codes.append(200)
        except errors.APIError as exc:
            codes.append(exc.code)

    assert codes == [500, 500, 403, 200]
    assert [r.fault for r in emulator.requests()] == [
        "internal",
        "internal",
        "permission_denied",
        None,
    ]


def test_it_reports_a_prompt_safety_block_without_raising(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.PROMPT_BLOCKED)

    response = ask(make_client(emulator))

    assert response.text is None
    assert response.candidates is None
    assert response.prompt_feedback.block_reason == types.BlockedReason.SAFETY


def test_it_returns_a_safety_finished_candidate_without_text(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.SAFETY_FINISH)

    response = ask(make_client(emulator))

    assert response.text is None
    assert response.candidates[0].finish_reason == types.FinishReason.SAFETY


@pytest.mark.parametrize(
    ("kind", "expected_text"),
    [(FaultKind.EMPTY_TEXT, ""), (FaultKind.EMPTY_CONTENT, None)],
)
def test_it_returns_empty_answers(
    emulator: GeminiEmulator, kind: FaultKind, expected_text: str | None
) -> None:
    emulator.add_fault(kind)

    response = ask(make_client(emulator))

    assert response.text == expected_text
    assert response.candidates[0].finish_reason == types.FinishReason.STOP


def test_it_reports_negative_usage(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.NEGATIVE_USAGE)

    response = ask(make_client(emulator))

    assert response.text and response.usage_metadata is not None
    usage = response.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count) == (-1, -1)


def test_it_truncates_a_max_tokens_answer(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.MAX_TOKENS)

    response = ask(make_client(emulator), "a fairly long question for the model")

    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert (
        0
        < len(response.text)
        < len(f"[gemini-emulator:{MODEL}] You said: a fairly long question for the model")
    )


def test_it_times_out_a_slow_answer_with_a_shorter_http_timeout(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.SLOW, delay=2)
    client = make_client(emulator, timeout=300)  # HttpOptions.timeout is milliseconds

    started = time.monotonic()
    with pytest.raises(TRANSPORT_TIMEOUT):
        ask(client)

    assert time.monotonic() - started < 1.5


def test_it_times_out_a_slow_answer_on_the_async_client_with_builtin_timeout_error(
    emulator: GeminiEmulator,
) -> None:
    emulator.add_fault(FaultKind.SLOW, delay=2)
    client = make_client(emulator, timeout=300)

    # The async client uses aiohttp; its total timeout surfaces as the builtin TimeoutError.
    with pytest.raises(TimeoutError):
        asyncio.run(client.aio.models.generate_content(model=MODEL, contents="hi"))


def test_it_records_a_slow_request_whose_client_gave_up_without_status(
    emulator: GeminiEmulator,
) -> None:
    emulator.add_fault(FaultKind.SLOW, delay=2)
    with pytest.raises(TRANSPORT_TIMEOUT):
        ask(make_client(emulator, timeout=200))

    deadline = time.monotonic() + 2
    while emulator.requests()[0].fault is None and time.monotonic() < deadline:
        time.sleep(0.01)
    [rec] = emulator.requests()
    assert (rec.status, rec.fault) == (None, "slow")


def test_it_answers_normally_after_the_slow_delay(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.SLOW, delay=0.3)

    started = time.monotonic()
    response = ask(make_client(emulator), "patience")

    assert time.monotonic() - started >= 0.3
    assert response.text.endswith("You said: patience")


def test_it_drops_the_connection_without_an_http_response(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.DROP_CONNECTION)

    with pytest.raises(TRANSPORT_ERROR):
        ask(make_client(emulator))

    assert emulator.requests()[0].status is None


def test_it_serves_the_async_client(emulator: GeminiEmulator) -> None:
    client = make_client(emulator)

    response = asyncio.run(client.aio.models.generate_content(model=MODEL, contents="from asyncio"))

    assert response.text == f"[gemini-emulator:{MODEL}] You said: from asyncio"


def test_it_uses_scripted_replies_then_the_default(emulator: GeminiEmulator) -> None:
    emulator.script_replies(["first", "second"])
    client = make_client(emulator)

    texts = [ask(client, "q").text for _ in range(3)]

    assert texts == ["first", "second", f"[gemini-emulator:{MODEL}] You said: q"]


def test_it_uses_the_reply_function(emulator: GeminiEmulator) -> None:
    emulator.set_reply(lambda rec: rec.last_user_text.upper())

    assert ask(make_client(emulator), "shout").text == "SHOUT"


def test_it_delays_concurrent_answers_in_parallel(emulator: GeminiEmulator) -> None:
    emulator.set_latency(0.5)
    client = make_client(emulator)

    async def burst() -> list[types.GenerateContentResponse]:
        calls = (
            client.aio.models.generate_content(model=MODEL, contents=f"m{i}") for i in range(50)
        )
        return await asyncio.gather(*calls)

    started = time.monotonic()
    responses = asyncio.run(burst())
    elapsed = time.monotonic() - started

    assert len(responses) == 50
    assert 0.5 <= elapsed < 3.0  # serial handling would take 25 s


def test_it_reports_the_busiest_window_of_recorded_requests(emulator: GeminiEmulator) -> None:
    client = make_client(emulator)
    for _ in range(3):
        ask(client)

    assert emulator.max_requests_in_window(60) == 3
    assert emulator.max_requests_in_window(60, model="gemini-2.5-pro") == 0
    assert sum(emulator.requests_per_minute().values()) == 3


def test_it_counts_the_busiest_sliding_window_not_calendar_minutes() -> None:
    times = [0, 10, 59.9, 60, 61, 119, 200]

    assert max_in_window(times, 60) == 4  # [10, 70): 10, 59.9, 60, 61
    assert max_in_window(times, 1) == 2
    assert max_in_window([], 60) == 0


def test_it_lists_and_describes_models_for_credential_checks(emulator: GeminiEmulator) -> None:
    client = make_client(emulator)

    names = [m.name for m in client.models.list()]
    model = client.models.get(model=MODEL)

    assert f"models/{MODEL}" in names
    assert model.name == f"models/{MODEL}"
    assert model.input_token_limit > 0


def test_it_checks_the_key_on_model_listing(emulator: GeminiEmulator) -> None:
    client = make_client(emulator, key="wrong-key")
    with pytest.raises(errors.ClientError) as caught:
        list(client.models.list())

    assert caught.value.code == 400


def test_it_counts_tokens(emulator: GeminiEmulator) -> None:
    client = make_client(emulator)
    result = client.models.count_tokens(model=MODEL, contents="12345678")

    assert result.total_tokens == 2


def test_it_keeps_the_api_key_out_of_reprs(emulator: GeminiEmulator) -> None:
    ask(make_client(emulator))

    assert GOOD_KEY not in repr(emulator.requests())


def test_it_restores_construction_settings_on_reset(emulator: GeminiEmulator) -> None:
    emulator.set_valid_keys(None)
    emulator.add_fault(FaultKind.INTERNAL)
    emulator.script_replies(["x"])

    emulator.reset()

    with pytest.raises(errors.ClientError):
        ask(make_client(emulator, key="wrong-key"))
    assert ask(make_client(emulator), "clean").text.endswith("You said: clean")


def test_it_is_controllable_over_http_with_the_sync_client(emulator: GeminiEmulator) -> None:
    with GeminiEmulatorClient(emulator.base_url) as control:
        control.add_fault("rate_limit", retry_after=1)
        control.script_replies(["over http"])
        client = make_client(emulator)
        with pytest.raises(errors.ClientError):
            ask(client)
        text = ask(client).text
        recorded = control.requests()

    assert text == "over http"
    assert [(r.status, r.fault) for r in recorded] == [(429, "rate_limit"), (200, None)]
    assert recorded[0].api_key == GOOD_KEY


def test_it_rejects_an_unknown_fault_kind_over_http(emulator: GeminiEmulator) -> None:
    response = httpx.post(f"{emulator.base_url}/_emulator/faults", json={"kind": "meteor"})

    assert response.status_code == 400
    assert "meteor" in response.json()["error"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(20)
def test_it_runs_standalone_with_python_m() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators.gemini", "--port", str(port), "--valid-key", GOOD_KEY],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        with GeminiEmulatorClient(base_url, timeout=2) as control:
            deadline = time.monotonic() + 10
            while True:
                try:
                    control.health()
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            client = genai.Client(
                api_key=GOOD_KEY, http_options=types.HttpOptions(base_url=base_url)
            )
            response = client.models.generate_content(model=MODEL, contents="standalone")
            recorded = control.requests()
    finally:
        proc.terminate()
        proc.wait(timeout=5)

    assert response.text.endswith("You said: standalone")
    assert [r.last_user_text for r in recorded] == ["standalone"]


# --------------------------------------------------------------------------- inline data

IMAGE = b"\xff\xd8\xff\xe0" + bytes(range(200))


def ask_about_image(client: genai.Client, caption: str) -> types.GenerateContentResponse:
    image = types.Part.from_bytes(data=IMAGE, mime_type="image/jpeg")
    return client.models.generate_content(model=MODEL, contents=[image, caption])


def test_it_records_inline_data_parts_beside_the_caption(emulator: GeminiEmulator) -> None:
    ask_about_image(make_client(emulator), "What is on this photo?")

    [rec] = emulator.requests()
    assert rec.contents[-1].text == "What is on this photo?"
    assert rec.contents[-1].media == (("image/jpeg", len(IMAGE)),)
    assert rec.last_user_media[0].mime_type == "image/jpeg"


def test_it_says_in_the_default_reply_what_media_it_received(emulator: GeminiEmulator) -> None:
    response = ask_about_image(make_client(emulator), "Look")

    assert response.text == (
        f"[gemini-emulator:{MODEL}] You said: Look [received image/jpeg, {len(IMAGE)} bytes]"
    )


def test_it_rejects_inline_data_that_is_not_base64(emulator: GeminiEmulator) -> None:
    part = {"inlineData": {"mimeType": "audio/ogg", "data": "not base64!"}}
    response = httpx.post(
        f"{emulator.base_url}/v1beta/models/{MODEL}:generateContent",
        headers={"x-goog-api-key": GOOD_KEY},
        json={"contents": [{"role": "user", "parts": [part]}]},
    )

    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "Base64 decoding failed" in response.json()["error"]["message"]


# --------------------------------------------------------------------------- streaming


async def stream_texts(
    client: genai.Client, text: str = "tell me more", timed: bool = False
) -> list[Any]:
    """Texts of the chunks of one streamed answer (with their arrival times if ``timed``)."""
    started = time.monotonic()
    chunks: list[Any] = []
    async for chunk in await client.aio.models.generate_content_stream(model=MODEL, contents=text):
        chunks.append((time.monotonic() - started, chunk.text) if timed else chunk.text)
    return chunks


def test_it_streams_the_reply_in_chunks_that_arrive_one_by_one(emulator: GeminiEmulator) -> None:
    emulator.set_stream_timing(first_chunk_delay=0.3, chunk_delay=0.2, chunks=3)

    arrivals = [at for at, _text in asyncio.run(stream_texts(make_client(emulator), timed=True))]

    assert len(arrivals) == 3
    assert arrivals[0] >= 0.25
    assert all(later - earlier >= 0.15 for earlier, later in itertools.pairwise(arrivals))


def test_it_streams_the_same_text_as_the_unstreamed_reply(emulator: GeminiEmulator) -> None:
    emulator.set_stream_timing(first_chunk_delay=0, chunk_delay=0, chunks=4)
    client = make_client(emulator)

    texts = asyncio.run(stream_texts(client, "one two three four five"))

    assert len(texts) == 4
    assert "".join(texts) == ask(client, "one two three four five").text


def test_it_puts_finish_reason_and_usage_on_the_last_chunk_only(emulator: GeminiEmulator) -> None:
    emulator.set_stream_timing(first_chunk_delay=0, chunk_delay=0, chunks=3)

    async def main() -> list[types.GenerateContentResponse]:
        stream = await make_client(emulator).aio.models.generate_content_stream(
            model=MODEL, contents="one two three"
        )
        return [chunk async for chunk in stream]

    *first, last = asyncio.run(main())

    assert [c.candidates[0].finish_reason for c in first] == [None, None]
    assert all(c.usage_metadata is None for c in first)
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata.candidates_token_count > 0


def test_it_records_the_stream_request_under_its_own_action(emulator: GeminiEmulator) -> None:
    emulator.set_stream_timing(first_chunk_delay=0, chunk_delay=0)

    asyncio.run(stream_texts(make_client(emulator, api_version="v1beta"), "streamed"))

    [rec] = emulator.requests()
    assert rec.action == "streamGenerateContent"
    assert rec.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert (rec.status, rec.last_user_text) == (200, "streamed")


def test_it_breaks_the_connection_after_n_chunks(emulator: GeminiEmulator) -> None:
    emulator.set_stream_timing(first_chunk_delay=0, chunk_delay=0, chunks=4)
    emulator.add_fault(FaultKind.STREAM_BREAK, after_chunks=2)
    received: list[str] = []

    async def main() -> None:
        stream = await make_client(emulator).aio.models.generate_content_stream(
            model=MODEL, contents="one two three four"
        )
        async for chunk in stream:
            received.append(chunk.text)

    # The async client reads with aiohttp when it is installed, else with httpx/httpx2.
    with pytest.raises((aiohttp.ClientPayloadError, *TRANSPORT_ERROR)):
        asyncio.run(main())

    assert len(received) == 2
    assert emulator.requests()[0].fault == "stream_break"


def test_it_ends_the_stream_with_an_error_event_after_n_chunks(emulator: GeminiEmulator) -> None:
    emulator.set_stream_timing(first_chunk_delay=0, chunk_delay=0, chunks=4)
    emulator.add_fault(FaultKind.STREAM_ERROR, after_chunks=1)
    received: list[str] = []

    async def main() -> None:
        stream = await make_client(emulator).aio.models.generate_content_stream(
            model=MODEL, contents="one two three four"
        )
        async for chunk in stream:
            received.append(chunk.text)

    with pytest.raises(errors.ServerError) as caught:
        asyncio.run(main())

    assert caught.value.code == 500 and caught.value.status == "INTERNAL"
    assert len(received) == 1


def test_it_fails_an_unstreamed_answer_on_a_stream_fault(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.STREAM_ERROR)

    with pytest.raises(errors.ServerError):
        ask(make_client(emulator))


def test_it_answers_an_error_fault_before_the_stream_starts(emulator: GeminiEmulator) -> None:
    emulator.add_fault(FaultKind.RATE_LIMIT)

    with pytest.raises(errors.ClientError) as caught:
        asyncio.run(stream_texts(make_client(emulator)))

    assert caught.value.code == 429


def test_it_takes_after_chunks_only_for_stream_faults(emulator: GeminiEmulator) -> None:
    with pytest.raises(ValueError, match="after_chunks"):
        emulator.add_fault(FaultKind.INTERNAL, after_chunks=1)


def test_it_sets_stream_timing_and_stream_faults_over_http(emulator: GeminiEmulator) -> None:
    with GeminiEmulatorClient(emulator.base_url) as control:
        control.set_stream_timing(first_chunk_delay=0, chunk_delay=0, chunks=2)
        fault = control.add_fault("stream_error", after_chunks=1)
        with pytest.raises(errors.ServerError):
            asyncio.run(stream_texts(make_client(emulator), "a b c d"))
        control.reset()  # back to the default timing: up to 4 chunks
        texts = asyncio.run(stream_texts(make_client(emulator), "a b c d"))

    assert fault.after_chunks == 1
    assert len(texts) == 4
