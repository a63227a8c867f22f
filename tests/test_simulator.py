"""The KIS simulator against docs/kis-api.md and docs/krx-sessions.md, through HTTP as a client sees it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.net import free_port
from kis.bar import KST, Bar
from kis.calendar import default_calendar
from kis.watchlist import load_watchlist
from simulator.market import PRICE_LEVELS, Market, is_on_tick_grid
from simulator.testing import SimulatorHandle, run_simulator

REPO = Path(__file__).parents[1]
TODAY = "/uapi/domestic-stock/v1/quotations/inquire-time-itemchartprice"
DAILY = "/uapi/domestic-stock/v1/quotations/inquire-time-dailychartprice"
PERIOD = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
TR_IDS = {TODAY: "FHKST03010200", DAILY: "FHKST03010230", PERIOD: "FHKST03010100"}
NORMAL_DAY = date(2026, 11, 25)
ONE_MINUTE = timedelta(minutes=1)


class Client:
    """A minimal KIS client: enough to exercise the simulator, nothing like the real hook."""

    def __init__(self, sim: SimulatorHandle, appkey: tuple[str, str] | None = None) -> None:
        """A client of ``appkey`` (an (app key, app secret) pair; default the simulator's first)."""
        self.sim = sim
        self.appkey, self.appsecret = appkey or (sim.appkey, sim.appsecret)
        self.http = httpx.Client(base_url=sim.base_url, timeout=10)
        self.token = self.issue().json()["access_token"]

    def issue(self, **overrides: str) -> httpx.Response:
        body = {"grant_type": "client_credentials", "appkey": self.appkey, "appsecret": self.appsecret}
        return self.http.post("/oauth2/tokenP", json=body | overrides)

    def headers(self, path: str, **overrides: str | None) -> dict[str, str]:
        headers = {
            "content-type": "application/json; charset=utf-8",
            "authorization": f"Bearer {self.token}",
            "appkey": self.appkey,
            "appsecret": self.appsecret,
            "tr_id": TR_IDS[path],
            "custtype": "P",
        } | overrides
        return {k: v for k, v in headers.items() if v is not None}

    def today(self, code: str, hhmmss: str, **headers: str | None) -> httpx.Response:
        params = {
            "FID_ETC_CLS_CODE": "",
            "FID_COND_MRKT_DIV_CODE": "J",
            "FID_INPUT_ISCD": code,
            "FID_INPUT_HOUR_1": hhmmss,
            "FID_PW_DATA_INCU_YN": "Y",
        }
        return self.http.get(TODAY, params=params, headers=self.headers(TODAY, **headers))

    def daily(self, code: str, yyyymmdd: str, hhmmss: str) -> httpx.Response:
        params = {
            "FID_ETC_CLS_CODE": "",
            "FID_COND_MRKT_DIV_CODE": "J",
            "FID_INPUT_ISCD": code,
            "FID_INPUT_HOUR_1": hhmmss,
            "FID_INPUT_DATE_1": yyyymmdd,
            "FID_FAKE_TICK_INCU_YN": "",
            "FID_PW_DATA_INCU_YN": "N",
        }
        return self.http.get(DAILY, params=params, headers=self.headers(DAILY))

    def period(
        self, code: str, start: str, end: str, period: str = "D", adjusted: str | None = "1", **headers: str | None
    ) -> httpx.Response:
        """FHKST03010100; ``adjusted`` is FID_ORG_ADJ_PRC ("0" adjusted, "1" original, None left out)."""
        params = {
            "FID_COND_MRKT_DIV_CODE": "J",
            "FID_INPUT_ISCD": code,
            "FID_INPUT_DATE_1": start,
            "FID_INPUT_DATE_2": end,
            "FID_PERIOD_DIV_CODE": period,
            "FID_ORG_ADJ_PRC": adjusted,
        }
        params = {k: v for k, v in params.items() if v is not None}
        return self.http.get(PERIOD, params=params, headers=self.headers(PERIOD, **headers))

    def rows(self, response: httpx.Response) -> list[Bar]:
        body = response.json()
        assert body["rt_cd"] == "0", body
        return [to_bar(body_code(response), row) for row in body["output2"]]

    def walk_today(self, code: str, close: datetime) -> list[Bar]:
        """The whole of today, backwards 30 rows at a time from the close, as the collector walks it."""
        bars: list[Bar] = []
        cursor = close
        while page := self.rows(self.today(code, cursor.strftime("%H%M%S"))):
            assert len(page) <= 30
            bars += page
            cursor = page[-1].minute - ONE_MINUTE
        return sorted(bars, key=lambda bar: bar.minute)


def body_code(response: httpx.Response) -> str:
    return str(response.request.url.params["FID_INPUT_ISCD"])


def to_bar(code: str, row: dict[str, str]) -> Bar:
    minute = datetime.strptime(row["stck_bsop_date"] + row["stck_cntg_hour"], "%Y%m%d%H%M%S").replace(tzinfo=KST)
    fields = ("stck_oprc", "stck_hgpr", "stck_lwpr", "stck_prpr", "cntg_vol")
    return Bar(code, minute, *(int(row[f]) for f in fields))


def kst(day: date, hhmm: str, second: int = 0) -> datetime:
    return datetime.combine(day, datetime.strptime(hhmm, "%H:%M").time(), tzinfo=KST) + timedelta(seconds=second)


def off_session_volume(sim: SimulatorHandle, code: str, day: date, through: datetime, session: str = "") -> int:
    """The off-session shares of ``code`` traded on ``day`` up to ``through`` (of one session kind if given)."""
    trades = sim.off_session(code, day)
    return sum(t["volume"] for t in trades if datetime.fromisoformat(t["at"]) <= through and session in t["session"])


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    """A simulator for the functional tests; the rate limit is out of the way (it has its own tests)."""
    with run_simulator(now="2026-11-25T10:31:00+09:00", rate_limit=100_000) as handle:
        yield handle


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[Client]:
    sim.set_faults({})
    client = Client(sim)
    yield client
    client.http.close()


# --- the today endpoint -------------------------------------------------------------------------


def test_today_pages_backwards_and_includes_the_cursor(sim: SimulatorHandle, client: Client) -> None:
    sim.set_now(kst(NORMAL_DAY, "11:00", 30))
    page = client.rows(client.today("005930", "103000"))
    assert [bar.minute for bar in page] == [kst(NORMAL_DAY, "10:30") - i * ONE_MINUTE for i in range(30)]
    truth = {bar.minute: bar for bar in sim.truth("005930", NORMAL_DAY)}
    assert all(bar == truth[bar.minute] for bar in page)


@pytest.mark.parametrize(
    ("day", "close", "grid_size"),
    [(NORMAL_DAY, "15:30", 381), (date(2026, 1, 2), "15:30", 321), (date(2026, 11, 19), "16:30", 381)],
)
@pytest.mark.parametrize("code", ["005930", "035720"])  # 035720 is illiquid: zero-volume rows
def test_walking_a_day_backwards_gives_exactly_the_truth(
    sim: SimulatorHandle, client: Client, day: date, close: str, grid_size: int, code: str
) -> None:
    sim.set_now(kst(day, close) + timedelta(minutes=5))
    walked = client.walk_today(code, kst(day, close))
    truth = sim.truth(code, day)
    assert walked == truth
    grid = default_calendar().expected_bars(day)
    assert len(grid) == grid_size
    absent = {datetime.fromisoformat(a["minute"]) for a in sim.absences(code, day)}
    assert {bar.minute for bar in truth} | absent == set(grid)
    assert sum(bar.volume for bar in truth) == sim.session_volume(code, day)
    # Five minutes after the close: the day volume is the session's plus the pre-market close-price trades.
    output1 = client.today(code, close.replace(":", "") + "00").json()["output1"]
    pre_market = off_session_volume(sim, code, day, kst(day, close), "pre_market")
    assert int(output1["acml_vol"]) == sim.session_volume(code, day) + pre_market


def test_a_vi_day_has_its_two_blank_minutes_as_absences() -> None:
    market = Market(0)
    for code in (f"{n:06d}" for n in range(100, 400)):
        if absences := market.absences(code, NORMAL_DAY):
            break
    assert [a["reason"] for a in absences] == ["volatility_interruption"] * 2
    minutes = [datetime.fromisoformat(a["minute"]) for a in absences]
    after = next(bar for bar in market.day_bars(code, NORMAL_DAY) if bar.minute == minutes[-1] + ONE_MINUTE)
    assert after.open == after.close and after.volume > 0  # the auction print


def test_no_rows_in_the_closing_auction(sim: SimulatorHandle, client: Client) -> None:
    sim.set_now(kst(NORMAL_DAY, "15:40"))
    assert [bar.minute for bar in client.rows(client.today("005930", "153000"))][:2] == [
        kst(NORMAL_DAY, "15:30"),
        kst(NORMAL_DAY, "15:19"),
    ]
    assert client.rows(client.today("005930", "152900"))[0].minute == kst(NORMAL_DAY, "15:19")


def test_forming_bar(sim: SimulatorHandle, client: Client) -> None:
    code = "005930"
    truth = {bar.minute: bar for bar in sim.truth(code, NORMAL_DAY)}
    minute, previous = kst(NORMAL_DAY, "10:40"), kst(NORMAL_DAY, "10:39")

    def newest(second: int) -> Bar:
        sim.set_now(minute + timedelta(seconds=second))
        return client.rows(client.today(code, "104000"))[0]

    seen = [newest(second) for second in range(0, 60, 3)]
    assert all(bar.minute == minute for bar in seen)
    before_first_trade = seen[0]
    assert before_first_trade.volume == truth[previous].volume
    assert before_first_trade.open == before_first_trade.close == truth[previous].close
    assert len(set(seen)) > 2  # the row changes within its minute
    assert seen[-1] != truth[minute] or truth[minute].high == truth[minute].low
    assert newest(60) == truth[minute]  # the minute has ended: final
    sim.set_now(minute + timedelta(seconds=30))
    acml = int(client.today(code, "104000").json()["output1"]["acml_vol"]) - off_session_volume(sim, code, NORMAL_DAY, minute)
    assert sum(b.volume for m, b in truth.items() if m < minute) <= acml <= sum(
        b.volume for m, b in truth.items() if m <= minute
    )


def test_a_cursor_past_now_returns_the_current_price_flat(sim: SimulatorHandle, client: Client) -> None:
    sim.set_now(kst(NORMAL_DAY, "10:31", 20))
    response = client.today("005930", "110000")
    price = int(response.json()["output1"]["stck_prpr"])
    page = client.rows(response)
    assert [bar.minute for bar in page] == [kst(NORMAL_DAY, "11:00") - i * ONE_MINUTE for i in range(30)]
    future = [bar for bar in page if bar.minute > kst(NORMAL_DAY, "10:31")]
    assert len(future) == 29
    assert all((b.open, b.high, b.low, b.close, b.volume) == (price, price, price, price, 0) for b in future)


def test_before_the_open_and_on_a_holiday_there_are_no_rows(sim: SimulatorHandle, client: Client) -> None:
    sim.set_now(kst(NORMAL_DAY, "08:50"))
    assert client.rows(client.today("005930", "153000")) == []
    sim.set_now(kst(date(2026, 12, 31), "10:30"))
    assert client.rows(client.today("005930", "103000")) == []
    assert sim.truth("005930", date(2026, 12, 31)) == []
    assert sim.cumulative_volume("005930", date(2026, 12, 31)) == 0


def test_rows_after_the_cursor_come_back_when_asked_for(sim: SimulatorHandle, client: Client) -> None:
    """``rows_after_cursor``: a server whose clock is ahead of the caller's answers up to its own minute."""
    code = "005930"
    sim.set_now(kst(NORMAL_DAY, "10:31", 40))
    assert client.rows(client.today(code, "102000"))[0].minute == kst(NORMAL_DAY, "10:20")  # off: never
    sim.set_faults({"rows_after_cursor": True})
    sim.set_now(kst(NORMAL_DAY, "10:31", 40))
    page = client.rows(client.today(code, "102000"))
    assert [bar.minute for bar in page] == [kst(NORMAL_DAY, "10:31") - i * ONE_MINUTE for i in range(30)]
    truth = {bar.minute: bar for bar in sim.truth(code, NORMAL_DAY)}
    assert page[0] != truth[kst(NORMAL_DAY, "10:31")]  # the forming bar, after the cursor
    assert page[1:] == [truth[bar.minute] for bar in page[1:]]
    sim.set_faults({"rows_after_cursor": 5})  # a bounded lead: at most five minutes past the cursor
    sim.set_now(kst(NORMAL_DAY, "10:31", 40))
    assert client.rows(client.today(code, "102000"))[0].minute == kst(NORMAL_DAY, "10:25")
    assert client.rows(client.today(code, "103000"))[0].minute == kst(NORMAL_DAY, "10:31")
    with pytest.raises(httpx.HTTPStatusError):
        sim.set_faults({"rows_after_cursor": "yes"})


def test_the_next_morning_today_is_the_new_day_and_past_days_come_from_the_daily_endpoints(
    sim: SimulatorHandle, client: Client
) -> None:
    """The today endpoint serves the clock's day whatever the caller means; the day before is a past day."""
    code, next_day = "005930", date(2026, 11, 26)
    sim.set_now(kst(next_day, "08:45"))  # before the open: no rows, but the pre-market trades are in acml_vol
    body = client.today(code, "153000").json()
    assert body["output2"] == []
    assert int(body["output1"]["acml_vol"]) == off_session_volume(sim, code, next_day, kst(next_day, "08:45"))
    sim.set_now(kst(next_day, "10:31", 20))
    for cursor in ("153000", "103000"):  # a caller meaning yesterday's close gets today's rows all the same
        page = client.rows(client.today(code, cursor))
        assert {bar.minute.date() for bar in page} == {next_day}
    closed = [bar for bar in sim.truth(code, next_day) if bar.minute <= kst(next_day, "10:30")]
    assert client.rows(client.today(code, "103000")) == closed[::-1][:30]

    traded = [bar for bar in sim.truth(code, NORMAL_DAY) if bar.volume > 0]
    assert client.rows(client.daily(code, "20261125", "153000")) == traded[::-1][:120]
    (row,) = client.period(code, "20261125", "20261125").json()["output2"]
    assert int(row["acml_vol"]) == sim.cumulative_volume(code, NORMAL_DAY) > sim.session_volume(code, NORMAL_DAY)


# --- the day volume: off-session trades ---------------------------------------------------------


def test_the_day_volume_counts_off_session_trades_by_the_clock(sim: SimulatorHandle, client: Client) -> None:
    """acml_vol = the bars' volume so far + the off-session trades made by the market clock; bars never carry them."""
    reads = ("08:35", "08:45", "15:35", "16:00", "16:45", "18:30")

    def suits(code: str) -> bool:
        trades = sim.off_session(code, NORMAL_DAY)
        kinds = {t["session"] for t in trades}
        at = [datetime.fromisoformat(t["at"]) for t in trades]
        quiet = all(not kst(NORMAL_DAY, r) < t <= kst(NORMAL_DAY, r, 5) for r in reads for t in at)
        return len(kinds) == 3 and quiet and any(kst(NORMAL_DAY, "16:45") < t for t in at)

    code = next(c for c in (f"{n:06d}" for n in range(100, 200)) if suits(c))
    session = sim.session_volume(code, NORMAL_DAY)
    pre = off_session_volume(sim, code, NORMAL_DAY, kst(NORMAL_DAY, "09:00"))
    after = off_session_volume(sim, code, NORMAL_DAY, kst(NORMAL_DAY, "16:00"), "after_market")
    single = [t for t in sim.off_session(code, NORMAL_DAY) if t["session"] == "after_hours_single_price"]
    assert {datetime.fromisoformat(t["at"]).time().minute % 10 for t in single} == {0}  # matched every 10 minutes
    by_1640 = sum(t["volume"] for t in single if datetime.fromisoformat(t["at"]) <= kst(NORMAL_DAY, "16:40"))
    expected = {
        "08:35": off_session_volume(sim, code, NORMAL_DAY, kst(NORMAL_DAY, "08:35")),
        "08:45": pre,
        "15:35": pre + session,
        "16:00": pre + session + after,
        "16:45": pre + session + after + by_1640,
        "18:30": pre + session + after + sum(t["volume"] for t in single),
    }
    assert 0 < expected["08:35"] < pre and after > 0 and 0 < by_1640
    for read, volume in expected.items():
        sim.set_now(kst(NORMAL_DAY, read))
        assert int(client.today(code, "153000").json()["output1"]["acml_vol"]) == volume, read
        assert sim.cumulative_volume(code, NORMAL_DAY, kst(NORMAL_DAY, read)) == volume, read
    assert expected["18:30"] == sim.cumulative_volume(code, NORMAL_DAY) > expected["16:45"]
    walked = client.walk_today(code, kst(NORMAL_DAY, "15:30"))  # at 18:30: the bars are the session's only
    assert walked == sim.truth(code, NORMAL_DAY) and sum(bar.volume for bar in walked) == session
    sim.set_now(kst(date(2026, 11, 26), "10:00"))  # a past day's period row: the whole day volume
    (row,) = client.period(code, "20261125", "20261125").json()["output2"]
    assert int(row["acml_vol"]) == expected["18:30"]


def test_off_session_trades_lie_in_their_sessions_and_some_code_days_have_none() -> None:
    market = Market(0)
    windows = {
        "pre_market_close_price": ("08:30", "08:40"),
        "after_market_close_price": ("15:40", "16:00"),
        "after_hours_single_price": ("16:10", "18:00"),
    }
    csat = date(2026, 11, 19)  # everything one hour late
    without = 0
    for code in (f"{n:06d}" for n in range(0, 100)):
        for day in (NORMAL_DAY, csat):
            trades = market.off_session_trades(code, day)
            without += not trades
            late = timedelta(hours=1 if day == csat else 0)
            for trade in trades:
                start, end = (kst(day, edge) + late for edge in windows[trade.session])
                assert trade.volume > 0
                # Close-price sessions trade before their end; the single-price session matches at 18:00 too.
                assert start <= trade.at <= end and (trade.at < end or trade.session == "after_hours_single_price")
    assert 0 < without < 100
    assert market.off_session_trades("005930", date(2026, 12, 31)) == ()  # no session, no off-session either
    assert Market(0).off_session_trades("005930", NORMAL_DAY) == market.off_session_trades("005930", NORMAL_DAY)


# --- the daily endpoint -------------------------------------------------------------------------


def test_daily_pages_120_rows_without_zero_volume_and_leaks_the_previous_session(
    sim: SimulatorHandle, client: Client
) -> None:
    code = "035720"
    sim.set_now(kst(NORMAL_DAY, "15:35"))  # between the close and the after-market session: a still day volume
    page = client.rows(client.daily(code, "20261124", "153000"))
    assert len(page) == 120
    assert [bar.minute for bar in page] == sorted((bar.minute for bar in page), reverse=True)
    traded = [bar for bar in sim.truth(code, date(2026, 11, 24)) if bar.volume > 0]
    assert len(traded) < 381  # the code does have no-trade minutes, and they are left out
    assert page == traded[::-1][:120]

    leaking = client.rows(client.daily(code, "20261125", "090500"))
    assert len(leaking) == 120
    today_rows = [bar for bar in leaking if bar.minute.date() == NORMAL_DAY]
    assert [bar.minute for bar in today_rows] == [kst(NORMAL_DAY, "09:05") - i * ONE_MINUTE for i in range(6)]
    assert leaking[len(today_rows) :] == traded[::-1][: 120 - len(today_rows)]

    body = client.daily(code, "20261125", "090500").json()
    assert int(body["output1"]["acml_vol"]) == sim.cumulative_volume(code, NORMAL_DAY, kst(NORMAL_DAY, "15:35"))
    assert client.daily(code, "20241124", "153000").json()["rt_cd"] == "7"  # beyond a year of history


def test_daily_on_a_saturday_returns_friday(sim: SimulatorHandle, client: Client) -> None:
    sim.set_now(kst(date(2026, 11, 30), "10:00"))
    page = client.rows(client.daily("005930", "20261128", "153000"))
    assert {bar.minute.date() for bar in page} == {date(2026, 11, 27)}


def test_daily_is_refused_in_mock_mode() -> None:
    with run_simulator(mode="mock") as sim:
        body = Client(sim).daily("005930", "20261124", "153000").json()
    assert (body["rt_cd"], body["msg_cd"]) == ("1", "90000000")


# --- the period (daily OHLCV) endpoint -----------------------------------------------------------


def day_of(bars: list[Bar]) -> dict[str, str]:
    """What a period row must hold for a day whose bars are ``bars``: the OHLC of the truth.

    Not its volume: ``acml_vol`` is the day volume, off-session trades included.
    """
    return {
        "stck_bsop_date": bars[0].minute.strftime("%Y%m%d"),
        "stck_oprc": str(bars[0].open),
        "stck_hgpr": str(max(bar.high for bar in bars)),
        "stck_lwpr": str(min(bar.low for bar in bars)),
        "stck_clpr": str(bars[-1].close),
    }


def test_period_rows_are_the_sessions_of_the_truth_newest_first(sim: SimulatorHandle, client: Client) -> None:
    sim.set_now(kst(NORMAL_DAY, "15:35"))  # between the close and the after-market session: a still day volume
    market = Market(0)
    # Codes with a VI and with no-trade minutes on some of these days, whose daily row must still add up.
    vi_code = next(f"{n:06d}" for n in range(100, 400) if market.absences(f"{n:06d}", date(2026, 11, 24)))
    for code in ("005930", "035720", vi_code):
        body = client.period(code, "20261101", "20261231").json()
        assert body["rt_cd"] == "0", body
        days = [s.day for s in default_calendar().sessions_between(date(2026, 11, 1), NORMAL_DAY)][::-1]
        assert [row["stck_bsop_date"] for row in body["output2"]] == [d.strftime("%Y%m%d") for d in days]
        for row, day in zip(body["output2"], days, strict=True):
            truth = sim.truth(code, day)
            assert {k: row[k] for k in day_of(truth)} == day_of(truth), (code, day)
            at = kst(NORMAL_DAY, "15:35") if day == NORMAL_DAY else None  # past days: the whole day
            assert int(row["acml_vol"]) == sim.cumulative_volume(code, day, at), (code, day)
            assert int(row["acml_vol"]) >= sim.session_volume(code, day)
            assert int(row["prdy_vrss"]) == int(row["stck_clpr"]) - market.previous_close(code, day)
    assert any(bar.volume == 0 for bar in sim.truth("035720", date(2026, 11, 24)))
    assert len(sim.truth(vi_code, date(2026, 11, 24))) == 379
    assert sim.cumulative_volume("005930", date(2026, 11, 24)) > sim.session_volume("005930", date(2026, 11, 24))


def test_period_gives_at_most_the_newest_100_sessions_and_no_holidays(
    sim: SimulatorHandle, client: Client
) -> None:
    sim.set_now(kst(NORMAL_DAY, "15:45"))
    rows = client.period("005930", "20250101", "20261125").json()["output2"]
    sessions = default_calendar().sessions_between(date(2025, 1, 1), NORMAL_DAY)
    assert [row["stck_bsop_date"] for row in rows] == [s.day.strftime("%Y%m%d") for s in sessions[::-1][:100]]
    assert client.period("005930", "20261003", "20261005").json()["output2"] == []  # a weekend and a holiday
    assert client.period("005930", "20261231", "20270101").json()["output2"] == []  # in the future


def test_period_today_is_the_day_so_far(sim: SimulatorHandle, client: Client) -> None:
    sim.set_now(kst(NORMAL_DAY, "08:50"))
    rows = client.period("005930", "20261124", "20261125").json()["output2"]
    assert [row["stck_bsop_date"] for row in rows] == ["20261124"]
    sim.set_now(kst(NORMAL_DAY, "10:31", 30))
    body = client.period("005930", "20261125", "20261125").json()
    (row,) = body["output2"]
    assert (row["stck_clpr"], row["acml_vol"]) == (body["output1"]["stck_prpr"], body["output1"]["acml_vol"])
    truth = sim.truth("005930", NORMAL_DAY)
    closed = [bar for bar in truth if bar.minute < kst(NORMAL_DAY, "10:31")]
    assert row["stck_oprc"] == str(closed[0].open)
    pre_market = off_session_volume(sim, "005930", NORMAL_DAY, kst(NORMAL_DAY, "10:31"))
    assert pre_market > 0
    session_so_far = int(row["acml_vol"]) - pre_market
    assert sum(bar.volume for bar in closed) <= session_so_far <= sum(bar.volume for bar in truth[: len(closed) + 1])


def test_period_checks_its_query_and_headers_like_the_other_endpoints(
    sim: SimulatorHandle, client: Client
) -> None:
    sim.set_now(kst(NORMAL_DAY, "15:45"))
    sim.set_faults({"unknown_codes": ["999990"]})
    assert client.period("005930", "20261124", "20261125", period="W").json()["msg_cd"] == "OPSQ2002"
    assert client.period("005930", "2026112", "20261125").json()["msg_cd"] == "OPSQ2002"
    assert client.period("999990", "20261124", "20261125").json()["msg_cd"] == "OPSQ1001"
    assert client.period("005930", "20261124", "20261125", tr_id=TR_IDS[DAILY]).json()["msg_cd"] == "OPSQ0002"
    assert client.period("005930", "20261124", "20261125", authorization=None).json()["msg_cd"] == "EGW00122"
    sim.set_faults({"missing_fields": 1.0})
    rows = client.period("005930", "20261124", "20261125").json()["output2"]
    assert sorted(len(row) for row in rows) == [12, 13]


def half_up(won: float) -> int:
    """Whole won, halves rounded up (an adjusted price of 20.5 is 21)."""
    return int(won + 0.5)


def test_period_adjusted_and_original_prices_differ_across_a_split(sim: SimulatorHandle, client: Client) -> None:
    """FID_ORG_ADJ_PRC "0" adjusted: days before a split on today's share basis; "1" original: what was traded."""
    code, split_day = "005930", date(2026, 11, 20)
    sim.set_now(kst(NORMAL_DAY, "15:35"))

    def rows(adjusted: str) -> dict[str, dict[str, str]]:
        body = client.period(code, "20261116", "20261125", adjusted=adjusted).json()
        assert body["rt_cd"] == "0", body
        return {row["stck_bsop_date"]: row for row in body["output2"]}

    assert rows("0") == rows("1")  # no split: the same answer
    sim.set_faults({"splits": [{"code": code, "date": "2026-12-01", "ratio": 50}]})
    assert rows("0") == rows("1")  # a split still to come changes nothing yet
    sim.set_faults({"splits": [{"code": code, "date": split_day.isoformat(), "ratio": 50}]})
    original, adjusted = rows("1"), rows("0")
    assert len(original) == 8
    for day, row in original.items():
        truth = sim.truth(code, date.fromisoformat(f"{day[:4]}-{day[4:6]}-{day[6:]}"))
        assert {k: row[k] for k in day_of(truth)} == day_of(truth), day  # original: what was traded
        prices = ("stck_oprc", "stck_hgpr", "stck_lwpr", "stck_clpr")
        if day < "20261120":
            assert all(int(adjusted[day][k]) == half_up(int(row[k]) / 50) for k in prices), day
            assert int(adjusted[day]["acml_vol"]) == int(row["acml_vol"]) * 50, day
            assert adjusted[day]["acml_tr_pbmn"] == row["acml_tr_pbmn"]  # the won traded do not change
        else:
            assert adjusted[day] == row, day
    # On the split day KRX re-bases the reference price: the change is against the previous close / 50.
    previous_close = int(original["20261119"]["stck_clpr"])
    assert int(original["20261120"]["prdy_vrss"]) == int(original["20261120"]["stck_clpr"]) - half_up(previous_close / 50)
    assert int(adjusted["20261119"]["prdy_vrss"]) == half_up(previous_close / 50) - half_up(
        int(original["20261118"]["stck_clpr"]) / 50
    )


def test_period_rejects_a_missing_or_bad_adjusted_price_flag(sim: SimulatorHandle, client: Client) -> None:
    sim.set_now(kst(NORMAL_DAY, "15:35"))
    for flag in (None, "", "2", "00"):
        body = client.period("005930", "20261124", "20261125", adjusted=flag).json()
        assert (body["rt_cd"], body["msg_cd"]) == ("1", "OPSQ2002"), flag
    with pytest.raises(httpx.HTTPStatusError):
        sim.set_faults({"splits": [{"code": "005930", "date": "2026-11-20", "ratio": 0}]})


def test_splits_can_be_given_at_start() -> None:
    split = {"code": "005930", "date": "2026-11-20", "ratio": 50}
    with run_simulator(now="2026-11-25T15:35:00+09:00", splits=[split]) as sim:
        client = Client(sim)
        original, adjusted = (client.period("005930", "20261119", "20261119", adjusted=f).json() for f in "10")
        assert int(adjusted["output2"][0]["acml_vol"]) == 50 * int(original["output2"][0]["acml_vol"])


def test_period_is_served_in_mock_mode_within_its_rate_limit() -> None:
    with run_simulator(mode="mock", now="2026-11-25T15:45:00+09:00") as sim:
        client = Client(sim)
        answers = [client.period("005930", "20261124", "20261124").json() for _ in range(2)]
        assert [a["msg_cd"] for a in answers] == ["MCA00000", "EGW00201"]  # 1/s
        volume = sim.cumulative_volume("005930", date(2026, 11, 24))
        assert answers[0]["output2"][0]["acml_vol"] == str(volume)
        counters = sim.counters()
        assert counters["requests_by_endpoint"]["inquire-daily-itemchartprice"] == 2
        assert counters["egw00201"] == 1 and counters["peak_per_second"] == 2


def test_token_is_reused_within_six_hours_and_throttled() -> None:
    with run_simulator() as sim:
        client = Client(sim)
        again = client.issue().json()
        assert again["access_token"] == client.token and again["token_type"] == "Bearer"
        assert 0 < int(again["expires_in"]) <= 86400
        datetime.strptime(again["access_token_token_expired"], "%Y-%m-%d %H:%M:%S")
        assert sim.counters()["tokens_issued"] == 1

        sim.expire_tokens()
        assert client.today("005930", "103000").json()["msg_cd"] == "EGW00123"
        throttled = client.issue()
        assert throttled.status_code == 403
        assert throttled.json()["error_code"] == "EGW00133"
        assert sim.counters()["tokens_issued"] == 1


def test_a_new_token_after_the_throttle_window_and_expiry_by_lifetime() -> None:
    with run_simulator(token_lifetime_seconds=0.5, token_throttle_seconds=0.3) as sim:
        client = Client(sim)
        assert client.today("005930", "103000").json()["rt_cd"] == "0"
        time.sleep(0.6)
        assert client.today("005930", "103000").json()["msg_cd"] == "EGW00123"
        fresh = client.issue().json()["access_token"]
        assert fresh != client.token
        client.token = fresh
        assert client.today("005930", "103000").json()["rt_cd"] == "0"
        assert sim.counters()["tokens_issued"] == 2


def test_bad_credentials(client: Client) -> None:
    assert client.issue(appkey="nope").json()["error_code"] == "EGW00103"
    assert client.issue(appsecret="nope").json()["error_code"] == "EGW00105"
    assert client.issue(grant_type="password").status_code == 400


def test_revoked_token_is_invalid() -> None:
    with run_simulator() as sim:
        client = Client(sim)
        revoked = client.http.post(
            "/oauth2/revokeP", json={"appkey": sim.appkey, "appsecret": sim.appsecret, "token": client.token}
        )
        assert revoked.status_code == 200
        assert client.today("005930", "103000").json()["msg_cd"] == "EGW00121"


KEY_A, KEY_B = ("APPKEY-A", "SECRET-A"), ("APPKEY-B", "SECRET-B")


def test_several_app_keys_each_with_its_own_token_and_rate_limit() -> None:
    with run_simulator(appkeys=[KEY_A, KEY_B]) as sim:
        assert sim.appkeys == [KEY_A, KEY_B] and (sim.appkey, sim.appsecret) == KEY_A
        a, b = Client(sim, KEY_A), Client(sim, KEY_B)
        assert a.token != b.token
        assert sim.counters()["tokens_issued_by_appkey"] == {"APPKEY-A": 1, "APPKEY-B": 1}
        # Each key's token is its own, and so is its secret.
        assert a.today("005930", "103000", authorization=f"Bearer {b.token}").json()["msg_cd"] == "EGW00121"
        assert b.today("005930", "103000", appsecret="SECRET-A").json()["msg_cd"] == "EGW00105"
        time.sleep(1.05)  # the calls above out of the one-second windows
        # A's limit is used up in this second; B's window is its own.
        rejected_a = [r for r in burst(a, 18 + 4) if r.json()["msg_cd"] == "EGW00201"]
        rejected_b = [r for r in burst(b, 18) if r.json()["msg_cd"] == "EGW00201"]
        assert (len(rejected_a), len(rejected_b)) == (4, 0)
        assert sim.counters()["peak_per_second_by_appkey"] == {"APPKEY-A": 18 + 4, "APPKEY-B": 18}


def test_a_revoked_app_key_is_refused_from_its_moment_as_an_unknown_key() -> None:
    with run_simulator(appkeys=[KEY_A, KEY_B], now="2026-11-25T10:14:00+09:00") as sim:
        a, b = Client(sim, KEY_A), Client(sim, KEY_B)
        sim.revoke_appkey("APPKEY-B", "2026-11-25T10:15:00+09:00")
        assert b.today("005930", "101300").json()["rt_cd"] == "0"  # not yet
        sim.set_now("2026-11-25T10:15:00+09:00")
        refused = b.today("005930", "101400")
        assert (refused.status_code, refused.json()["msg_cd"]) == (500, "EGW00103")
        token = b.issue()
        assert (token.status_code, token.json()["error_code"]) == (403, "EGW00103")
        assert a.today("005930", "101400").json()["rt_cd"] == "0"  # the other key is untouched
        assert httpx.get(f"{sim.base_url}/_sim/appkeys").json() == {
            "appkeys": [{"appkey": "APPKEY-A", "revoked": False}, {"appkey": "APPKEY-B", "revoked": True}]
        }


def test_an_app_key_revoked_after_some_requests() -> None:
    with run_simulator(appkeys=[KEY_A, KEY_B]) as sim:
        a = Client(sim, KEY_A)
        sim.revoke_appkey("APPKEY-A", after_requests=2)
        answers = [a.today("005930", "103000").json()["msg_cd"] for _ in range(4)]
        assert answers == ["MCA00000", "MCA00000", "EGW00103", "EGW00103"]
        bad = httpx.post(f"{sim.base_url}/_sim/appkeys/revoke", json={"appkey": "APPKEY-C"})
        assert bad.status_code == 400


@pytest.mark.parametrize(
    ("headers", "msg_cd"),
    [
        ({"authorization": None}, "EGW00122"),
        ({"authorization": "Basic abc"}, "EGW00122"),
        ({"authorization": "Bearer not-a-token"}, "EGW00121"),
        ({"appkey": None}, "EGW00103"),
        ({"appkey": "other"}, "EGW00103"),
        ({"appsecret": "other"}, "EGW00105"),
        ({"tr_id": None}, "OPSQ0002"),
        ({"tr_id": "FHKST03010230"}, "OPSQ0002"),
        ({"custtype": None}, "EGW00208"),
        ({"custtype": "X"}, "EGW00208"),
        ({"custtype": "B"}, "MCA00000"),
    ],
)
def test_header_checks(client: Client, headers: dict[str, str | None], msg_cd: str) -> None:
    body = client.today("005930", "103000", **headers).json()
    assert body["msg_cd"] == msg_cd
    assert body["rt_cd"] == ("0" if msg_cd == "MCA00000" else "1")


def test_bad_and_unknown_codes(sim: SimulatorHandle, client: Client) -> None:
    sim.set_faults({"unknown_codes": ["999990"]})
    assert client.today("999990", "103000").json()["msg_cd"] == "OPSQ1001"
    assert client.today("0126Z0", "103000").json()["rt_cd"] == "0"  # new-style codes are valid
    for bad in ("5930", "0059301", "00593a"):
        assert client.today(bad, "103000").json()["msg_cd"] == "OPSQ2002"
    assert client.today("005930", "1030").json()["msg_cd"] == "OPSQ2002"


# --- rate limit, faults, counters ---------------------------------------------------------------


def burst(client: Client, calls: int) -> list[httpx.Response]:
    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(lambda _: client.today("005930", "103000"), range(calls)))


