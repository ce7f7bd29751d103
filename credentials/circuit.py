"""A circuit breaker per credential, its state shared by every worker through Redis.

After `fail_max` consecutive outage-type failures the circuit opens: calls fail at once
(milliseconds, not a retry storm) until `cooldown` seconds pass; then one caller probes
(half-open) and its outcome closes the circuit or opens it again.

Why not pybreaker (which ARCHITECTURE.md suggests): its CircuitBreaker.call holds a
threading.Lock for the whole protected call, so with one breaker per credential a
worker process made one AI call at a time. Measured with benchmarks.ai_load: at 2 s AI
latency, about 1 reply/s instead of ~100. Here Redis holds the state and no lock is
held across the network call.

The methods are coroutines: the caller (credentials.generation) runs on the process's
I/O loop (core.aio), where a blocking Redis call would stall every other AI call.
"""

from dataclasses import dataclass

from core.redis import async_redis_client

FAILURES_TTL_S = 24 * 3600  # consecutive failures older than a day are forgotten


class CircuitOpen(Exception):
    """The circuit is open (or another caller is probing it): do not call."""


@dataclass(frozen=True)
class Circuit:
    name: str  # e.g. "credential:12"
    fail_max: int
    cooldown: float  # seconds open before a probe
    probe_timeout: float  # how long one probe may take before another caller may try

    def _key(self, part: str) -> str:
        return f"botfleet:circuit:{self.name}:{part}"

    async def before_call(self) -> bool:
        """Raise CircuitOpen, or return True when this caller is the half-open probe."""
        client = async_redis_client()
        if await client.exists(self._key("open")):  # expires after the cool-down
            raise CircuitOpen
        if int(await client.get(self._key("failures")) or 0) < self.fail_max:
            return False
        # Half-open: the cool-down is over; exactly one caller probes.
        if not await client.set(self._key("probe"), 1, nx=True, px=int(self.probe_timeout * 1000)):
            raise CircuitOpen
        return True

    async def state(self) -> str:
        """In words, for operators: closed, failing (n in a row) or open."""
        client = async_redis_client()
        if await client.exists(self._key("open")):
            return "open: calls fail at once until the cool-down ends"
        failures = int(await client.get(self._key("failures")) or 0)
        return f"closed, {failures} failure(s) in a row" if failures else "healthy"

    async def probe_abandon(self) -> None:
        """The probe did not call after all: let the next caller probe."""
        await async_redis_client().delete(self._key("probe"))

    async def record_success(self) -> None:
        await async_redis_client().delete(self._key("failures"), self._key("probe"))

    async def record_failure(self) -> None:
        client = async_redis_client()
        failures = await client.incr(self._key("failures"))
        await client.expire(self._key("failures"), FAILURES_TTL_S)
        if failures >= self.fail_max:
            await client.set(self._key("open"), 1, px=int(self.cooldown * 1000))
            await client.delete(self._key("probe"))
