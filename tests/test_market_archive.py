"""The market archive (kis_market_archive, issue 23 step 3): a universe of 120 codes on three app
keys, archived with dag.test() against the simulator: bar for bar its truth, at the floor of
requests, resumable without a code-day fetched twice, a halted code explained; the Variable
``kis_archive_universe`` parsed with a clear error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta

import psycopg
import pytest
from simulated_day import Market, announced, kst, store_universe, task_states

from devtools import airflow_env
from kis import schema
from kis.archive_scope import UniverseSelection
from kis.masters import StockMarket
from simulator.app import DEFAULT_APPKEY, DEFAULT_APPSECRET

DAY = date(2026, 11, 25)
RUN_AT = kst("2026-11-26T16:40")  # the next day: KIS serves DAY from its past-day endpoint
KEYS = [(DEFAULT_APPKEY, DEFAULT_APPSECRET)] + [(f"{DEFAULT_APPKEY}-{n}", f"{DEFAULT_APPSECRET}-{n}") for n in (2, 3)]
CONNECTIONS = ["kis_default", "kis_second", "kis_third"]
# Codes the simulator's listing does not govern: they trade every session (simulator/listings.py).
STOCKS = [f"{n:06}" for n in range(100, 220)]
HALTED = STOCKS[7]  # halted all day, per the universe and in the simulator
ETF = "000990"  # in the universe, not a stock: not archived by default
# A full KRX day on the past-day endpoint: 381 bars at 120 rows a page, and the day volume.
REQUESTS_PER_CODE_DAY = -(-381 // 120) + 1


@contextmanager
def archive_market(simulated_market, monkeypatch, **options) -> Iterator[Market]:
    """The simulator with three accounts, ``kis_connections`` on them, and DAY's universe: STOCKS
    (HALTED halted) and ETF, KOSPI and KOSDAQ; 20 codes a fetch task."""
    halts = [{"code": HALTED, "start": "08:00", "end": "20:00", "date": DAY.isoformat()}]
    with simulated_market(appkeys=KEYS, rate_limit=1000, faults={"halts": halts}, now=RUN_AT.isoformat(), **options) as market:
        sim = market.sim
        for conn_id, (appkey, appsecret) in zip(CONNECTIONS, KEYS):
            monkeypatch.setenv(
                f"AIRFLOW_CONN_{conn_id.upper()}",
                airflow_env.kis_connection(
                    sim.host, sim.port, appkey=appkey, appsecret=appsecret, rate_limit=1000, token_issue_interval=1
                ),
            )
        monkeypatch.setenv("AIRFLOW_VAR_KIS_CONNECTIONS", json.dumps(CONNECTIONS))
        monkeypatch.setenv("AIRFLOW_VAR_KIS_ARCHIVE_CODES_PER_TASK", "20")
        load_universe(market.dsn)
        yield market


def load_universe(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        schema.migrate(conn, today=DAY)
        members = {code: ("kospi" if i % 2 else "kosdaq", "ST", code == HALTED) for i, code in enumerate(STOCKS)}
        store_universe(conn, DAY, members | {ETF: ("kospi", "EF", False)})


def traded(market: Market, code: str) -> list:
    """The simulator's truth of ``code`` on DAY as the past-day endpoint serves it: its minutes with trades."""
    return [bar for bar in market.sim.truth(code, DAY) if bar.volume > 0]


def archive(market: Market):
    return market.run("kis_market_archive", RUN_AT, conf={"date": DAY.isoformat()})


