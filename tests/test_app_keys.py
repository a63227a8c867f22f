"""Several app keys (issue 23): the work of a run shared across the connections of ``kis_connections``,
each key with its own token and limit; a key KIS refuses alerted once and its work moved to the
others; every key refused, a clear failure. Against the simulator's several app keys."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, timedelta

import pytest
from simulated_day import CODES, Market, kst, task_states

from devtools import airflow_env
from kis import app_keys, minute_run
from kis.app_keys import hand_out, parse_connections
from kis.task_context import CollectionFailed, Run
from kis.venues import Venue
from kis.watchlist import load_watchlist
from simulator.app import DEFAULT_APPKEY, DEFAULT_APPSECRET

DAY = date(2026, 11, 25)
# The second account's key and secret share the first's prefix: the suite's scan of every test's
# output for the simulator's credentials (conftest.py) covers both.
FIRST, SECOND = (DEFAULT_APPKEY, DEFAULT_APPSECRET), (f"{DEFAULT_APPKEY}-2", f"{DEFAULT_APPSECRET}-2")
CONNECTIONS = ["kis_default", "kis_second"]
WATCHLIST = list(load_watchlist().codes)  # include/watchlist.csv: 50 codes


def data_requests(market: Market) -> dict[str, int]:
    """The data calls each app key made (its token calls left out)."""
    counters = market.sim.counters()
    return {
        key: counters["requests_by_appkey"].get(key, 0) - counters["tokens_issued_by_appkey"].get(key, 0)
        for key, _ in (FIRST, SECOND)
    }


def key_alerts(market: Market) -> list[tuple[str, str, str]]:
    return market.query(
        "SELECT details->>'conn_id', message, details::text FROM collection_alerts WHERE kind = 'key_refused'"
    )


@pytest.fixture
def two_keys(simulated_market, point_kis_at, monkeypatch) -> Callable[..., contextmanager]:
    """``with two_keys(codes=..., rate_limit=None, second="real", token_issue_interval=1, **run_simulator
    options) as market``: a simulator with two accounts, ``kis_default`` on the first and ``kis_second``
    on the second (``second="mock"``: a mock account's connection), both in ``kis_connections``;
    ``rate_limit`` is the simulator's limit and the connections' too."""

    @contextmanager
    def simulate(
        *, rate_limit: int | None = None, second: str = "real", token_issue_interval: float = 1, **options
    ) -> Iterator[Market]:
        with simulated_market(appkeys=[FIRST, SECOND], rate_limit=rate_limit, **options) as market:
            sim = market.sim
            extra = {"token_issue_interval": token_issue_interval} | ({"rate_limit": rate_limit} if rate_limit else {})
            point_kis_at(sim, **extra)
            monkeypatch.setenv(
                "AIRFLOW_CONN_KIS_SECOND",
                airflow_env.kis_connection(
                    sim.host, sim.port, environment=second, appkey=SECOND[0], appsecret=SECOND[1], **extra
                ),
            )
            monkeypatch.setenv("AIRFLOW_VAR_KIS_CONNECTIONS", json.dumps(CONNECTIONS))
            yield market

    return simulate


# --- handing out ----------------------------------------------------------------------------------


def test_kis_connections_is_a_json_list_of_connection_ids() -> None:
    assert parse_connections(None) == parse_connections(" ") == ("kis_default",)
    assert parse_connections('["kis_a", "kis_b", "kis_a"]') == ("kis_a", "kis_b")
    for bad in ("kis_a", "[]", '["kis_a", 3]', '{"kis_a": 1}'):
        with pytest.raises(ValueError, match="kis_connections must be a non-empty JSON list"):
            parse_connections(bad)


def test_one_key_takes_the_batches_in_the_watch_lists_order() -> None:
    batches = hand_out({Venue.KRX: list("abcde"), Venue.UNIFIED: list("ab")}, {"kis_default": 1.0}, 2)
    assert [(b["venue"], b["codes"]) for b in batches] == [
        ("krx", ["a", "b"]), ("krx", ["c", "d"]), ("krx", ["e"]), ("unified", ["a", "b"])
    ]
    assert {tuple(b["conn_ids"]) for b in batches} == {("kis_default",)}


def test_keys_share_the_codes_by_their_rates_and_alternate() -> None:
    codes = {Venue.KRX: [f"{n:06}" for n in range(50)], Venue.UNIFIED: [f"{n:06}" for n in range(7)]}
    even = hand_out(codes, {"a": 14.4, "b": 14.4, "c": 14.4}, 1)
    per_key = Counter(batch["conn_ids"][0] for batch in even)
    assert sorted(per_key.values()) == [19, 19, 19]  # 57 code-venues over three equal keys
    assert [batch["conn_ids"][0] for batch in even[:6]] == ["a", "b", "c"] * 2  # the pool's first tasks use every key
    assert {tuple(batch["conn_ids"]) for batch in even} == {("a", "b", "c"), ("b", "c", "a"), ("c", "a", "b")}
    uneven = hand_out({Venue.KRX: [f"{n:06}" for n in range(60)]}, {"real": 14.4, "half": 7.2}, 7)
    assert Counter(b["conn_ids"][0] for b in uneven for _ in b["codes"]) == {"real": 40, "half": 20}
    assert max(len(b["codes"]) for b in uneven) == 7
    assert sorted(code for b in uneven for code in b["codes"]) == [f"{n:06}" for n in range(60)]


def test_a_connection_that_is_not_there_is_named(two_keys, monkeypatch) -> None:
    with two_keys():
        monkeypatch.setenv("AIRFLOW_VAR_KIS_CONNECTIONS", '["kis_default", "kis_nowhere"]')
        with pytest.raises(CollectionFailed, match="'kis_nowhere' of kis_connections is not usable"):
            minute_run.plan_minute_run(Run("kis_minute_bars", "manual", kst("2026-11-25T10:31")))


# --- the minute run on two keys -------------------------------------------------------------------


@pytest.mark.solo  # a rate in real time: a test running beside it would bunch its requests
def test_the_watch_list_on_two_keys_shares_the_requests_evenly_within_each_keys_limit(two_keys) -> None:
    """The gate's batches fetched concurrently, as the pool runs them: each key asks half the codes,
    with one token, and never more than its limit in a second (the simulator at 5/s, paced at 4/s)."""
    codes = WATCHLIST[:24]
    with two_keys(codes=codes, rate_limit=5) as market:
        tick = kst("2026-11-25T10:31")
        market.sim.set_now(tick + timedelta(seconds=2))
        run = Run("kis_minute_bars", "concurrent", tick)
        batches = minute_run.plan_minute_run(run)
        assert Counter(batch["conn_ids"][0] for batch in batches) == {"kis_default": 12, "kis_second": 12}

        def fetch(batch: dict) -> dict:
            return minute_run.fetch_recent_bars(batch["codes"], run, conn_ids=batch["conn_ids"])

        with ThreadPoolExecutor(8) as pool:  # the pool kis_api's 8 slots
            fetched = list(pool.map(fetch, batches))
        assert sorted(code for value in fetched for code in value["fetched"]) == sorted(codes)
        counters = market.sim.counters()
        assert data_requests(market) == {FIRST[0]: 12, SECOND[0]: 12}
        assert counters["tokens_issued_by_appkey"] == {FIRST[0]: 1, SECOND[0]: 1}
        assert all(peak <= 5 for peak in counters["peak_per_second_by_appkey"].values()), counters
        assert counters["egw00201"] == 0


def test_minute_runs_on_two_keys_store_the_closed_truth(two_keys) -> None:
    with two_keys() as market:
        for tick in ("2026-11-25T10:31", "2026-11-25T10:32"):
            dag_run = market.run("kis_minute_bars", kst(tick))
            assert dag_run.state == "success"
        labels = sorted(ti.rendered_map_index for ti in dag_run.get_task_instances() if ti.task_id == "fetch_recent_bars")
        assert labels == sorted(f"{code} via {conn_id}" for code, conn_id in zip(CODES, CONNECTIONS * 2))
        for code, bars in market.stored(DAY).items():
            assert bars == [bar for bar in market.sim.truth(code, DAY) if bar.minute < kst("2026-11-25T10:32")][-31:]
        assert data_requests(market) == {FIRST[0]: 4, SECOND[0]: 4}  # 2 codes a key, 2 runs


# --- a refused key ----------------------------------------------------------------------------------


def test_a_key_refused_mid_run_is_alerted_once_and_its_codes_are_fetched_with_the_other(two_keys) -> None:
    codes = WATCHLIST[:8]
    # KIS's own token interval (60 s): the refusal kept in the key's row holds for the whole run.
    with two_keys(codes=codes, token_issue_interval=60) as market:
        market.sim.revoke_appkey(SECOND[0], after_requests=1)  # revoked after its first request of the run
        dag_run = market.run("kis_minute_bars", kst("2026-11-25T10:31"))
        assert dag_run.state == "success"
        # Each task moved on to the other key itself: every one succeeded at its first try.
        fetches = [ti for ti in dag_run.get_task_instances() if ti.task_id == "fetch_recent_bars"]
        assert {(ti.state, ti.try_number) for ti in fetches} == {("success", 1)}
        stored = market.stored(DAY, codes)
        for code in codes:
            assert stored[code] == [b for b in market.sim.truth(code, DAY) if b.minute < kst("2026-11-25T10:31")][-30:]
        # One alert, whatever the number of tasks that met the refusal: the connection, never the key.
        (conn_id, message, details), = key_alerts(market)
        assert conn_id == "kis_second" and "kis_second" in message and "EGW00103" in message
        assert not any(secret in text for text in (message, details) for secret in (*FIRST, *SECOND))
        # One answered, one refused; the key's other two tasks read the refusal from its token row and
        # moved on without asking KIS (a refused key asked again and again is what KIS locks out).
        assert data_requests(market)[SECOND[0]] == 1 + 1
        # Dated by today's clock, not by the day the run collects (kis.app_keys.refusal_day).
        assert market.query("SELECT trading_date FROM collection_alerts WHERE kind = 'key_refused'") == [
            (app_keys.refusal_day(),)
        ]

        before = data_requests(market)
        dag_run = market.run("kis_minute_bars", kst("2026-11-25T10:32"))
        assert dag_run.state == "success"
        after = data_requests(market)
        assert (after[FIRST[0]] - before[FIRST[0]], after[SECOND[0]] - before[SECOND[0]]) == (8, 0)
        assert len(key_alerts(market)) == 1
        stored = market.stored(DAY, codes)
        for code in codes:  # nothing stored before was lost
            assert stored[code] == [b for b in market.sim.truth(code, DAY) if b.minute < kst("2026-11-25T10:32")][-31:]

        # A run of another day, as an Airflow backfill of last week makes them, leaves the key out
        # too, and alerts nothing again.
        before = data_requests(market)
        dag_run = market.run("kis_minute_bars", kst("2026-11-24T10:31"))
        assert dag_run.state == "success"
        assert not any("kis_second" in (ti.rendered_map_index or "") for ti in dag_run.get_task_instances())
        assert data_requests(market)[SECOND[0]] == before[SECOND[0]]
        assert len(key_alerts(market)) == 1


def test_a_mock_keys_share_of_a_past_day_goes_to_the_real_key(two_keys) -> None:
    """A mock account cannot ask for a past day (KIS serves it to real accounts only): its codes go
    on with the batch's next key, without an alert, and nothing fails."""
    with two_keys(second="mock") as market:
        market.sim.set_now("2026-11-25T10:31:02+09:00")
        value = minute_run.fetch_recent_bars(
            CODES[:2], Run("kis_minute_bars", "cleared-next-day", kst("2026-11-24T10:31")),
            conn_ids=["kis_second", "kis_default"],
        )  # fmt: skip
        assert value["fetched"] == CODES[:2] and value["failed"] == {}
        # Each key's first request is the today page that tells it KIS's date; then the real key asked
        # the past-day endpoint once per code.
        assert data_requests(market) == {FIRST[0]: 1 + 2, SECOND[0]: 1}
        assert key_alerts(market) == []


def test_every_key_refused_fails_the_run_with_that_reason_and_keeps_what_was_stored(two_keys) -> None:
    with two_keys() as market:
        assert market.run("kis_minute_bars", kst("2026-11-25T10:31")).state == "success"
        stored = market.stored(DAY)
        for key, _ in (FIRST, SECOND):
            market.sim.revoke_appkey(key)
        dag_run = market.run("kis_minute_bars", kst("2026-11-25T10:32"))
        assert dag_run.state == "failed"
        assert set(task_states(dag_run)["fetch_recent_bars"]) == {"failed"}
        assert sorted(conn_id for conn_id, _, _ in key_alerts(market)) == CONNECTIONS
        # The later runs of the day ask nothing: the gate fails, naming the keys.
        before = market.sim.counters()["requests_by_appkey"]
        dag_run = market.run("kis_minute_bars", kst("2026-11-25T10:33"))
        assert dag_run.state == "failed" and task_states(dag_run)["session_gate"] == ["failed"]
        assert market.sim.counters()["requests_by_appkey"] == before
        with pytest.raises(CollectionFailed, match=r"KIS refused every app key of kis_connections today \(kis_default, kis_second"):
            minute_run.plan_minute_run(Run("kis_minute_bars", "manual", kst("2026-11-25T10:34")))
        assert market.stored(DAY) == stored


def test_a_fetch_task_whose_keys_are_all_refused_fails_without_retrying(two_keys) -> None:
    """The batch's own key, then the other: both refused, the task fails for good with that reason."""
    with two_keys() as market:
        for key, _ in (FIRST, SECOND):
            market.sim.revoke_appkey(key)
        market.sim.set_now("2026-11-25T10:31:02+09:00")
        with pytest.raises(CollectionFailed, match="KIS refused every app key .*kis_default, kis_second.*2 of 2 codes not fetched"):
            minute_run.fetch_recent_bars(CODES[:2], Run("kis_minute_bars", "r", kst("2026-11-25T10:31")), conn_ids=CONNECTIONS)


# --- the backfill on two keys ---------------------------------------------------------------------


def test_the_backfill_on_two_keys_equals_the_truth(two_keys) -> None:
    with two_keys() as market:
        dag_run = market.run("kis_minute_backfill", kst("2026-11-25T16:00"))
        assert dag_run.state == "success"
        stored = market.stored(DAY)
        for code in CODES:
            assert stored[code] == market.sim.truth(code, DAY), code
        labels = [ti.rendered_map_index for ti in dag_run.get_task_instances() if ti.task_id == "fetch_session_bars"]
        assert Counter(label.rsplit(" via ", 1)[1] for label in labels) == {"kis_default": 2, "kis_second": 2}
        requests = data_requests(market)
        assert requests[FIRST[0]] > 0 and requests[SECOND[0]] > 0
        assert sum(requests.values()) == market.data_requests()
        assert app_keys.KEY_REFUSED not in {kind for (kind,) in market.query("SELECT kind FROM collection_alerts")}


@pytest.mark.parametrize("dag_id, task_id", [("kis_minute_bars", "fetch_recent_bars"), ("kis_minute_backfill", "fetch_session_bars")])
def test_a_batch_handed_out_before_several_keys_is_still_fetched(dagbag, dag_id: str, task_id: str) -> None:
    """A fetch task of a run made before the upgrade, cleared in the grid: its batch has no
    ``conn_ids``, and the task takes the default connection (kis.batches.fetch_batch)."""
    import inspect

    task = dagbag.get_dag(dag_id).get_task(task_id)
    assert inspect.signature(task.python_callable).parameters["conn_ids"].default is None
