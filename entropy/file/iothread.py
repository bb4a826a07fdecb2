"""The single background I/O thread shared by the reader and the writer (CRCs and writes of large payloads).

zlib's CRC and ``os.pwrite`` release the GIL, so checksumming or writing one payload overlaps with coding or
decoding on the calling thread. The pool is re-created in a forked child (the parent's thread does not exist
there).
"""

from __future__ import annotations

import concurrent.futures
import os
import threading

__all__ = ["PARALLEL_CRC_BYTES", "io_pool"]

PARALLEL_CRC_BYTES = 1 << 20  # payloads at least this large are streamed (write) or checked (read) on a second thread
_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def io_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hqt-crc")
        return _POOL


def _forget_pool_after_fork() -> None:
    # a forked child has no copy of the pool's thread: start a fresh pool there
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)

