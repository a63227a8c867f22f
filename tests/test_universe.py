"""The universe (kis.universe) on PostgreSQL: master files of several days in, listings, delistings,
moves and halts out day by day, a watch-listed code that leaves alerted once, and bad files that
leave the last loaded day's universe as it was."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, Self

import psycopg
import pytest
from master_files import cp949, record, zipped
from simulated_day import task_states
from simulator.testing import run_simulator

from devtools import airflow_env

from kis import universe
from kis.bar import KST
from kis.task_context import CollectionFailed, Run
from kis.master_hook import KisMasterHook, MasterDownload, SimulatedMasters
from kis.masters import StockMarket
from kis.universe import UniverseRejected

KOSPI, KOSDAQ, KONEX = StockMarket.KOSPI, StockMarket.KOSDAQ, StockMarket.KONEX
MONDAY, TUESDAY, WEDNESDAY = date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)


class Masters:
    """KIS's download server as the task sees it (``KisMasterHook``): these files, served at ``at``."""

    def __init__(self, files: dict[StockMarket, bytes], at: datetime | None) -> None:
        self.files, self.at = files, at

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def download(self, market: StockMarket) -> MasterDownload:
        return MasterDownload(market, f"https://masters.test{market.path}", self.files[market], self.at)


def masters(day: date, lines: dict[StockMarket, list[str]], *, raw: dict[StockMarket, bytes] | None = None) -> Masters:
    """The day's three zips from ``lines`` (or ``raw`` .mst contents), served at 07:30 that day."""
    contents = {market: cp949(*lines.get(market, [])) for market in StockMarket} | (raw or {})
    files = {market: zipped(market.file_name, content) for market, content in contents.items()}
    return Masters(files, datetime.combine(day, time(7, 30), tzinfo=KST))


def run_of(day: date) -> Run:
    return Run("kis_universe", f"scheduled__{day}", datetime.combine(day, time(7, 30), tzinfo=KST))


def stock(market: StockMarket, code: str, name: str = "시험종목", **fields: str) -> str:
    return record(market, code, name, ("KR7" + code)[:9] + "000", **fields)


# Three days of a small market: Monday as it was; on Tuesday 111110 delisted, 444440 listed, 000660
# halted and 278990 moved from KONEX to KOSDAQ; on Wednesday 000660 trades again and 005930, which
# is watch-listed, is gone.
HYNIX, SAMSUNG = stock(KOSPI, "000660", "SK하이닉스"), stock(KOSPI, "005930", "삼성전자")
ETF, ETN = stock(KOSPI, "069500", "KODEX 200", scrt_grp_cls_code="EF"), stock(KOSPI, "Q500001", "시험 ETN", scrt_grp_cls_code="EN")
SPAC = stock(KOSDAQ, "0004Y0", "디비금융제14호스팩", etpr_undt_objt_co_yn="Y")
KOSDAQ_STOCK, STAYING_ON_KONEX = stock(KOSDAQ, "333330", "코스닥기업"), stock(KONEX, "279000", "남는기업", scrt_grp_cls_code="KN")
MONDAY_LINES = {
    KOSPI: [HYNIX, SAMSUNG, ETF, stock(KOSPI, "111110", "떠나는종목"), ETN],
    KOSDAQ: [KOSDAQ_STOCK, SPAC],
    KONEX: [stock(KONEX, "278990", "코넥스기업", scrt_grp_cls_code="KN"), STAYING_ON_KONEX],
}
TUESDAY_LINES = {
    KOSPI: [stock(KOSPI, "000660", "SK하이닉스", trht_yn="Y"), SAMSUNG, ETF, ETN],
    KOSDAQ: [stock(KOSDAQ, "278990", "코넥스기업"), KOSDAQ_STOCK, SPAC, stock(KOSDAQ, "444440", "새내기", stck_lstn_date="20261124")],
    KONEX: [STAYING_ON_KONEX],
}
WEDNESDAY_LINES = TUESDAY_LINES | {KOSPI: [HYNIX, ETF, ETN]}