@pytest.mark.solo
@pytest.mark.parametrize(("mode", "limit"), [("real", 18), ("mock", 1)])  # KIS's notice of 2026-04-20
def test_rate_limit_per_app_key(mode: str, limit: int) -> None:
    with run_simulator(mode=mode) as sim:
        client = Client(sim)
        calls = limit + 12
        responses = burst(client, calls)
        rejected = [r for r in responses if r.json()["msg_cd"] == "EGW00201"]
        assert len(rejected) == calls - limit
        assert all(r.json()["rt_cd"] == "1" and r.json()["msg1"] == "초당 거래건수를 초과하였습니다." for r in rejected)
        assert {r.status_code for r in rejected} == {200, 500}
        counters = sim.counters()
        assert counters["egw00201"] == calls - limit
        assert counters["peak_per_second"] == counters["peak_per_second_by_appkey"][sim.appkey] == calls
        time.sleep(1.05)  # a second later the window is free again
        assert client.today("005930", "103000").json()["rt_cd"] == "0"


def test_counters(sim: SimulatorHandle, client: Client) -> None:
    sim.reset_counters()
    for _ in range(3):
        client.today("005930", "103000")
    client.daily("005930", "20261124", "153000")
    client.period("005930", "20261124", "20261124")
    client.issue()
    counters = sim.counters()
    assert counters["requests_by_endpoint"] == {
        "inquire-time-itemchartprice": 3,
        "inquire-time-dailychartprice": 1,
        "inquire-daily-itemchartprice": 1,
        "tokenP": 1,
    }
    assert counters["requests_by_appkey"] == {sim.appkey: 6}
    assert 1 <= counters["peak_per_second"] <= 5  # token calls do not count towards the rate
    assert counters["tokens_issued"] == 0 and counters["egw00201"] == 0


