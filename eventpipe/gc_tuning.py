"""Keeping CPython's cyclic garbage collector off the hot paths of long-running eventpipe processes.

Both hot paths make many short-lived containers and almost no reference cycles: the
collector's in-flight requests wait for their bundle's ack, the processor holds a
micro-batch's rows until its insert. With CPython's default threshold (a young-generation
collection every 700 allocations) the collector spent 10 % of its samples in
``gc_collect_main``, and ``explode`` ran 13 % faster with it (benchmarks/README.md).
Objects alive after start-up are frozen (never scanned again) and the youngest
generation is collected every 50,000 allocations instead of 700. Reference counting
still frees almost everything at once; only cycles wait a little longer.
"""

from __future__ import annotations

import gc


def tune_gc() -> None:
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