@pytest.fixture
def market_db(monkeypatch: pytest.MonkeyPatch, market_dsn: str) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_KIS_MARKET_DB", market_dsn)
    monkeypatch.setenv("AIRFLOW_VAR_KIS_WATCHLIST", "005930,000660")
    return market_dsn


def update(day: date, lines: dict[StockMarket, list[str]], **options: Any) -> dict[str, Any]:
    return universe.update_universe(run_of(day), hook=masters(day, lines), **options)


def query(dsn: str, sql: str, *params: Any) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def described(dsn: str) -> dict[str, tuple]:
    """stock_universe: code -> (market, group, halted, first_seen, last_seen, delisted_on)."""
    rows = query(dsn, "SELECT stock_code, market, security_group, halted, first_seen, last_seen, delisted_on FROM stock_universe")
    return {code: tuple(rest) for code, *rest in rows}


def left_alerts(dsn: str) -> list[tuple]:
    return query(dsn, "SELECT stock_code, trading_date, message FROM collection_alerts WHERE kind = 'left_universe'")


def test_three_days_of_listings_delistings_moves_and_halts(market_db: str) -> None:
    first = update(MONDAY, MONDAY_LINES)
    assert (first["codes"], first["markets"], first["kospi_kosdaq_stocks"]) == (9, {"kospi": 5, "kosdaq": 2, "konex": 2}, 5)
    assert first["previous"] is None and first["changes"] == {}  # the first universe lists no change

    second = update(TUESDAY, TUESDAY_LINES)
    assert second["previous"] == MONDAY.isoformat()
    assert {kind: change["codes"] for kind, change in second["changes"].items()} == {
        "delisted": ["111110"], "listed": ["444440"], "moved": ["278990"], "halted": ["000660"]
    }
    third = update(WEDNESDAY, WEDNESDAY_LINES)
    assert {kind: change["codes"] for kind, change in third["changes"].items()} == {
        "delisted": ["005930"], "resumed": ["000660"]
    }

    rows = described(market_db)
    assert rows["111110"] == ("kospi", "ST", False, MONDAY, MONDAY, TUESDAY)
    assert rows["005930"] == ("kospi", "ST", False, MONDAY, TUESDAY, WEDNESDAY)
    assert rows["444440"] == ("kosdaq", "ST", False, TUESDAY, WEDNESDAY, None)
    assert rows["278990"] == ("kosdaq", "ST", False, MONDAY, WEDNESDAY, None)  # moved from KONEX
    assert rows["000660"] == ("kospi", "ST", False, MONDAY, WEDNESDAY, None)
    assert rows["Q500001"] == ("kospi", "EN", False, MONDAY, WEDNESDAY, None)
    # Day by day, as the archive selects them: every KOSPI and KOSDAQ stock (group ST) of the day.
    with psycopg.connect(market_db) as conn:
        stocks = {day: [code for code, _ in universe.members(conn, day, markets=(KOSPI, KOSDAQ), groups=("ST",))]
                  for day in (MONDAY, TUESDAY, WEDNESDAY)}  # fmt: skip
        every = universe.members(conn, TUESDAY)
    assert stocks == {
        MONDAY: ["0004Y0", "000660", "005930", "111110", "333330"],
        TUESDAY: ["0004Y0", "000660", "005930", "278990", "333330", "444440"],
        WEDNESDAY: ["0004Y0", "000660", "278990", "333330", "444440"],
    }
    assert ("069500", "kospi") in every and ("279000", "konex") in every and len(every) == 9
    assert query(market_db, "SELECT trading_date, halted FROM stock_universe_daily WHERE stock_code = '000660' ORDER BY 1") == [
        (MONDAY, False), (TUESDAY, True), (WEDNESDAY, False)
    ]
    # The watch-listed code that left is alerted, once; the other departure is not watched.
    ((code, day, message),) = left_alerts(market_db)
    assert (code, day) == ("005930", WEDNESDAY)
    assert "005930 (삼성전자, KOSPI) is on the watch-list but left the universe on 2026-11-25" in message