def counts_pushed(dag_run) -> list[dict]:
    """The XCom of each archive_batch task of ``dag_run``."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(XComModel.value).where(
                XComModel.dag_id == "kis_market_archive", XComModel.run_id == dag_run.run_id,
                XComModel.task_id == "archive_batch", XComModel.key == "return_value",
            )
        ).all()
    return [json.loads(value) if isinstance(value, str) else value for value in rows]


def statuses(market: Market) -> dict[str, str]:
    return dict(market.query("SELECT stock_code, status FROM minute_verification WHERE trading_date = %s", DAY))


def test_the_archive_of_a_day_is_the_truth_at_the_floor_of_requests_and_a_rerun_asks_nothing(
    simulated_market, monkeypatch
) -> None:
    with archive_market(simulated_market, monkeypatch) as market:
        dag_run = archive(market)
        assert dag_run.state == "success", task_states(dag_run)
        fetches = [ti for ti in dag_run.get_task_instances() if ti.task_id == "archive_batch"]
        assert len(fetches) == 6  # 120 codes, 20 a task
        assert {ti.rendered_map_index.rsplit(" via ", 1)[1] for ti in fetches} == set(CONNECTIONS)

        stored = market.stored(DAY, STOCKS)
        assert set(stored) == set(STOCKS)  # the ETF is not a stock: not archived
        for code in STOCKS:
            # The past-day endpoint leaves out the minutes without trades.
            assert stored[code] == traded(market, code), code
        assert stored[HALTED] == []
        # A day with minutes without trades is explained, or unverifiable where KIS's day volume
        # counts off-session trades; the halted code's day, without a trade, is explained.
        verified = statuses(market)
        assert verified.pop(HALTED) == "complete_with_explained_absences"
        assert set(verified) == set(STOCKS) - {HALTED}
        for code, status in verified.items():
            full = len(stored[code]) == 381
            assert status == "complete" if full else status in ("complete_with_explained_absences", "unverifiable"), code
        # The floor: each code-day's pages once; the halted code's day is one empty page and its
        # volume. Plus one request a task: its hook's first, to the today endpoint, which tells
        # KIS's clock (kis.hook: KIS's today decides the endpoint).
        pages = market.data_requests()
        assert pages == REQUESTS_PER_CODE_DAY * (len(STOCKS) - 1) + 2 + len(fetches)

        # Each task's XCom is its counts: the same few keys whatever the bars, no list of anything.
        pushed = counts_pushed(dag_run)
        assert len(pushed) == 6 and sum(value["bars"] for value in pushed) == sum(map(len, stored.values()))
        assert sum(value["pages"] for value in pushed) == pages
        for value in pushed:
            assert set(value) == {"venue", "codes", "settled_before", "fetched", "failed", "pages", "bars", "inserted", "updated", "statuses"}
            assert not any(isinstance(item, list) for item in value.values())
            assert len(json.dumps(value)) < 300

        (event,) = announced_archive(dag_run)
        assert event.asset.name == "kis_market_archive_krx"
        assert event.extra["date"] == DAY.isoformat() and event.extra["code_count"] == len(STOCKS)
        assert "codes" not in event.extra

        again = archive(market)
        assert again.state == "success"
        assert task_states(again)["archive_batch"] == ["skipped"] and task_states(again)["close_day"] == ["skipped"]
        assert market.data_requests() == pages


def announced_archive(dag_run) -> list:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload

    with create_session() as session:
        return list(
            session.scalars(
                select(AssetEvent).options(joinedload(AssetEvent.asset)).where(
                    AssetEvent.source_dag_id == dag_run.dag_id, AssetEvent.source_run_id == dag_run.run_id
                )
            )
        )


def test_an_interrupted_day_resumes_without_fetching_a_code_day_twice(simulated_market, monkeypatch) -> None:
    from kis.errors import KisTransientError
    from kis.hook import KisHook

    failing_code = STOCKS[30]
    original = KisHook.session_bars

    def session_bars(self, code, session):
        if code == failing_code:
            raise KisTransientError("HTTP503", "Service Unavailable", 503)
        return original(self, code, session)

    with archive_market(simulated_market, monkeypatch) as market:
        monkeypatch.setattr(KisHook, "session_bars", session_bars)
        monkeypatch.setattr(market.dagbag.get_dag("kis_market_archive").get_task("archive_batch"), "retry_delay", timedelta(0))
        dag_run = archive(market)
        assert dag_run.state == "failed"
        assert task_states(dag_run)["close_day"] == ["failed"]
        # The failing code's task tried three times; its other 19 codes were stored and verified
        # at the first try, and the retries asked only the failing code again.
        pushed = counts_pushed(dag_run)
        (failed,) = [value for value in pushed if value["failed"]]
        assert (failed["fetched"], failed["settled_before"], failed["codes"]) == (0, 19, 20)
        assert failing_code not in statuses(market) and len(statuses(market)) == len(STOCKS) - 1
        first = market.data_requests()

        monkeypatch.setattr(KisHook, "session_bars", original)
        again = archive(market)
        assert again.state == "success", task_states(again)
        assert len(task_states(again)["archive_batch"]) == 1
        assert market.data_requests() - first == REQUESTS_PER_CODE_DAY + 1  # that code's day and the task's clock probe
        assert market.stored(DAY, [failing_code])[failing_code] == traded(market, failing_code)
        assert len(announced_archive(again)) == 1


def test_a_key_refused_mid_day_moves_its_codes_to_the_others(simulated_market, monkeypatch) -> None:
    with archive_market(simulated_market, monkeypatch) as market:
        market.sim.revoke_appkey(KEYS[2][0], after_requests=12)
        dag_run = archive(market)
        assert dag_run.state == "success", task_states(dag_run)
        stored = market.stored(DAY, STOCKS)
        for code in STOCKS:
            assert stored[code] == traded(market, code), code
        # Every code-day's pages answered once: no code fetched twice. A probe of KIS's clock per
        # task, and one more for the key that took over mid-task (its hook's first request).
        answered = sum(value["pages"] for value in counts_pushed(dag_run))
        assert answered == REQUESTS_PER_CODE_DAY * (len(STOCKS) - 1) + 2 + 6 + 1
        (alert,) = market.query("SELECT details->>'conn_id' FROM collection_alerts WHERE kind = 'key_refused'")
        assert alert == ("kis_third",)


def test_kis_archive_universe_is_a_json_object_of_markets_and_groups() -> None:
    assert UniverseSelection.parse(None) == UniverseSelection((StockMarket.KOSPI, StockMarket.KOSDAQ), ("ST",))
    assert UniverseSelection.parse('{"markets": ["konex"], "groups": null}') == UniverseSelection((StockMarket.KONEX,), None)
    for bad in ("ST", "[]", '{"markets": ["NYSE"]}', '{"markets": []}', '{"groups": ["st"]}', '{"sectors": 1}'):
        with pytest.raises(ValueError, match="kis_archive_universe"):
            UniverseSelection.parse(bad)


def test_nextrade_archives_the_codes_it_trades_and_leaves_the_others_out(simulated_market, monkeypatch) -> None:
    on_nextrade = STOCKS[:10]
    with archive_market(simulated_market, monkeypatch, nxt_codes=on_nextrade) as market:
        monkeypatch.setenv("AIRFLOW_VAR_KIS_VENUES", '["krx", "nxt"]')
        dag_run = archive(market)
        assert dag_run.state == "success", task_states(dag_run)
        stored = market.stored(DAY, on_nextrade, venue="nxt")
        assert set(stored) == set(on_nextrade)
        for code in on_nextrade:
            assert stored[code] == [b for b in market.sim.truth(code, DAY, venue="nxt") if b.volume > 0], code
        # KIS answers the others as unknown on Nextrade: reported once each, as information, not verified.
        (left_out,) = market.query("SELECT count(*) FROM collection_alerts WHERE kind = 'not_on_venue' AND venue = 'nxt'")
        assert left_out == (len(STOCKS) - len(on_nextrade),)
        verified = market.query("SELECT venue, count(*) FROM minute_verification GROUP BY venue ORDER BY venue")
        assert verified == [("krx", len(STOCKS)), ("nxt", len(on_nextrade))]
        events = {event.asset.name: event.extra["code_count"] for event in announced_archive(dag_run)}
        assert events == {"kis_market_archive_krx": len(STOCKS), "kis_market_archive_nxt": len(on_nextrade)}
