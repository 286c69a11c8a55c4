"""Long computations in background threads: one job per key, never started twice, with progress.

The app starts a job (e.g. a 2-D map of 52,000 samples) and keeps rendering; any rerun,
any session of the same server process, finds the same job by its key and reads its
progress, and later its result. Jobs run one at a time (``MAX_RUNNING``): on 2 cores two
UMAP layouts side by side only slow each other down, and the numba kernels of a layout hold
the interpreter lock while they run, so one job leaves the server responsive and two would
not. A job keeps its state (done with its result, or failed with its error) until
:func:`forget`; submitting the key again after that starts it afresh (a retry), so a job
that fails is never restarted behind the user's back on every rerun.

Nothing here imports Streamlit: the pages poll :func:`get` (e.g. from an
``st.fragment(run_every=...)``) and draw.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Progress = Callable[[str, float], None]  # (stage description, fraction done of the whole job)

# Jobs computing at the same time; the others wait in the "queued" state.
MAX_RUNNING = 1

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass
class Job:
    """One background computation. Read its fields from any thread; only the worker writes them."""

    key: str
    label: str
    state: str = QUEUED
    stage: str = "waiting for an earlier job"
    fraction: float = 0.0  # of the whole job, 0..1
    result: Any = None
    error: BaseException | None = None
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def active(self) -> bool:
        """Queued or running."""
        return self.state in (QUEUED, RUNNING)

    def elapsed(self) -> float:
        """Seconds since the job started running (0 while queued), up to its end."""
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is done or failed (True), or ``timeout`` seconds passed (False)."""
        return self._done.wait(timeout)


_LOCK = threading.Lock()
_SLOTS = threading.BoundedSemaphore(MAX_RUNNING)
_JOBS: dict[str, Job] = {}


def _run(job: Job, fn: Callable[[Progress], Any]) -> None:
    def progress(stage: str, fraction: float) -> None:
        f = float(fraction)
        job.stage, job.fraction = stage, min(max(f, 0.0), 1.0) if f == f else job.fraction  # NaN: keep the last

    with _SLOTS:
        job.state, job.stage, job.started = RUNNING, "starting", time.monotonic()
        try:
            job.result = fn(progress)
            job.fraction, job.stage, job.state = 1.0, "done", DONE
        except BaseException as exc:  # noqa: BLE001 - reported to the page, never lost in a thread
            job.error, job.stage, job.state = exc, f"failed: {exc}", FAILED
        finally:
            job.finished = time.monotonic()
            job._done.set()


def submit(key: str, fn: Callable[[Progress], Any], label: str = "") -> Job:
    """The job under ``key`` (in whatever state), else ``fn(progress)`` started in a new thread.

    ``fn`` receives a ``progress(stage, fraction)`` callback and returns the result
    (kept in ``Job.result``); an exception ends the job in the ``"failed"`` state with
    ``Job.error`` set. Thread-safe: concurrent calls with one key start one thread.
    """
    with _LOCK:
        job = _JOBS.get(key)
        if job is not None:
            return job
        job = Job(key, label or key)
        _JOBS[key] = job
        threading.Thread(target=_run, args=(job, fn), name=f"mads-job-{key[:40]}", daemon=True).start()
        return job


def get(key: str) -> Job | None:
    """The job under ``key`` (any state), or None when none was submitted."""
    with _LOCK:
        return _JOBS.get(key)


def forget(key: str) -> bool:
    """Drop a finished or failed job; True if one was dropped.

    A queued or running job is kept (its thread cannot be stopped): dropping it would let the
    next :func:`submit` start the same computation a second time beside it.
    """
    with _LOCK:
        job = _JOBS.get(key)
        if job is None or job.active:
            return False
        del _JOBS[key]
        return True


def active() -> list[Job]:
    """Every job still queued or running (e.g. to wait for them: ``for job in active(): job.wait()``)."""
    with _LOCK:
        return [job for job in _JOBS.values() if job.active]
