"""Where do worker threads spend wall-clock time? A poor man's sampling profiler.

    python -m benchmarks.stack_sampler OUT_FILE -- celery -A config worker ...

Runs the command's Python entry point (celery) in this process, and every few
milliseconds records the stack of every thread that is inside one of Botfleet's
tasks (a reply or a poll cycle's finish). At exit it writes the most frequent
innermost frames to OUT_FILE. Wall time, not CPU: a thread waiting for a lock, the
database or the I/O loop counts as much as one computing, which is what a latency
investigation needs. Used by `telegram_load --profile-workers`; costs some CPU.

With BENCH_PROFILE=cpu in the environment it also runs cProfile in every thread,
timed with the thread's own CPU clock, and appends the functions with the most CPU
(cumulative) to OUT_FILE: where CPU goes rather than where time goes. cProfile slows
the process down several times, so only the shares mean something.
"""

import atexit
import cProfile
import io
import os
import pstats
import sys
import threading
import time
from collections import Counter
from pathlib import Path

INTERVAL_S = 0.005
# Frames that mark a worker's busy threads: the I/O loop (polls, AI calls, sends) and the
# database writer (config.dbwork).
ROOTS = ("run_forever", "_transaction_run")
DEPTH = 3  # innermost frames kept per sample, plus the innermost project frames
PROJECT_FRAMES = 3
PROJECT_DIR = str(Path(__file__).resolve().parent.parent)


_files: dict[str, tuple[str, bool]] = {}  # filename -> (base name, is project code)


def _file(filename: str) -> tuple[str, bool]:
    # Cached: building a Path per frame would make the sampler the busiest thread.
    known = _files.get(filename)
    if known is None:
        ours = filename.startswith(PROJECT_DIR) and "site-packages" not in filename
        known = _files[filename] = (os.path.basename(filename), ours)
    return known


def _frames(frame: object) -> list[tuple[str, bool]]:
    """(\"file:line function\", is project code) pairs, innermost first."""
    names = []
    while frame is not None:
        code = frame.f_code  # type: ignore[attr-defined]
        base, ours = _file(code.co_filename)
        names.append((f"{base}:{frame.f_lineno} {code.co_name}", ours))  # type: ignore[attr-defined]
        frame = frame.f_back  # type: ignore[attr-defined]
    return names


class Sampler:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.stacks: Counter[tuple[str, ...]] = Counter()
        self.roots: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()

    def run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(INTERVAL_S):
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident != me:
                    self._record(_frames(frame))

    def _record(self, frames: list[tuple[str, bool]]) -> None:
        root = next((name.split(" ")[1] for name, _ in frames if name.split(" ")[1] in ROOTS), None)
        if root is not None:
            inner = [name for name, _ in frames[:DEPTH]]
            ours = [f"... {name}" for name, mine in frames[DEPTH:] if mine][:PROJECT_FRAMES]
            self.roots[root] += 1
            self.stacks[(root, *inner, *ours)] += 1

    def write(self) -> None:
        self._stop.set()
        lines = [
            f"samples every {INTERVAL_S * 1000:g} ms: {self.samples}; thread-samples by task: {dict(self.roots)}"
        ]
        for stack, count in self.stacks.most_common(40):
            lines.append(f"\n{count:>7}  [{stack[0]}]")
            lines.extend(f"           {frame}" for frame in stack[1:])
        self.out.write_text("\n".join(lines) + "\n")


class CpuProfiles:
    """One cProfile per thread (a profiler only sees the thread that enabled it)."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []

    def install(self) -> None:
        threading.setprofile(self._start_in_thread)
        self._start_in_thread()

    def _start_in_thread(self, *_: object) -> None:
        profile = cProfile.Profile(time.thread_time)
        self.profiles.append(profile)
        profile.enable()  # replaces this hook for the thread

    def report(self, top: int = 120) -> str:
        for profile in self.profiles:
            profile.create_stats()
        stream = io.StringIO()
        stats = pstats.Stats(*[p for p in self.profiles if p.stats], stream=stream)  # type: ignore[attr-defined]
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top // 3)
        return stream.getvalue()


def main(argv: list[str]) -> None:
    out, command = Path(argv[0]), argv[argv.index("--") + 1 :]
    sampler = Sampler(out)
    threading.Thread(target=sampler.run, name="stack-sampler", daemon=True).start()
    cpu = CpuProfiles() if os.environ.get("BENCH_PROFILE") == "cpu" else None
    if cpu is not None:  # after the sampler's thread started: it is not profiled
        cpu.install()
        atexit.register(lambda: out.with_suffix(".cpu.txt").write_text(cpu.report()))
    atexit.register(sampler.write)
    sys.argv = command
    started = time.monotonic()
    try:
        from celery.__main__ import main as celery_main

        celery_main()
    finally:
        sampler.write()
        print(
            f"stack sampler: {time.monotonic() - started:.0f} s sampled into {out}", file=sys.stderr
        )


if __name__ == "__main__":
    main(sys.argv[1:])
