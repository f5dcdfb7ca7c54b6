"""The lookup pool: worker threads for the callbacks that wait on DNS, queued fairly by site. I/O.

A callback whose lookups are not cached (end of headers: SPF, DMARC of a domain
seen for the first time) runs on a worker while its connection waits. A lookup
for a domain whose name servers never answer holds its worker for up to
[dns] timeout; with a fixed pool and one queue, a few dozen such messages make
a message from any other fresh domain wait for all of them. Here:

- a job starts at once on an idle thread, or a new one, up to `MAX_THREADS`:
  stuck lookups for other domains never delay a fresh domain's;
- at most `PER_SITE` jobs of one site run at once (a site: see `site_of`); the
  others wait in that site's queue, and the queues are served round robin, so
  a flood of names under one domain holds a few threads, not the pool;
- a thread left idle for `IDLE_S` ends.

Identical lookups running at once are merged by the caches themselves
(`reputable.reputation.TtlCache`).
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

MAX_THREADS = 128
PER_SITE = 4
IDLE_S = 30.0


def site_of(domain: str) -> str:
    """The queue a domain's lookups wait in: its last two labels, three under a country code
    with a short second label ("example.co.uk"). An approximation of the registered domain
    that needs no lookup, so that the names under one domain share one queue."""
    labels = domain.lower().rstrip(".").split(".")
    short_suffix = len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3
    return ".".join(labels[-3:] if short_suffix else labels[-2:])


@dataclass(slots=True)
class _Job:
    site: str
    future: Future[Any]
    call: Callable[[], Any]


class _Idle:
    """A thread waiting for work: a job is handed to it directly."""

    __slots__ = ("job", "wake")

    def __init__(self) -> None:
        self.job: _Job | None = None
        self.wake = threading.Event()


class LookupPool(Executor):
    """An executor whose threads grow on demand, with one queue per site served round robin."""

    def __init__(
        self, max_threads: int = MAX_THREADS, per_site: int = PER_SITE, idle_s: float = IDLE_S
    ) -> None:
        self.max_threads = max_threads
        self.per_site = per_site
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._queues: dict[str, deque[_Job]] = {}  # sites with jobs waiting, in serving order
        self._running: dict[str, int] = {}
        self._idle: list[_Idle] = []
        self._threads = 0
        self._gone = threading.Condition(self._lock)
        self._stopped = False

    @property
    def threads(self) -> int:
        return self._threads

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return self.submit_to("", fn, *args, **kwargs)

    def submit_to(
        self, site: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[T]:
        """Run *fn* on a worker, in *site*'s turn."""
        future: Future[T] = Future()
        job = _Job(site, future, functools.partial(fn, *args, **kwargs))
        with self._lock:
            if self._stopped:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if site in self._queues or not self._start(job):
                self._queues.setdefault(site, deque()).append(job)
        return future

    def lane(self) -> Lane:
        return Lane(self)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._stopped = True
            if cancel_futures:
                for queue in self._queues.values():
                    for job in queue:
                        job.future.cancel()
                self._queues.clear()
            for idle in self._idle:
                idle.wake.set()  # with no job: the thread ends
            self._idle.clear()
            while wait and self._threads:
                self._gone.wait()

    # Under the lock

    def _start(self, job: _Job) -> bool:
        """Start *job* now if its site and the pool have room."""
        running = self._running.get(job.site, 0)
        if running >= self.per_site:
            return False
        if self._idle:
            idle = self._idle.pop()  # the latest to go idle: the others may retire
            idle.job = job
            idle.wake.set()
        elif self._threads < self.max_threads:
            self._threads += 1
            name = f"lookup-{self._threads}"
            threading.Thread(target=self._work, args=(job,), name=name, daemon=True).start()
        else:
            return False
        self._running[job.site] = running + 1
        return True

    def _pick(self) -> _Job | None:
        """The first waiting job of the next site with room; that site goes to the back."""
        for site in self._queues:
            if self._running.get(site, 0) < self.per_site:
                break
        else:
            return None
        queue = self._queues.pop(site)
        job = queue.popleft()
        if queue:
            self._queues[site] = queue
        self._running[site] = self._running.get(site, 0) + 1
        return job

    def _finished(self, site: str) -> None:
        left = self._running[site] - 1
        if left:
            self._running[site] = left
        else:
            del self._running[site]

    # On a worker thread

    def _work(self, job: _Job | None) -> None:
        while job is not None:
            if job.future.set_running_or_notify_cancel():
                try:
                    result = job.call()
                except BaseException as exc:  # the caller's to see, as ThreadPoolExecutor does
                    job.future.set_exception(exc)
                else:
                    job.future.set_result(result)
            job = self._next(job.site)

    def _next(self, done: str) -> _Job | None:
        """The next job for this thread, waiting up to idle_s for one; None: the thread ends."""
        with self._lock:
            self._finished(done)
            job = self._pick()
            if job is not None:
                return job
            idle = _Idle()
            if not self._stopped:
                self._idle.append(idle)
        if not self._stopped:
            idle.wake.wait(self.idle_s)
        with self._lock:
            if idle.job is None:
                if idle in self._idle:
                    self._idle.remove(idle)
                self._threads -= 1
                self._gone.notify_all()
            return idle.job


class Lane(Executor):
    """The pool as one connection sees it: its jobs wait in the queue of the site its
    session names (`domain`, set by whoever creates the session)."""

    def __init__(self, pool: LookupPool) -> None:
        self.pool = pool
        self.domain: Callable[[], str] = str  # str() == "": no site yet

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return self.pool.submit_to(site_of(self.domain()), fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The pool is shared: only its owner shuts it down."""
