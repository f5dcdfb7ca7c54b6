"""The lookup pool and the caches in front of it: a stuck domain delays nobody else, and the
same lookup running twice at once is asked once. Threads, no network."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait

import pytest

from reputable.milter.lookups import LookupPool, site_of
from reputable.reputation import TtlCache, WouldBlock, forbid_waiting

WAIT_S = 10.0  # every wait is bounded: a pool that loses a job fails the test, never hangs it


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Jobs that wait on it stand for lookups whose name servers never answer."""
    stuck = threading.Event()
    yield stuck
    stuck.set()


def held(stuck: threading.Event, started: list[str], name: str) -> Callable[[], str]:
    def job() -> str:
        started.append(name)
        stuck.wait(WAIT_S)
        return name

    return job


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.002)


@pytest.mark.parametrize(
    ("domain", "site"),
    [
        ("example.com", "example.com"),
        ("mail.example.com", "example.com"),
        ("a.b.stuck.example.", "stuck.example"),
        ("news.example.co.uk", "example.co.uk"),
        ("x.evil.de", "evil.de"),
        ("Example.ORG", "example.org"),
        ("localhost", "localhost"),
        ("", ""),
    ],
)
def test_a_site_is_the_registered_domain_as_near_as_a_name_tells(domain: str, site: str) -> None:
    assert site_of(domain) == site


def test_a_fresh_site_starts_at_once_while_others_are_stuck(gate: threading.Event) -> None:
    pool = LookupPool(max_threads=64, per_site=4)
    started: list[str] = []
    try:
        stuck = [
            pool.submit_to(f"stuck{i}.example", held(gate, started, f"s{i}")) for i in range(40)
        ]
        until(lambda: len(started) == 40)  # one thread each: none waits for another site
        fresh = pool.submit_to("fresh.example", lambda: "fresh")
        assert fresh.result(WAIT_S) == "fresh"
        assert not any(f.done() for f in stuck)
    finally:
        gate.set()
        pool.shutdown()
    assert pool.threads == 0


def test_one_site_holds_at_most_per_site_threads_and_waits_in_its_own_queue(
    gate: threading.Event,
) -> None:
    pool = LookupPool(max_threads=8, per_site=2)
    started: list[str] = []
    try:
        flood = [pool.submit_to("flood.example", held(gate, started, f"f{i}")) for i in range(20)]
        until(lambda: len(started) == 2)
        time.sleep(0.05)
        assert len(started) == 2 and pool.threads == 2  # the other 18 wait, holding no thread
        assert pool.submit_to("other.example", lambda: "other").result(WAIT_S) == "other"
        gate.set()
        done, _ = wait(flood, WAIT_S)
        assert len(done) == 20
    finally:
        gate.set()
        pool.shutdown()


def test_when_every_thread_is_busy_the_sites_take_turns(gate: threading.Event) -> None:
    pool = LookupPool(max_threads=1, per_site=4)
    order: list[str] = []
    blocker = pool.submit_to("a.example", held(gate, order, "a0"))
    until(lambda: order == ["a0"])
    jobs = [
        pool.submit_to(site, functools.partial(order.append, name))
        for site, name in [
            ("a.example", "a1"),
            ("a.example", "a2"),
            ("a.example", "a3"),
            ("b.example", "b1"),
            ("c.example", "c1"),
        ]
    ]
    gate.set()
    blocker.result(WAIT_S)
    wait(jobs, WAIT_S)
    pool.shutdown()
    assert order == ["a0", "a1", "b1", "c1", "a2", "a3"]


def test_idle_threads_end_and_come_back_when_needed() -> None:
    pool = LookupPool(max_threads=4, per_site=4, idle_s=0.05)
    assert wait([pool.submit(lambda: None) for _ in range(4)], WAIT_S).not_done == set()
    until(lambda: pool.threads == 0)
    assert pool.submit(lambda: 7).result(WAIT_S) == 7
    pool.shutdown()


def test_a_failing_job_fails_its_future_only() -> None:
    pool = LookupPool()

    def broken() -> None:
        raise OSError("no route")

    failed = pool.submit(broken)
    assert isinstance(failed.exception(WAIT_S), OSError)
    assert pool.submit(lambda: "next").result(WAIT_S) == "next"
    pool.shutdown()


def test_shutdown_cancels_what_waits_and_refuses_more(gate: threading.Event) -> None:
    pool = LookupPool(max_threads=1)
    started: list[str] = []
    running = pool.submit(held(gate, started, "r"))
    waiting = pool.submit(lambda: "never")
    until(lambda: started == ["r"])
    pool.shutdown(wait=False, cancel_futures=True)
    assert waiting.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
    gate.set()
    assert running.result(WAIT_S) == "r"
    until(lambda: pool.threads == 0)


def test_the_same_key_loading_twice_at_once_is_loaded_once(gate: threading.Event) -> None:
    cache: TtlCache[tuple[str, str], str] = TtlCache(domain_of=lambda key: key[1])
    loads: list[str] = []

    def load() -> tuple[str, int]:
        loads.append("query")
        gate.wait(WAIT_S)
        return "temperror", 30

    results: list[Future[str]] = []
    pool = LookupPool()
    try:
        results = [
            pool.submit(cache.get_or_load, ("192.0.2.25", "slow.example"), load) for _ in range(8)
        ]
        until(lambda: len(loads) == 1)
        time.sleep(0.05)
        gate.set()
        assert [f.result(WAIT_S) for f in results] == ["temperror"] * 8
        assert loads == ["query"]
    finally:
        gate.set()
        pool.shutdown()


def test_a_failed_load_fails_those_waiting_for_it_and_is_tried_again_later() -> None:
    cache: TtlCache[str, str] = TtlCache()
    calls: list[int] = []

    def broken() -> tuple[str, int]:
        calls.append(1)
        raise RuntimeError("resolver broken")

    with pytest.raises(RuntimeError):
        cache.get_or_load("d.example", broken)
    assert cache.get_or_load("d.example", lambda: ("ok", 60)) == "ok"
    assert calls == [1]


def test_a_miss_where_waiting_is_forbidden_names_the_domain() -> None:
    cache: TtlCache[tuple[str, str], str] = TtlCache(domain_of=lambda key: key[1])
    forbid_waiting()
    try:
        with pytest.raises(WouldBlock) as miss:
            cache.get_or_load(("192.0.2.25", "fresh.example"), lambda: ("pass", 60))
    finally:
        forbid_waiting(False)
    assert miss.value.domain == "fresh.example"