def test_a_rerun_of_the_day_replaces_it_and_alerts_nothing_again(market_db: str) -> None:
    update(MONDAY, MONDAY_LINES)
    update(TUESDAY, TUESDAY_LINES)
    update(WEDNESDAY, WEDNESDAY_LINES)
    before = described(market_db)
    again = update(WEDNESDAY, WEDNESDAY_LINES)
    assert again["changes"]["delisted"]["codes"] == ["005930"]
    assert described(market_db) == before
    assert len(left_alerts(market_db)) == 1
    assert query(market_db, "SELECT count(*) FROM stock_universe_daily WHERE trading_date = %s", WEDNESDAY) == [(8,)]
    # A code that comes back is listed again: no longer delisted.
    update(date(2026, 11, 26), TUESDAY_LINES)
    assert described(market_db)["005930"][4:] == (date(2026, 11, 26), None)


# Tuesday's files as KIS writes them later in the morning: 005930 (watch-listed) is gone.
WITHOUT_SAMSUNG = MONDAY_LINES | {KOSPI: [line for line in MONDAY_LINES[KOSPI] if line != SAMSUNG]}


def test_a_rerun_with_a_newer_file_delists_the_code_it_lacks_on_the_day(market_db: str) -> None:
    # docs/stock-masters.md M5: the 07:30 run of Tuesday gets Monday's files, which still list
    # 005930; a run triggered later gets Tuesday's.
    update(MONDAY, MONDAY_LINES)
    update(TUESDAY, MONDAY_LINES)
    again = update(TUESDAY, WITHOUT_SAMSUNG)
    assert again["changes"]["delisted"]["codes"] == ["005930"]
    # first_seen, last_seen, delisted_on
    assert described(market_db)["005930"][3:] == (MONDAY, MONDAY, TUESDAY)
    assert [(code, day) for code, day, _ in left_alerts(market_db)] == [("005930", TUESDAY)]
    update(TUESDAY, WITHOUT_SAMSUNG)
    wednesday = update(WEDNESDAY, WITHOUT_SAMSUNG)  # nothing leaves on Wednesday: it was gone on Tuesday
    assert wednesday["changes"] == {}
    assert described(market_db)["005930"][3:] == (MONDAY, MONDAY, TUESDAY)
    assert [(code, day) for code, day, _ in left_alerts(market_db)] == [("005930", TUESDAY)]


def test_a_rerun_leaves_what_its_files_alone_would_have_left(market_db: str) -> None:
    def stored() -> list[tuple]:
        rows = query(market_db, "SELECT * FROM stock_universe ORDER BY 1")
        return [row[:-1] for row in rows]  # all but updated_at

    update(MONDAY, MONDAY_LINES)
    update(TUESDAY, WITHOUT_SAMSUNG)
    alone = stored()
    # Other files first, undone by the re-run: 444440 listed, 111110 delisted, 278990 moved, 000660
    # halted, 005930 still listed, and halted.
    halted_samsung = stock(KOSPI, "005930", "삼성전자", trht_yn="Y")
    kospi = [halted_samsung if line == SAMSUNG else line for line in TUESDAY_LINES[KOSPI]]
    update(TUESDAY, TUESDAY_LINES | {KOSPI: kospi})
    again = update(TUESDAY, WITHOUT_SAMSUNG)
    assert stored() == alone
    assert {kind: change["codes"] for kind, change in again["changes"].items()} == {"delisted": ["005930"]}
    assert [(code, day) for code, day, _ in left_alerts(market_db)] == [("005930", TUESDAY)]