def with_fault(sim: SimulatorHandle, client: Client, kind: str) -> httpx.Response:
    sim.set_now(kst(NORMAL_DAY, "10:31"))
    sim.set_faults({kind: 1.0, "seed": 3})
    return client.today("005930", "103000")


def test_fault_http_5xx(sim: SimulatorHandle, client: Client) -> None:
    responses = [with_fault(sim, client, "http_5xx")] + [client.today("005930", "103000") for _ in range(15)]
    assert {r.status_code for r in responses} == {500, 502, 503}
    assert {r.text == "" for r in responses} == {True, False}  # with and without a body
    assert not any("rt_cd" in r.text for r in responses)


def test_fault_rate_storm(sim: SimulatorHandle, client: Client) -> None:
    assert with_fault(sim, client, "rate_storm").json()["msg_cd"] == "EGW00201"


@pytest.mark.parametrize("kind", ["malformed_json", "truncated_body"])
def test_fault_broken_bodies(sim: SimulatorHandle, client: Client, kind: str) -> None:
    response = with_fault(sim, client, kind)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_fault_missing_fields(sim: SimulatorHandle, client: Client) -> None:
    rows = with_fault(sim, client, "missing_fields").json()["output2"]
    assert sorted(len(row) for row in rows) == [7] + [8] * 29


