"""Many worker processes sharing one app key: one token, and the aggregate rate under the limit.

The workers are forked after the hook is imported here, so each starts without paying Airflow's
import; each builds its own hook (an HTTP session and a state connection must not cross a fork).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
import pytest

# Imported here, before the fork, as in a real task process: mask_secret() imports it on first use.
import airflow.sdk.execution_time.task_runner  # noqa: F401
from kis import schema
from kis.bar import KST
from kis.hook import KisHook
from simulator.app import RATE_LIMITS
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


# Solo: an arrival is stamped when the sender and the simulator's thread get the CPU. The more
# processes share the 2 cores, the more late requests bunch with punctual ones (peak 16/s alone,
# 18 beside three busy processes, 22 under pytest -n 2), past the jitter the limiter's 0.8 covers.
@pytest.mark.solo
@pytest.mark.parametrize(
    ("mode", "processes", "calls"),
    # Long enough to fill several one-second windows at the hook's pace (14.4/s and 0.8/s).
    [("real", 8, 15), ("mock", 4, 2)],
    ids=["real", "mock"],
)
def test_processes_hammering_stay_under_the_limit(
    point_kis_at: Callable[..., None], mode: str, processes: int, calls: int
) -> None:
    limit = RATE_LIMITS[mode]  # KIS's: 18/s on a real account, 1/s on a mock one
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


# --- the pacing itself ----------------------------------------------------------------------------
# A peak count of arrivals only bites when a run is fast enough to fill a second; the slots the
# shared limiter hands out say it outright. A trigger on the limiter's row logs every slot as the
# database computed it (the new theoretical arrival time less one interval), free of any scheduling
# noise of the processes; each process logs when its acquire() returned, to show it slept until its slot.

SLOT_LOG_SQL = """
CREATE TABLE rate_slots (tat timestamptz NOT NULL);
CREATE FUNCTION log_rate_slot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rate_slots VALUES (NEW.tat);
    RETURN NEW;
END $$;
CREATE TRIGGER log_rate_slot AFTER INSERT OR UPDATE ON kis_api_rate FOR EACH ROW EXECUTE FUNCTION log_rate_slot();
"""


def _acquirer(barrier: Any, results: Any, release: Any, calls: int) -> None:
    """Runs in a forked process: ``calls`` slots of the hook's limiter; reports when each came."""
    try:
        with KisHook() as hook:
            limiter = hook.get_conn().limiter
            barrier.wait(timeout=30)
            woke = []
            for _ in range(calls):
                limiter.acquire()
                woke.append(time.time())
            outcome: tuple[bool, list[float], str] = (True, woke, "")
    except Exception as exc:
        outcome = (False, [], f"{type(exc).__name__}: {exc}")
    results.put(outcome)
    release.wait(timeout=120)


@pytest.mark.parametrize(("mode", "rate"), [("real", 20), ("mock", 2)], ids=["20-per-second", "2-per-second"])
def test_the_shared_limiter_spaces_slots_by_rate_times_safety(
    point_kis_at: Callable[..., None], market_dsn: str, mode: str, rate: int
) -> None:
    """Slots across processes are at least 1 / (rate x 0.8) apart (the default safety), and no
    process goes before its slot: at most floor(rate x 0.8) + 1 requests fall in any one second."""
    processes, calls = (6, 8) if mode == "real" else (3, 2)
    interval = 1 / (rate * 0.8)  # the rate set below, and the connection's default safety (0.8)
    with run_simulator(mode=mode) as sim:  # only the connection is needed: no request is sent
        point_kis_at(sim, rate_limit=rate)
        with psycopg.connect(market_dsn, autocommit=True) as conn:
            schema.migrate(conn)  # the limiter's table, as the gate or the first request creates it
            conn.execute(SLOT_LOG_SQL)
        barrier, results, release = FORK.Barrier(processes), FORK.Queue(), FORK.Event()
        workers = [FORK.Process(target=_acquirer, args=(barrier, results, release, calls)) for _ in range(processes)]
        for worker in workers:
            worker.start()
        try:
            outcomes = [results.get(timeout=120) for _ in workers]
        finally:
            release.set()
            for worker in workers:
                worker.join(timeout=30)
        with psycopg.connect(market_dsn) as conn:
            tats = [row[0].timestamp() for row in conn.execute("SELECT tat FROM rate_slots ORDER BY tat")]

    assert all(ok for ok, *_ in outcomes), [error for ok, _, error in outcomes if not ok]
    slots = [tat - interval for tat in tats]
    assert len(slots) == processes * calls
    gaps = [later - earlier for earlier, later in zip(slots, slots[1:])]
    print(f"\n{processes} processes x {calls} slots at {rate}/s x 0.8: spacing min {min(gaps) * 1000:.2f} ms, "
          f"max {max(gaps) * 1000:.2f} ms, wanted {interval * 1000:.2f} ms")
    assert min(gaps) >= interval - 0.0005  # half a millisecond: the slots are computed, not measured
    # Every process slept until its slot: the k-th acquire to return came no sooner than the k-th slot.
    woke = sorted(t for _, times, _ in outcomes for t in times)
    assert all(w >= s - 0.002 for w, s in zip(woke, slots)), [(w - s) for w, s in zip(woke, slots) if w < s - 0.002]