def snapshot(dsn: str) -> list[list[tuple]]:
    return [
        query(dsn, f"SELECT * FROM {table} ORDER BY 1, 2")
        for table in ("stock_universe_loads", "stock_universe_daily", "stock_universe")
    ]


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (
            lambda mst: mst[:-11],
            r"https://masters.test/common/master/kosdaq_code.mst.zip:kosdaq_code.mst line 4: 272 bytes; "
            r"a KOSDAQ record has 282 \(61 \+ 221\).*Nothing was stored",
        ),
        (lambda mst: mst.replace(b"444440   ", b"4444 0   "), r"kosdaq_code.mst line 4: short code '4444 0'"),
        (lambda mst: b"", r"kosdaq_code.mst: no record in 0 bytes"),
    ],
)
def test_a_bad_file_leaves_yesterdays_universe(market_db: str, damage, problem: str) -> None:
    update(MONDAY, MONDAY_LINES)
    before = snapshot(market_db)
    bad = damage(cp949(*TUESDAY_LINES[KOSDAQ]))
    with pytest.raises(UniverseRejected, match=problem):
        universe.update_universe(run_of(TUESDAY), hook=masters(TUESDAY, TUESDAY_LINES, raw={KOSDAQ: bad}))
    assert snapshot(market_db) == before


def test_a_cut_download_and_a_code_in_two_files_store_nothing(market_db: str) -> None:
    update(MONDAY, MONDAY_LINES)
    before = snapshot(market_db)
    cut = masters(TUESDAY, TUESDAY_LINES)
    cut.files[KOSPI] = cut.files[KOSPI][:200]
    with pytest.raises(UniverseRejected, match=r"kospi_code.mst.zip: not a readable zip archive .*; 200 bytes received"):
        universe.update_universe(run_of(TUESDAY), hook=cut)
    twice = TUESDAY_LINES | {KONEX: [*TUESDAY_LINES[KONEX], stock(KONEX, "333330", scrt_grp_cls_code="KN")]}
    with pytest.raises(UniverseRejected, match="333330 is listed in both kosdaq_code.mst and konex_code.mst"):
        update(TUESDAY, twice)
    assert snapshot(market_db) == before


def test_a_market_losing_many_codes_at_once_needs_allow_large_change(market_db: str) -> None:
    many = [stock(KOSPI, f"{n:05d}0") for n in range(100, 160)]  # 60 codes
    update(MONDAY, MONDAY_LINES | {KOSPI: many})
    before = snapshot(market_db)
    with pytest.raises(UniverseRejected, match=r"21 of the 60 KOSPI codes listed on 2026-11-23 are in no master file today"):
        update(TUESDAY, MONDAY_LINES | {KOSPI: many[:39]})  # 21 gone: more than 20 and more than 5 %
    assert snapshot(market_db) == before
    assert update(TUESDAY, MONDAY_LINES | {KOSPI: many[:40]})["changes"]["delisted"]["count"] == 20  # 20: accepted
    with pytest.raises(UniverseRejected, match=r"trigger kis_universe with allow_large_change"):
        update(WEDNESDAY, MONDAY_LINES | {KOSPI: many[:15]})
    stored = update(WEDNESDAY, MONDAY_LINES | {KOSPI: many[:15]}, allow_large_change=True)
    assert stored["changes"]["delisted"] == {"count": 25, "codes": [f"{n:05d}0" for n in range(115, 140)]}


def test_only_the_days_own_files_are_recorded(market_db: str) -> None:
    late = masters(MONDAY, MONDAY_LINES)
    late.at = datetime(2026, 11, 24, 0, 5, tzinfo=KST)  # a Monday run retried after midnight gets Tuesday's files
    with pytest.raises(CollectionFailed, match=r"kospi_code.mst.zip is the file of 2026-11-24 \(the server's Date\), not of 2026-11-23"):
        universe.update_universe(run_of(MONDAY), hook=late)
    update(TUESDAY, TUESDAY_LINES)
    with pytest.raises(CollectionFailed, match="The universe of 2026-11-24 is stored already: 2026-11-23's cannot be recorded after it"):
        update(MONDAY, MONDAY_LINES)
    assert query(market_db, "SELECT trading_date FROM stock_universe_loads GROUP BY 1") == [(TUESDAY,)]