@pytest.mark.solo
def test_fault_latency_does_not_serialise(sim: SimulatorHandle, client: Client) -> None:
    sim.set_faults({"latency_ms": 300, "jitter_ms": 20})
    started = time.monotonic()
    responses = burst(client, 8)
    elapsed = time.monotonic() - started
    assert all(r.json()["rt_cd"] == "0" for r in responses)
    assert 0.3 <= elapsed < 1.2


def test_fault_error_rates_are_seeded(sim: SimulatorHandle, client: Client) -> None:
    def run() -> list[int]:
        sim.set_faults({"http_5xx": 0.3, "seed": 11})
        return [client.today("005930", "103000").status_code for _ in range(20)]

    first = run()
    assert first == run() and 0 < first.count(200) < 20


def test_fault_halt_is_an_expected_absence(sim: SimulatorHandle, client: Client) -> None:
    sim.set_faults({"halts": [{"code": "005930", "start": "10:00", "end": "10:10", "date": "2026-11-25"}]})
    sim.set_now(kst(NORMAL_DAY, "10:31"))
    page = client.rows(client.today("005930", "101500"))
    assert [bar.minute for bar in page][5:7] == [kst(NORMAL_DAY, "10:10"), kst(NORMAL_DAY, "09:59")]
    halted = [a for a in sim.absences("005930", NORMAL_DAY) if a["reason"] == "trading_halt"]
    assert len(halted) == 10
    assert all(not kst(NORMAL_DAY, "10:00") <= bar.minute < kst(NORMAL_DAY, "10:10") for bar in sim.truth("005930", NORMAL_DAY))


