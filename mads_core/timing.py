"""Wall-clock and CPU seconds of a block, for benchmarks (``bench/*.py``) and progress reports.

On shared, loaded cores the wall time measures the neighbours too; the CPU time (this
process, user + system, all threads: ``time.process_time``) is what the work costs. On an
idle core a single-threaded stage takes about its CPU time.
"""

from __future__ import annotations

import time


class Timer:
    """``with Timer() as t: ...`` then ``t.wall`` and ``t.cpu`` (float seconds)."""

    wall: float = 0.0
    cpu: float = 0.0

    def __enter__(self) -> Timer:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
