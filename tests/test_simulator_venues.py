"""The simulator's Nextrade (NX) and unified (UN) views against docs/kis-api.md (K10-K13) and
docs/krx-sessions.md ("Nextrade"), through HTTP as a client sees them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

import httpx
import pytest
from kis.bar import KST, Bar
from kis.calendar import default_calendar
from kis.venues import Venue

from simulator.sessions import NEXTRADE_REGULAR, Sessions
from simulator.testing import SimulatorHandle, run_simulator

QUOTATIONS = "/uapi/domestic-stock/v1/quotations"
TODAY = f"{QUOTATIONS}/inquire-time-itemchartprice"
DAILY = f"{QUOTATIONS}/inquire-time-dailychartprice"
PERIOD = f"{QUOTATIONS}/inquire-daily-itemchartprice"
TR_IDS = {TODAY: "FHKST03010200", DAILY: "FHKST03010230", PERIOD: "FHKST03010100"}
MARKETS = {"krx": "J", "nxt": "NX", "unified": "UN"}
DAY = date(2026, 11, 25)  # a regular Wednesday
NEXT_DAY = date(2026, 11, 26)
ONE_MINUTE = timedelta(minutes=1)
LISTED, UNLISTED = "005930", "A00001"  # on the default watch-list / a generated code


def kst(day: date, hhmm: str, second: int = 0) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm).replace(second=second), tzinfo=KST)


class Client:
    """Just enough of a KIS client to ask each market code."""

    def __init__(self, sim: SimulatorHandle) -> None:
        self.http = httpx.Client(base_url=sim.base_url, timeout=10)
        body = {"grant_type": "client_credentials", "appkey": sim.appkey, "appsecret": sim.appsecret}
        token = self.http.post("/oauth2/tokenP", json=body).json()["access_token"]
        self.base_headers = {
            "authorization": f"Bearer {token}", "appkey": sim.appkey, "appsecret": sim.appsecret, "custtype": "P",
        }  # fmt: skip

    def get(self, path: str, params: dict[str, str]) -> dict:
        response = self.http.get(path, params=params, headers=self.base_headers | {"tr_id": TR_IDS[path]})
        assert response.status_code == 200, response.text
        return response.json()

    def today(self, venue: str, code: str, hhmmss: str) -> dict:
        params = {"FID_ETC_CLS_CODE": "", "FID_COND_MRKT_DIV_CODE": MARKETS.get(venue, venue),
                  "FID_INPUT_ISCD": code, "FID_INPUT_HOUR_1": hhmmss, "FID_PW_DATA_INCU_YN": "Y"}  # fmt: skip
        return self.get(TODAY, params)

    def daily(self, venue: str, code: str, day: date, hhmmss: str) -> dict:
        params = {"FID_COND_MRKT_DIV_CODE": MARKETS[venue], "FID_INPUT_ISCD": code, "FID_INPUT_HOUR_1": hhmmss,
                  "FID_INPUT_DATE_1": day.strftime("%Y%m%d"), "FID_PW_DATA_INCU_YN": "N", "FID_FAKE_TICK_INCU_YN": ""}  # fmt: skip
        return self.get(DAILY, params)

    def period(self, venue: str, code: str, start: date, end: date) -> dict:
        params = {"FID_COND_MRKT_DIV_CODE": MARKETS[venue], "FID_INPUT_ISCD": code, "FID_PERIOD_DIV_CODE": "D",
                  "FID_INPUT_DATE_1": start.strftime("%Y%m%d"), "FID_INPUT_DATE_2": end.strftime("%Y%m%d"),
                  "FID_ORG_ADJ_PRC": "1"}  # fmt: skip
        return self.get(PERIOD, params)

    def walk_today(self, venue: str, code: str, cursor: datetime) -> list[Bar]:
        """The whole of today, backwards 30 rows at a time, as the collector walks it."""
        bars: list[Bar] = []
        while page := rows(code, self.today(venue, code, cursor.strftime("%H%M%S"))):
            assert len(page) <= 30
            bars += page
            cursor = page[-1].minute - ONE_MINUTE
        return sorted(bars, key=lambda bar: bar.minute)


def rows(code: str, body: dict) -> list[Bar]:
    assert body["rt_cd"] == "0", body
    fields = ("stck_oprc", "stck_hgpr", "stck_lwpr", "stck_prpr", "cntg_vol")
    bars = []
    for row in body["output2"]:
        minute = datetime.strptime(row["stck_bsop_date"] + row["stck_cntg_hour"], "%Y%m%d%H%M%S").replace(
            tzinfo=KST
        )
        bars.append(Bar(code, minute, *(int(row[f]) for f in fields)))
    return bars


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    """The rate limit is out of the way (test_simulator.py tests it)."""
    with run_simulator(now=kst(DAY, "20:05"), rate_limit=100_000) as handle:
        yield handle


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[Client]:
    sim.set_now(kst(DAY, "20:05"))
    sim.set_faults({})
    client = Client(sim)
    yield client
    client.http.close()


def in_window(bars: list[Bar], start: str, end: str) -> list[Bar]:
    return [bar for bar in bars if time.fromisoformat(start) <= bar.minute.time() < time.fromisoformat(end)]


def test_nx_serves_nextrades_segments_and_nothing_in_its_pauses(sim: SimulatorHandle, client: Client) -> None:
    truth = sim.truth(LISTED, DAY, "nxt")
    assert [bar.minute for bar in truth] == list(default_calendar().expected_bars(DAY, Venue.NEXTRADE))
    assert len(truth) == 690
    minutes = {bar.minute.strftime("%H:%M") for bar in truth}
    assert {"08:00", "08:49", "09:00", "15:19", "15:40", "19:59"} <= minutes
    assert not in_window(truth, "08:50", "09:00") and not in_window(truth, "15:20", "15:40")
    assert not in_window(truth, "00:00", "08:00") and not in_window(truth, "20:00", "23:59")
    # Served as the truth: today's endpoint after the day (zero-volume rows included), the past-day
    # endpoint the next morning (without them).
    assert client.walk_today("nxt", LISTED, kst(DAY, "20:00")) == truth
    sim.set_now(kst(NEXT_DAY, "07:00"))
    served = rows(LISTED, client.daily("nxt", LISTED, DAY, "200000"))
    assert served == [bar for bar in reversed(truth) if bar.volume > 0][:120]


def test_nx_volumes_are_a_thin_share_of_krx(sim: SimulatorHandle) -> None:
    krx, nxt = sim.truth(LISTED, DAY), sim.truth(LISTED, DAY, "nxt")
    main, pre, after = (
        in_window(nxt, "09:00", "15:20"),
        in_window(nxt, "08:00", "08:50"),
        in_window(nxt, "15:30", "20:00"),
    )
    main_krx = sum(bar.volume for bar in in_window(krx, "09:00", "15:20"))
    assert 0 < sum(bar.volume for bar in main) < main_krx / 2
    per_minute = {
        name: sum(bar.volume for bar in bars) / len(bars)
        for name, bars in [("main", main), ("pre", pre), ("after", after)]
    }
    assert per_minute["pre"] < per_minute["main"] and per_minute["after"] < per_minute["main"]
    # An illiquid code has pre- and after-market minutes without a trade: flat zero-volume bars.
    illiquid = sim.truth("035720", DAY, "nxt")
    assert any(bar.volume == 0 for bar in in_window(illiquid, "15:30", "20:00"))
    # Nextrade's day is its bars: no off-session trades.
    assert sim.cumulative_volume(LISTED, DAY, venue="nxt") == sum(bar.volume for bar in nxt)
    assert sim.off_session(LISTED, DAY, "nxt") == []


def test_un_combines_krx_and_nextrade_minute_by_minute(sim: SimulatorHandle, client: Client) -> None:
    krx = {bar.minute: bar for bar in sim.truth(LISTED, DAY)}
    nxt = {bar.minute: bar for bar in sim.truth(LISTED, DAY, "nxt")}
    unified = sim.truth(LISTED, DAY, "unified")
    assert [bar.minute for bar in unified] == sorted(krx.keys() | nxt.keys())
    both = 0
    for bar in unified:
        parts = [
            part
            for part in (krx.get(bar.minute), nxt.get(bar.minute))
            if part is not None and part.volume > 0
        ]
        assert bar.volume == sum(part.volume for part in parts)
        if parts:
            assert bar.high == max(part.high for part in parts) and bar.low == min(part.low for part in parts)
            assert bar.open in {part.open for part in parts} and bar.close in {part.close for part in parts}
            both += len(parts) == 2
    assert both > 300  # KRX's session minutes trade on both
    assert client.walk_today("unified", LISTED, kst(DAY, "20:00")) == unified


def test_un_day_volume_is_krx_plus_nextrade(sim: SimulatorHandle, client: Client) -> None:
    for at in (kst(DAY, "08:35"), kst(DAY, "10:31", 17), kst(DAY, "16:45"), None):
        krx, nxt = sim.cumulative_volume(LISTED, DAY, at), sim.cumulative_volume(LISTED, DAY, at, "nxt")
        assert sim.cumulative_volume(LISTED, DAY, at, "unified") == krx + nxt > 0
    # KRX's off-session trades are in it, in no bar.
    assert sim.cumulative_volume(LISTED, DAY, venue="unified") > sim.session_volume(LISTED, DAY, "unified")
    acml = {venue: int(client.today(venue, LISTED, "200000")["output1"]["acml_vol"]) for venue in MARKETS}
    assert acml["unified"] == acml["krx"] + acml["nxt"]
    period = client.period("unified", LISTED, DAY, DAY)["output2"]
    assert int(period[0]["acml_vol"]) == acml["unified"]


def test_a_code_nextrade_does_not_trade(sim: SimulatorHandle, client: Client) -> None:
    assert sim.nxt_listed(LISTED) and not sim.nxt_listed(UNLISTED)
    for body in (
        client.today("nxt", UNLISTED, "200000"),
        client.daily("nxt", UNLISTED, DAY, "200000"),
        client.period("nxt", UNLISTED, DAY, DAY),
    ):
        assert (body["rt_cd"], body["output1"]["stck_prpr"], body["output2"]) == ("0", "0", [])
    # The unified view of such a code is KRX's.
    assert (
        client.today("unified", UNLISTED, "153000")["output2"]
        == client.today("krx", UNLISTED, "153000")["output2"]
    )
    assert sim.truth(UNLISTED, DAY, "unified") == sim.truth(UNLISTED, DAY)
    assert {a["reason"] for a in sim.absences(UNLISTED, DAY, "nxt")} == {"not_on_nextrade"}
    # The list is configurable: without 005930 it is unlisted too.
    sim.set_faults({"nxt_codes": ["000660"]})
    assert rows(LISTED, client.today("nxt", LISTED, "200000")) == []
    assert rows("000660", client.today("nxt", "000660", "200000"))


def test_nx_paging_at_1959_ends_with_the_forming_bar(sim: SimulatorHandle, client: Client) -> None:
    sim.set_now(kst(DAY, "19:59", 40))
    page = rows(LISTED, client.today("nxt", LISTED, "195900"))
    assert [bar.minute for bar in page] == [kst(DAY, "19:59") - i * ONE_MINUTE for i in range(30)]
    truth = {bar.minute: bar for bar in sim.truth(LISTED, DAY, "nxt")}
    assert page[1:] == [truth[bar.minute] for bar in page[1:]]  # closed minutes are final
    # 19:59 is forming: before its first trade flat with 19:58's volume (as KIS shows it), then growing.
    forming, previous = page[0], page[1]
    flat = {forming.open, forming.high, forming.low, forming.close} == {previous.close}
    assert (flat and forming.volume == previous.volume) or forming.volume <= truth[forming.minute].volume
    assert forming != truth[forming.minute]
    older = rows(LISTED, client.today("nxt", LISTED, (page[-1].minute - ONE_MINUTE).strftime("%H%M%S")))
    assert older[0].minute == kst(DAY, "19:29") and len(older) == 30
    # The past-day endpoint pages 120 closed rows, newest first, zero-volume minutes left out.
    sim.set_now(kst(NEXT_DAY, "07:00"))
    page = rows(LISTED, client.daily("nxt", LISTED, DAY, "195900"))
    traded = [bar for bar in reversed(truth.values()) if bar.volume > 0 and bar.minute <= kst(DAY, "19:59")]
    assert page == traded[:120]


def test_a_minute_the_calendar_did_not_predict_is_served(sim: SimulatorHandle, client: Client) -> None:
    grid = default_calendar().expected_bars(DAY, Venue.NEXTRADE)
    unpredicted = kst(DAY, "15:25")
    assert unpredicted not in grid
    sim.set_faults(
        {
            "unpredicted_minutes": [
                {"code": LISTED, "venue": "nxt", "minute": "15:25", "date": DAY.isoformat()}
            ]
        }
    )
    nxt = sim.truth(LISTED, DAY, "nxt")
    assert [bar.minute for bar in nxt] == sorted([*grid, unpredicted])
    assert next(bar for bar in nxt if bar.minute == unpredicted).volume > 0
    served = rows(LISTED, client.today("nxt", LISTED, "153000"))
    assert unpredicted in [bar.minute for bar in served]
    assert unpredicted in [bar.minute for bar in sim.truth(LISTED, DAY, "unified")]
    assert unpredicted not in [bar.minute for bar in sim.truth(LISTED, DAY)]  # KRX's is untouched
    with pytest.raises(httpx.HTTPStatusError):
        sim.set_faults({"unpredicted_minutes": [{"code": LISTED, "venue": "unified", "minute": "15:25"}]})


def test_j_is_unchanged_and_other_market_codes_are_refused(sim: SimulatorHandle, client: Client) -> None:
    before = (
        client.walk_today("krx", LISTED, kst(DAY, "15:30")),
        client.today("krx", LISTED, "153000")["output1"],
    )
    sim.set_faults({"nxt_codes": []})
    assert (
        client.walk_today("krx", LISTED, kst(DAY, "15:30")),
        client.today("krx", LISTED, "153000")["output1"],
    ) == before
    assert len(before[0]) == 381
    for market in ("X", "", "un", "NXT"):
        body = client.today(market, LISTED, "153000")
        assert (body["rt_cd"], body["msg_cd"]) == ("1", "OPSQ2001")


def test_a_simulator_on_other_hours_than_the_collectors_calendar() -> None:
    """S6: an after-market that opens at 15:40, played by the simulator's own sessions."""
    hours = {**NEXTRADE_REGULAR, "after_market": (time(15, 40), time(20, 0))}
    with run_simulator(now=kst(DAY, "20:05"), sessions=Sessions(hours)) as late:
        after = in_window(late.truth(LISTED, DAY, "nxt"), "15:20", "20:00")
    assert after[0].minute == kst(DAY, "15:40") and len(after) == 260