def test_fault_dropped_minutes_are_lost_not_absent(sim: SimulatorHandle, client: Client) -> None:
    sim.set_faults({"drop_minutes": [{"code": "005930", "minutes": ["10:20", "10:21"]}]})
    sim.set_now(kst(NORMAL_DAY, "15:40"))
    walked = client.walk_today("005930", kst(NORMAL_DAY, "15:30"))
    truth = sim.truth("005930", NORMAL_DAY)
    assert {bar.minute for bar in truth} - {bar.minute for bar in walked} == {
        kst(NORMAL_DAY, "10:20"),
        kst(NORMAL_DAY, "10:21"),
    }
    assert sim.absences("005930", NORMAL_DAY) == []
    assert sum(bar.volume for bar in walked) < sim.session_volume("005930", NORMAL_DAY)


def test_bad_fault_config_is_rejected(sim: SimulatorHandle) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        sim.set_faults({"http_5xxx": 0.5})


def test_unknown_path_and_wrong_method(client: Client) -> None:
    missing = client.http.get("/uapi/nothing")
    assert missing.status_code == 404 and missing.json()["rt_cd"] == "1"
    wrong = client.http.get("/oauth2/tokenP")
    assert wrong.status_code == 405 and wrong.json()["msg_cd"] == "HTTP405"


