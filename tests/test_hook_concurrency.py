"""Many worker processes sharing one app key: one token, and the aggregate rate under the limit.

The workers are forked after the hook is imported here, so each starts without paying Airflow's
import; each builds its own hook (an HTTP session and a state connection must not cross a fork).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

# Imported here, before the fork, as in a real task process: mask_secret() imports it on first use.
import airflow.sdk.execution_time.task_runner  # noqa: F401
from kis.bars import KST
from kis.hook import KisHook
from simulator.testing import SimulatorHandle, run_simulator

pytestmark = pytest.mark.slow
CODES = ("005930", "000660", "035420", "068270")
FORK = multiprocessing.get_context("fork")


def _worker(barrier: Any, results: Any, release: Any, calls: int, until: datetime, index: int) -> None:
    """Runs in a forked process: ``calls`` recent_bars calls, then reports (ok, bars, EGW00201 retried).

    It exits only once released, so that no process teardown competes for the CPU (and delays the
    simulator thread's arrival stamps) while others are still calling.
    """
    outcome: tuple[bool, int, int, str]
    try:
        with KisHook() as hook:
            hook.get_conn()  # connect (and read the connections) first: a task's start, not the race under test
            barrier.wait(timeout=30)
            bars = sum(len(hook.recent_bars(CODES[(index + i) % len(CODES)], until=until).bars) for i in range(calls))
            outcome = (True, bars, hook.get_conn().counters["rate_limited"], "")
    except Exception as exc:  # reported to the parent; KIS errors carry no secrets
        outcome = (False, 0, 0, f"{type(exc).__name__}: {exc}")
    results.put(outcome)
    release.wait(timeout=120)


def _run_workers(
    sim: SimulatorHandle, processes: int, calls: int, until: datetime
) -> tuple[list[tuple[bool, int, int, str]], dict[str, Any]]:
    """Every worker's outcome, and the simulator's counters read before the workers exit."""
    barrier, results, release = FORK.Barrier(processes), FORK.Queue(), FORK.Event()
    workers = [
        FORK.Process(target=_worker, args=(barrier, results, release, calls, until, i)) for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=120) for _ in workers]
        counters = sim.counters()
    finally:
        release.set()
        for worker in workers:
            worker.join(timeout=30)
    return outcomes, counters


def test_fifty_processes_at_nine_get_exactly_one_token(point_kis_at: Callable[..., None]) -> None:
    with run_simulator(now="2026-11-25T09:01:05+09:00") as sim:
        point_kis_at(sim)
        outcomes, counters = _run_workers(sim, 50, 1, datetime(2026, 11, 25, 9, 0, tzinfo=KST))
    print(f"\n50 processes at 09:00: tokens issued {counters['tokens_issued']}, "
          f"tokenP calls {counters['requests_by_endpoint'].get('tokenP')}, peak {counters['peak_per_second']}/s")
    assert all(ok for ok, *_ in outcomes), [error for ok, *_, error in outcomes if not ok]
    assert counters["tokens_issued"] == 1
    assert counters["requests_by_endpoint"]["tokenP"] == 1
    # The peak is printed, not asserted, here: this burst is about the token. On a loaded 2-core host
    # the simulator thread (in this process) has stamped up to 27 arrivals in one second after the
    # 49 waiting processes were released together; the rate tests below assert the limit.


@pytest.mark.parametrize(
    ("mode", "limit", "processes", "calls"),
    [("real", 20, 8, 25), ("mock", 2, 4, 3)],
    ids=["20-per-second", "2-per-second"],
)
def test_processes_hammering_stay_under_the_limit(
    point_kis_at: Callable[..., None], mode: str, limit: int, processes: int, calls: int
) -> None:
    with run_simulator(mode=mode, now="2026-11-25T10:31:10+09:00") as sim:
        point_kis_at(sim)
        outcomes, counters = _run_workers(sim, processes, calls, datetime(2026, 11, 25, 10, 30, tzinfo=KST))
    data_calls = counters["requests_by_endpoint"]["inquire-time-itemchartprice"]
    print(f"\n{processes} processes x {calls} calls at {limit}/s ({mode}): peak {counters['peak_per_second']}/s, "
          f"data calls {data_calls}, EGW00201 {counters['egw00201']}, tokens issued {counters['tokens_issued']}")
    assert all(ok for ok, *_ in outcomes), [error for ok, *_, error in outcomes if not ok]
    assert all(bars == 30 * calls for _, bars, *_ in outcomes)  # every call returned its 30 bars
    assert counters["peak_per_second"] <= limit
    assert data_calls == processes * calls + counters["egw00201"]  # any EGW00201 was retried, none lost
    assert counters["tokens_issued"] == 1
