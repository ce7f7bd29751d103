"""Sync control clients for a standalone emulator (``python -m emulators.<name>``).

``EmulatorControlClient`` (Gemini, OpenAI-compatible): method names and signatures
mirror the in-process emulator so a test helper can drive either one; ``set_reply`` is
the exception (a Python callable cannot cross HTTP; use ``script_replies``). The routes
are ``emulators._common.control``.

``OpsClient`` (Telegram): the state's named operations (``emulators._common.ops``).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Generic, Self

import httpx

from . import ops
from .state import DEFAULT_CHUNK_DELAY, DEFAULT_FIRST_CHUNK_DELAY, FaultT, RecT


class _HttpClient:
    """An emulator client over one httpx.Client: closed by close() or a with block."""

    _http: httpx.Client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EmulatorControlError(RuntimeError):
    """Base of each emulator package's ``EmulatorControlError``."""


class EmulatorControlClient(_HttpClient, Generic[RecT, FaultT]):
    # Set by each subclass: its RecordedRequest, Fault and EmulatorControlError.
    _record_type: type[RecT]
    _fault_type: type[FaultT]
    _error_type: type[EmulatorControlError]

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = self._server_root(base_url)
        self._http = httpx.Client(base_url=self.base_url + "/_emulator", timeout=timeout)

    @staticmethod
    def _server_root(base_url: str) -> str:
        """The server root the control API hangs off, from what the caller passed."""
        return base_url.rstrip("/")


    def _call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        response = self._http.request(method, path, json=json, params=params)
        if response.status_code == 400:
            # The server reports the same ValueError the in-process call would raise.
            raise ValueError(response.json().get("error", response.text))
        if response.status_code == 408:
            raise TimeoutError(response.json().get("error", response.text))
        if response.status_code != 200:
            raise self._error_type(
                f"{method} {path} -> {response.status_code}: {response.text[:200]}"
            )
        return response.json()

    def health(self) -> bool:
        return bool(self._call("GET", "/health").get("ok"))

    def add_fault(
        self,
        kind: enum.StrEnum | str,
        times: int | None = 1,
        retry_after: float | None = None,
        delay: float | None = None,
        message: str | None = None,
        after_chunks: int | None = None,
    ) -> FaultT:
        # The FaultKind converts ``kind`` and the Fault validates the rest before anything
        # is sent.
        fault = self._fault_type(
            self._fault_type._kinds(kind), times, retry_after, delay, message, after_chunks
        )
        payload = fault.to_dict()
        return self._fault_type.from_dict(self._call("POST", "/faults", json=payload)["fault"])

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def pending_faults(self) -> list[FaultT]:
        return [self._fault_type.from_dict(f) for f in self._call("GET", "/faults")["faults"]]

    def set_latency(self, seconds: float) -> None:
        self._call("POST", "/latency", json={"seconds": seconds})

    def set_stream_timing(
        self,
        first_chunk_delay: float = DEFAULT_FIRST_CHUNK_DELAY,
        chunk_delay: float = DEFAULT_CHUNK_DELAY,
        chunks: int | None = None,
    ) -> None:
        payload = {
            "first_chunk_delay": first_chunk_delay,
            "chunk_delay": chunk_delay,
            "chunks": chunks,
        }
        self._call("POST", "/stream_timing", json=payload)

    def set_valid_keys(self, keys: Iterable[str] | None) -> None:
        self._call("POST", "/valid_keys", json={"keys": None if keys is None else list(keys)})

    def set_known_models(self, models: Iterable[str] | None) -> None:
        self._call(
            "POST", "/known_models", json={"models": None if models is None else list(models)}
        )

    def script_replies(self, replies: Iterable[str]) -> None:
        self._call("POST", "/replies", json={"replies": list(replies)})

    def requests(self) -> list[RecT]:
        return [self._record_type.from_dict(r) for r in self._call("GET", "/requests")["requests"]]

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecT]:
        # Give the HTTP call a little longer than the server-side wait.
        response = self._http.post(
            "/wait_for_requests", json={"count": count, "timeout": timeout}, timeout=timeout + 5.0
        )
        if response.status_code == 408:
            raise TimeoutError(response.json().get("error"))
        response.raise_for_status()
        return [self._record_type.from_dict(r) for r in response.json()["requests"]]

    def reset(self) -> None:
        self._call("POST", "/reset")

    def max_requests_in_window(self, seconds: float = 60.0, model: str | None = None) -> int:
        params: dict[str, Any] = {"seconds": seconds}
        if model is not None:
            params["model"] = model
        return int(self._call("GET", "/max_requests_in_window", params=params)["max"])

    def requests_per_minute(self) -> dict[str, int]:
        return dict(self._call("GET", "/requests_per_minute")["counts"])


class OpsClient(_HttpClient, ops.OpsCaller):
    """The state's operations over HTTP (thread-safe, keep-alive); a subclass sets
    ``_op_signatures``."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def _invoke(self, op: str, kwargs: dict[str, Any], *, timeout: float | None = None) -> Any:
        wait = httpx.Timeout(timeout) if timeout else httpx.USE_CLIENT_DEFAULT
        response = self._http.post(f"{ops.PREFIX}/{op}", json=kwargs, timeout=wait)
        try:
            payload = response.json()
        except ValueError:
            raise EmulatorControlError(
                f"{op}: HTTP {response.status_code}: {response.text[:200]}"
            ) from None
        if payload.get("ok"):
            return payload.get("result")
        error, _status = ops.ERRORS.get(payload.get("type", ""), (EmulatorControlError, 0))
        raise error(f"{op}: {payload.get('error')}")

    def wait_until_up(self, timeout: float = 10.0) -> None:
        """Return once the emulator answers (right after spawning it)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._http.get(ops.PREFIX).raise_for_status()
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no emulator at {self.url} after {timeout}s") from None
                time.sleep(0.05)