def date_header(response: httpx.Response) -> datetime:
    (value,) = response.headers.get_list("date")  # one Date: the server adds none of its own
    assert value.endswith(" GMT") and len(value) == 29, value  # IMF-fixdate
    return parsedate_to_datetime(value)


def test_every_answer_has_the_market_clock_and_the_mark(sim: SimulatorHandle, client: Client) -> None:
    sim.set_now("2026-11-25T10:31:00+09:00")
    answers = [
        client.today("005930", "103000"),  # data
        client.today("005930", "103000", authorization=None),  # an envelope error (HTTP 500)
        client.period("005930", "20261124", "20261125", adjusted=None),  # a bad field (HTTP 200, rt_cd 1)
        client.issue(),  # OAuth
        client.http.get("/uapi/nothing"),  # 404
        client.http.get("/_sim/clock"),  # control
    ]
    sim.set_faults({"http_5xx": 1.0})
    answers.append(client.today("005930", "103000"))  # a gateway error
    assert answers[-1].status_code in (500, 502, 503)
    answers.append(client.http.get("/common/master/kospi_code.mst.zip"))  # KIS's download server
    for response in answers:
        assert response.headers.get_list("x-kis-simulator") == ["1"], response
        seen = date_header(response)
        assert seen.tzinfo == UTC
        assert timedelta(0) <= seen - datetime(2026, 11, 25, 1, 31, tzinfo=UTC) < timedelta(seconds=3), response
    sim.set_now("2026-11-26T00:00:30+09:00")  # the KST day turns while UTC is still on the 25th
    assert date_header(client.http.get("/_sim/clock")).astimezone(KST).date() == date(2026, 11, 26)