def test_a_file_kis_did_not_rewrite_is_recorded_with_a_warning(market_db: str, caplog) -> None:
    update(MONDAY, MONDAY_LINES)
    stored = update(TUESDAY, MONDAY_LINES | {KOSDAQ: [*MONDAY_LINES[KOSDAQ], stock(KOSDAQ, "444440", "새내기")]})
    assert stored["unchanged_files"] == ["konex", "kospi"]
    assert "The masters of konex, kospi are byte for byte those of 2026-11-23" in caplog.text


def test_only_trading_days_have_a_universe() -> None:
    assert universe.is_trading_day(run_of(MONDAY))
    assert not universe.is_trading_day(run_of(date(2026, 11, 28)))  # a Saturday
    assert not universe.is_trading_day(run_of(date(2026, 12, 25)))  # Christmas


# --- the DAG, against the simulator's market ----------------------------------------------------

# Three sessions of the simulated market with listings, delistings and halts between them.
DAYS = [date(2026, 11, 27), date(2026, 11, 30), date(2026, 12, 1)]


def at_0730(day: date) -> datetime:
    return datetime.combine(day, time(7, 30), tzinfo=KST)


def test_the_dag_keeps_the_simulated_universe_day_by_day(simulated_market, monkeypatch) -> None:
    with simulated_market(codes=["005930"]) as market:
        truth = {day: {row["code"]: row for row in market.sim.listing(day)} for day in DAYS}
        listed = [sorted(set(truth[b]) - set(truth[a])) for a, b in pairwise(DAYS)]
        delisted = [sorted(set(truth[a]) - set(truth[b])) for a, b in pairwise(DAYS)]
        halted = [
            sorted(c for c in truth[b] if truth[b][c]["halted"] and not truth[a].get(c, {}).get("halted", True))
            for a, b in pairwise(DAYS)
        ]
        assert all(delisted) and any(listed) and all(halted)  # the days are worth the test
        leaving = next(code for code in delisted[1] if truth[DAYS[1]][code]["group"] == "ST")
        monkeypatch.setenv("AIRFLOW_VAR_KIS_WATCHLIST", f"005930,{leaving}")
        for day in DAYS:
            assert market.run("kis_universe", at_0730(day)).state == "success"
            stored = market.query(
                "SELECT stock_code, market, security_group, halted, liquidation, administrative, spac, preferred"
                " FROM stock_universe_daily WHERE trading_date = %s", day
            )
            fields = ("market", "group", "halted", "liquidation", "administrative", "spac", "preferred")
            assert {code: tuple(rest) for code, *rest in stored} == {
                code: tuple(row[f] for f in fields) for code, row in truth[day].items()
            }, day
        assert market.run("kis_universe", at_0730(DAYS[2])).state == "success"  # a re-run of the day
        rows = {code: rest for code, *rest in market.query("SELECT stock_code, first_seen, last_seen, delisted_on, name FROM stock_universe")}
        for before, (day, codes) in enumerate(zip(DAYS[1:], delisted)):
            assert all(rows[code][1:3] == [DAYS[before], day] for code in codes), day
        for day, codes in zip(DAYS[1:], listed):
            assert all(rows[code][0] == day and rows[code][2] is None for code in codes), day
        assert rows["005930"][3] == "삼성전자"
        assert market.query("SELECT stock_code, trading_date FROM collection_alerts WHERE kind = 'left_universe'") == [
            (leaving, DAYS[2])
        ]
        # The three downloads of each run, nothing from the API.
        counters = market.sim.counters()["requests_by_endpoint"]
        assert {name: counters.get(name) for name in ("kospi_code.mst", "kosdaq_code.mst", "konex_code.mst")} == {
            "kospi_code.mst": 4, "kosdaq_code.mst": 4, "konex_code.mst": 4
        }
        assert market.data_requests() == 0


