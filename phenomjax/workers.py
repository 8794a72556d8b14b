"""Independent runs on several cores: the capacity search's runs (docs/design.md §9) and the
groups of a phenomenological sweep (§6).

The models here are small: XLA gains little from a second thread at these widths (the demo's
transformer trains slower on two threads than on one), so independent work runs side by side
instead, one worker process per core, each pinned to its own core. Each item waits in a thread
of this process while it runs in a worker. Its numbers do not depend on how many workers there
are: each is one process's work from its config alone (tests/capacity/test_workers.py,
tests/phenom/test_sweep.py).

    with Workers(2) as w:
        w.map(lambda K: saturate(...), [23, 76, 228])   # three chains, two at a time
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import heapq
import itertools
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from .errors import PhenomjaxError

T = TypeVar("T")
R = TypeVar("R")


def cores() -> list[int]:
    """The cores this process may run on (all of os.cpu_count() where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def add_jobs(parser, what: str, auto: bool = False) -> None:
    """The --jobs flag of a command whose independent `what` run side by side; `auto`: its
    default (None) lets the command decide whether the work pays for the workers."""
    n = len(cores())
    default = (f"one per core ({n} here) when the work pays for starting them" if auto
               else f"this machine's {n} cores")  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, default=None if auto else n, metavar="N",
        help=f"worker processes, one core each, training {what} side by side (default: "
        f"{default}; 1: all in this process)",
    )  # fmt: skip


def check_jobs(n: int) -> int:
    """`n` if it is a worker count this machine can use (1 to its cores), else one error."""
    most = len(cores())  # more would only share cores, each worker holding its own JAX
    if not 1 <= n <= most:
        raise PhenomjaxError(
            f"jobs: expected an integer from 1 to {most} (the cores here), got {n}"
        )
    return n


# programs that compile faster than this are not worth a cache file (jax's default: 1 s)
CACHE_MIN_COMPILE_S = 0.1


@contextlib.contextmanager
def shared_compilations() -> Iterator[str | None]:
    """A folder for JAX's persistent compilation cache, shared by the workers started inside
    the block (Workers(n, cache=...)), so that a program several of them build compiles once.
    A model shape's initial draw (threefry) takes 1.9 s to compile and every worker of both
    of a fit's sweeps builds it; the demo's fit: 75.1 -> 66.9 s. The folder is a temporary
    one, removed at the end; None (the workers left as they are) when this process has a JAX
    cache folder of its own, whose settings are the user's."""
    import jax  # the workers run JAX anyway; this module stays importable without it

    if jax.config.jax_compilation_cache_dir:
        yield None
        return
    folder = tempfile.mkdtemp(prefix="phenomjax-xla-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _start(queue, cache: str | None) -> None:
    """A worker's initializer: one core each, before XLA starts its threads; the shared
    compilation cache (shared_compilations) before its first compilation."""
    core = queue.get()
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    if cache is not None:
        import jax

        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_S)


class Workers:
    """Runs functions in `n` worker processes (spawned, each pinned to one core of `cores()`,
    round robin), or in this process when n == 1. `map` runs its items concurrently in threads
    that wait on the workers; results come back in the items' order. When more runs wait than
    there are workers, the one with the largest `cost` goes first (longest first: the longest
    chain of budgets, the critical path, never waits behind short runs). `cache`: a folder of
    shared_compilations for the workers' compilations."""

    def __init__(self, n: int = 1, cache: str | None = None):
        self.n = check_jobs(n)
        self.cache = cache
        self._pool: cf.ProcessPoolExecutor | None = None
        self._free = n
        self._waiting: list[tuple[float, int]] = []  # (-cost, ticket): a heap
        self._tickets = itertools.count()
        self._turn = threading.Condition()
        self._mine = threading.local()  # .held: this thread holds a worker (hold)

    def __enter__(self) -> Workers:
        if self.n > 1:
            ctx = mp.get_context("spawn")  # JAX's threads do not survive a fork
            queue = ctx.Queue()
            have = cores()
            for i in range(self.n):
                queue.put(have[i % len(have)] if len(have) >= self.n else None)
            self._pool = cf.ProcessPoolExecutor(
                self.n, mp_context=ctx, initializer=_start, initargs=(queue, self.cache)
            )
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._pool is None:
            return
        if exc_type is not None:
            # interrupted or failed: stop the workers now rather than after their runs (a run
            # mid-dispatch may not see SIGINT for a minute); each run they leave `running`
            # resumes from its checkpoint next time (runs.reuse), every file written atomically
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()
        self._pool.shutdown(wait=exc_type is None, cancel_futures=True)
        self._pool = None

    @contextlib.contextmanager
    def _slot(self, cost: float) -> Iterator[None]:
        with self._turn:
            mine = (-cost, next(self._tickets))
            heapq.heappush(self._waiting, mine)
            self._turn.wait_for(lambda: self._free > 0 and self._waiting[0] == mine)
            heapq.heappop(self._waiting)
            self._free -= 1
            self._turn.notify_all()
        try:
            yield
        finally:
            with self._turn:
                self._free += 1
                self._turn.notify_all()

    @contextlib.contextmanager
    def hold(self, cost: float = 0.0) -> Iterator[None]:
        """Keep one worker for this thread's runs until the block ends (a chain of budgets,
        each run depending on the last: no short run slips in between them)."""
        if self._pool is None or getattr(self._mine, "held", False):
            yield
            return
        with self._slot(cost):
            self._mine.held = True
            try:
                yield
            finally:
                self._mine.held = False

    def run(self, fn: Callable[..., R], *args: Any, cost: float = 0.0, **kw: Any) -> R:
        """fn(*args, **kw) in a worker (here when n == 1), the costliest waiting run first (or
        on the worker this thread holds); a worker that dies is one error."""
        if self._pool is None:
            return fn(*args, **kw)
        try:
            with self.hold(cost):
                return self._pool.submit(fn, *args, **kw).result()
        except cf.process.BrokenProcessPool as e:
            raise PhenomjaxError(
                "a worker process died (out of memory or killed); run the same command "
                "again to resume from the finished runs"
            ) from e

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """[fn(x) for x in items], concurrently in threads when there are workers."""
        items = list(items)
        if self._pool is None or len(items) < 2:
            return [fn(x) for x in items]
        with cf.ThreadPoolExecutor(len(items)) as threads:
            return list(threads.map(fn, items))