def test_clock_runs_on_and_moves(sim: SimulatorHandle) -> None:
    sim.set_now("2026-11-25T10:31:00+09:00")
    time.sleep(0.2)
    assert timedelta(seconds=0.2) <= sim.now() - kst(NORMAL_DAY, "10:31") < timedelta(seconds=2)
    sim.advance(3600)
    assert sim.now().hour == 11


# --- the market ---------------------------------------------------------------------------------


def test_market_is_deterministic_and_on_the_tick_grid() -> None:
    days = [s.day for s in default_calendar().sessions_between(date(2026, 11, 16), date(2026, 11, 27))]
    codes = [f"{n:06d}" for n in range(0, 200_000, 5_000)]  # 40 codes, prices across the bands
    a, b, other = Market(0), Market(0), Market(1)
    vi_days = zero_volume_days = 0
    prices = set()
    for code in codes:
        for day in days:
            bars = a.day_bars(code, day)
            assert bars == b.day_bars(code, day)
            assert bars != other.day_bars(code, day)
            for bar in bars:
                assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
                assert all(is_on_tick_grid(p) for p in (bar.open, bar.high, bar.low, bar.close))
                assert bar.volume >= 0
                prices.add(bar.close)
            vi_days += bool(a.absences(code, day))
            zero_volume_days += any(bar.volume == 0 for bar in bars)
    assert 0.04 < vi_days / (len(codes) * len(days)) < 0.2
    assert zero_volume_days > 0
    assert min(prices) < 5_000 and max(prices) > 200_000
    assert all(1_000 <= Market(0).day_bars(code, days[0])[0].open <= 1_100_000 for code in codes)


