"""The scenarios by name. Each gets a fresh emulator, fresh workers and beat (a `Rig`)
and its own bots, and leaves the tasks stopped and the processes gone, whatever
happens."""

from collections.abc import Callable

from benchmarks.idle import idle
from benchmarks.load import burst, paced
from benchmarks.recovery import recovery
from benchmarks.rigging import Context, Figures, Params

SCENARIOS: dict[str, Callable[[Context, Params], Figures]] = {
    "burst": burst,
    "paced": paced,
    "idle": idle,
    "recovery": recovery,
}

__all__ = ["SCENARIOS", "Context", "Params"]
