"""Memory and CPU of process trees, read with psutil.

RSS is sampled in a background thread (peaks are what matter, and they are brief);
CPU is measured exactly as the difference of two cpu_times snapshots.
"""

import threading
from collections.abc import Callable
from typing import Any

import psutil

MIB = 1024 * 1024


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_rss(pids: list[int]) -> int:
    """Bytes of resident memory of these processes and all their children."""
    total = 0
    for pid in pids:
        for process in _tree(pid):
            try:
                total += process.memory_info().rss
            except psutil.Error:
                pass
    return total


def tree_pss(pids: list[int]) -> int | None:
    """Bytes of proportional set size (shared pages split between their users) of these
    trees: what they add to the machine's memory, unlike summed RSS, which counts a
    page shared by forked processes once per process. Slow (reads smaps): call rarely.
    None where the platform does not report it."""
    total = 0
    for pid in pids:
        for process in _tree(pid):
            try:
                total += process.memory_full_info().pss
            except AttributeError:
                return None
            except psutil.Error:
                pass
    return total


def cpu_snapshot(pids: list[int], *, children: bool = True) -> dict[int, float]:
    """CPU seconds (user + system) per process of these trees (or of these processes
    alone, with children=False), by pid."""
    seconds: dict[int, float] = {}
    for pid in pids:
        for process in _tree(pid) if children else _tree(pid)[:1]:
            try:
                times = process.cpu_times()
                seconds[process.pid] = times.user + times.system
            except psutil.Error:
                pass
    return seconds


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two snapshots by the processes present in both."""
    return sum(after[pid] - before[pid] for pid in after.keys() & before.keys())


class MachineCpu:
    """System-wide CPU busy fraction since creation: other people's load shows here."""

    def __init__(self) -> None:
        self._started = psutil.cpu_times()

    def busy_fraction(self) -> float:
        now = psutil.cpu_times()
        total = sum(now) - sum(self._started)
        idle = _idle(now) - _idle(self._started)
        return 0.0 if total <= 0 else 1 - idle / total


def _idle(times: Any) -> float:
    return float(times.idle + getattr(times, "iowait", 0.0))


class RssSampler:
    """Peak and last summed RSS per group of process trees, sampled every `interval`."""

    def __init__(self, groups: Callable[[], dict[str, list[int]]], interval: float = 0.5) -> None:
        self._groups = groups
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.peak: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.samples = 0
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def reset(self) -> None:
        """Forget the peaks so far (e.g. when a measured window begins)."""
        with self._lock:
            self.peak, self.samples = {}, 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def sample(self) -> None:
        sizes = {name: tree_rss(pids) for name, pids in self._groups().items() if pids}
        with self._lock:
            self.samples += 1
            for name, size in sizes.items():
                self.last[name] = size
                self.peak[name] = max(self.peak.get(name, 0), size)


def mib(size: int) -> float:
    return round(size / MIB, 1)