def test_the_watch_lists_codes_trade_near_their_price_levels() -> None:
    """Samsung Electronics near 100,000 won, not at a random 1,077: every code of the default
    watch-list has a level, its prices stay near it, on the tick grid of their band."""
    days = [s.day for s in default_calendar().sessions_between(date(2026, 11, 16), date(2026, 11, 27))]
    assert set(PRICE_LEVELS) == set(load_watchlist().codes)
    for seed in (0, 1):
        market = Market(seed)
        for code, level in PRICE_LEVELS.items():
            prices = [p for day in days for bar in market.day_bars(code, day) for p in (bar.open, bar.high, bar.low, bar.close)]
            assert 0.7 * level <= min(prices) and max(prices) <= 1.4 * level, (seed, code, level, min(prices), max(prices))
            assert all(is_on_tick_grid(price) for price in prices), code


def test_closing_bar_is_the_biggest_of_the_day() -> None:
    bars = Market(0).day_bars("005930", NORMAL_DAY)
    assert bars[-1].volume == max(bar.volume for bar in bars)
    assert bars[-1].open == bars[-1].high == bars[-1].low == bars[-1].close


# --- the command line ---------------------------------------------------------------------------




def test_cli_takes_several_app_keys() -> None:
    from simulator.__main__ import parse_args

    assert parse_args(["--appkeys", "K1:S1, K2:S2"]).appkeys == [("K1", "S1"), ("K2", "S2")]
    with pytest.raises(SystemExit):
        parse_args(["--appkeys", "K1:S1,K2"])


def test_cli_serves_on_loopback() -> None:
    port = free_port()
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")])}
    command = [sys.executable, "-m", "simulator", "--port", str(port), "--mode", "mock", "--log-level", "warning"]
    command += ["--now", "2026-11-25T10:31:00+09:00", "--appkey", "K", "--appsecret", "S", "--faults", "{}"]
    process = subprocess.Popen(command, cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer: Any = httpx.get(f"http://127.0.0.1:{port}/_sim/clock", timeout=1).json()
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.1)
        assert answer["now"].startswith("2026-11-25T10:31")
        clock = httpx.get(f"http://127.0.0.1:{port}/_sim/clock", timeout=1)
        assert date_header(clock).astimezone(KST).date() == NORMAL_DAY  # the market clock, not uvicorn's
        token = httpx.post(
            f"http://127.0.0.1:{port}/oauth2/tokenP",
            json={"grant_type": "client_credentials", "appkey": "K", "appsecret": "S"},
        )
        assert token.status_code == 200 and token.json()["token_type"] == "Bearer"
    finally:
        process.terminate()
        process.wait(timeout=10)