def test_the_dag_fails_on_a_damaged_file_and_keeps_the_last_universe(simulated_market, monkeypatch, capfd) -> None:
    with simulated_market(codes=["005930"]) as market:
        saturday = market.run("kis_universe", at_0730(date(2026, 11, 28)))
        assert task_states(saturday) == {"trading_day_gate": ["success"], "update_universe": ["skipped"]}
        assert market.run("kis_universe", at_0730(DAYS[0])).state == "success"
        before = snapshot(market.dsn)
        market.sim.set_faults({"damaged_masters": {"kosdaq": "truncated_record"}})
        monkeypatch.setattr(market.dagbag.get_dag("kis_universe").get_task("update_universe"), "retry_delay", timedelta(0))
        capfd.readouterr()
        dag_run = market.run("kis_universe", at_0730(DAYS[1]))
        assert dag_run.state == "failed"
        (update_try,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "update_universe"]
        assert (update_try.state, update_try.try_number) == ("failed", 3)
        assert snapshot(market.dsn) == before
        assert re.search(r"kosdaq_code.mst.zip:kosdaq_code.mst line \d+: 272 bytes; a KOSDAQ record has 282", "".join(capfd.readouterr()))


def test_the_masters_come_from_kis_download_server_unless_kis_master_says_otherwise(monkeypatch, airflow_db) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_KIS_MASTER", raising=False)
    assert KisMasterHook().base_url == "https://new.real.download.dws.co.kr"
    monkeypatch.setenv("AIRFLOW_CONN_KIS_MASTER", '{"conn_type": "http", "host": "https://masters.example", "port": 8443}')
    assert KisMasterHook().base_url == "https://masters.example:8443"
    monkeypatch.setenv("AIRFLOW_CONN_KIS_MASTER", "http://127.0.0.1:8765")  # URI form: the http provider's scheme
    assert KisMasterHook().base_url == "http://127.0.0.1:8765"


REAL_KIS = airflow_env.kis_connection("openapi.koreainvestment.com", 9443, scheme="https")


@pytest.mark.parametrize(
    ("kis", "refused"),
    [
        (REAL_KIS, "is https://openapi.koreainvestment.com:9443"),
        (None, "is not defined"),
        ("the simulator", None),
    ],
)
def test_the_simulators_masters_are_refused_unless_kis_is_that_simulator(
    monkeypatch, market_db: str, airflow_db, kis: str | None, refused: str | None
) -> None:
    # compose's kis_master is the simulator until KIS_MASTER_URL is set: on a real account its
    # invented market must not become the universe.
    with run_simulator(now=f"{MONDAY}T07:30:00+09:00") as sim:
        monkeypatch.setenv("AIRFLOW_CONN_KIS_MASTER", airflow_env.master_connection(sim.host, sim.port))
        if kis is None:
            monkeypatch.delenv("AIRFLOW_CONN_KIS_DEFAULT", raising=False)
        else:
            simulator = airflow_env.kis_connection(sim.host, sim.port)
            monkeypatch.setenv("AIRFLOW_CONN_KIS_DEFAULT", simulator if kis == "the simulator" else kis)
        if refused is None:
            stored = universe.update_universe(run_of(MONDAY), hook=KisMasterHook())
            assert stored["codes"] == len(sim.listing(MONDAY))
            return
        problem = (
            r"kospi_code.mst.zip was served by the project's KIS simulator .* "
            rf"the KIS connection kis_default {refused}\. Nothing was stored\. "
            r".* set KIS_MASTER_URL=https://new.real.download.dws.co.kr in .env"
        )
        with pytest.raises(SimulatedMasters, match=problem):
            universe.update_universe(run_of(MONDAY), hook=KisMasterHook())
    assert query(market_db, "SELECT to_regclass('stock_universe_loads')") == [(None,)]


def test_the_masters_hook_does_without_the_kis_api_stack() -> None:
    # The universe task reads its connections' URLs as the API's hook does, without its modules.
    api = ["kis.hook", "kis.client", "kis.token_store", "kis.endpoints"]
    code = f"import sys, kis.master_hook; print([m for m in {api!r} if m in sys.modules])"
    plugins = str(Path(universe.__file__).parents[1])
    imported = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": plugins},
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert imported.strip() == "[]"
