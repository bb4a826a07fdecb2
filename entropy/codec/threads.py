"""How many threads the codec uses, and the worker pool that runs its chunk groups.

Every coding and decoding entry point takes ``threads``: ``None`` (the default) uses every core this process may
run on (its CPU affinity, else ``os.cpu_count()``), ``1`` only the calling thread, ``N`` that many threads. The
kernels release the GIL (numba ``nogil``), so groups of chunks really run in parallel; chunks are independent
(FORMAT.md §6), so the result never depends on the thread count. Work too small to pay for a hand-over (tens of
microseconds per task) stays on the calling thread: see :func:`group_bounds`.

A ``with using(threads):`` block sets the default for the code it calls (the file writer uses it so that the
histograms of its layout search and the codec's encode follow ``save(threads=...)`` without every helper passing
it along). The default lives in a context variable: other threads and asyncio tasks keep their own.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np

from entropy.errors import EntropyError

__all__ = ["available_cores", "check_threads", "resolve", "using", "group_bounds", "run_groups", "PARALLEL_MIN_VALUES"]

#: fewest values (of input or output) a group of chunks must hold to be handed to another thread: below
#: ``2 * PARALLEL_MIN_VALUES`` a call runs on the calling thread alone. A hand-over costs about 20-50 us; a group of
#: this size takes about 0.3 ms to decode and 0.5 ms to code (measured, see the bench report)
PARALLEL_MIN_VALUES = 1 << 17

T = TypeVar("T")

_DEFAULT: contextvars.ContextVar[int | None] = contextvars.ContextVar("entropy_threads", default=None)
_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS reports one, else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(threads: object) -> int | None:
    """``threads`` validated: None, or an integer >= 1 (EntropyError otherwise)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or int(threads) < 1:
        raise EntropyError(f"threads must be None (all cores) or an integer >= 1, got {threads!r}")
    return int(threads)


def resolve(threads: int | None = None) -> int:
    """The number of threads to use: ``threads``, else the default of the enclosing :func:`using` block, else
    :func:`available_cores`."""
    t = check_threads(threads)
    if t is None:
        t = _DEFAULT.get()
    return available_cores() if t is None else t


@contextlib.contextmanager
def using(threads: int | None) -> Iterator[int]:
    """Within the block, codec calls without an explicit ``threads`` use ``threads`` (None: all cores)."""
    token = _DEFAULT.set(resolve(threads))
    try:
        yield _DEFAULT.get()
    finally:
        _DEFAULT.reset(token)


def group_bounds(n_items: int, work: int, threads: int, per_thread: int = 4) -> np.ndarray:
    """Cut ``n_items`` items (chunks, rows) holding ``work`` values into groups for ``threads`` threads.

    Returns int64 bounds ``[0, b1, ..., n_items]``: one group (no hand-over) when ``threads`` is 1 or the work is
    below ``2 * PARALLEL_MIN_VALUES``; else up to ``per_thread`` groups per thread (so that a thread slowed by
    another process leaves its share to the others), each of about ``PARALLEL_MIN_VALUES`` values or more, cut
    evenly by item count.
    """
    min_work = PARALLEL_MIN_VALUES
    if threads <= 1 or n_items <= 1 or work < 2 * min_work:
        return np.array([0, n_items], dtype=np.int64)
    groups = int(min(n_items, threads * per_thread, max(2, work // min_work)))
    return (np.arange(groups + 1, dtype=np.int64) * n_items) // groups


def _pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < workers:
            if _POOL is not None:
                _POOL.shutdown(wait=False)  # its idle threads exit; running tasks finish
            _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hqt-codec")
            _POOL_SIZE = workers
        return _POOL


def run_groups(fn: Callable[[int], T], n_groups: int, threads: int) -> list[T]:
    """``[fn(0), ..., fn(n_groups - 1)]``, run on ``min(threads, n_groups)`` threads (the calling one included),
    each taking the next group when it is done with one. Returns only when every group has finished (so no task
    still writes into a caller's buffer), then re-raises the first failure by group number."""
    results: list = [None] * n_groups
    workers = min(threads, n_groups)
    if workers <= 1:
        return [fn(g) for g in range(n_groups)]
    groups = iter(range(n_groups))
    lock = threading.Lock()
    errors: dict[int, BaseException] = {}

    def work() -> None:
        while True:
            with lock:
                g = next(groups, None)
            if g is None:
                return
            try:
                results[g] = fn(g)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after every group has finished
                errors[g] = exc

    pool = _pool(workers - 1)
    futures = [pool.submit(work) for _ in range(workers - 1)]
    try:
        work()
    finally:
        concurrent.futures.wait(futures)
    if errors:
        raise errors[min(errors)]
    return results


def _forget_pool_after_fork() -> None:
    # a forked child has no copy of the pool's threads: start a fresh pool there
    global _POOL, _POOL_SIZE, _POOL_LOCK
    _POOL, _POOL_SIZE, _POOL_LOCK = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)
