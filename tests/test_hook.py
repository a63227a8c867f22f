"""The KIS hook against the simulator, with its token and limiter state in a real PostgreSQL."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests
from kis import endpoints, token_store
from kis.bar import KST
from kis.calendar import default_calendar
from kis.errors import KisApiError, KisKeyRefused, KisNotYet, KisUnknownCode, KisUnsupported
from kis.hook import KisHook
from kis.parsing import day_volume
from kis.token_store import app_key_hash
from kis.venues import Venue

from simulator.testing import SimulatorHandle, run_simulator

DAY = date(2026, 11, 25)  # a Wednesday, a normal session
CODE = "005930"
SESSION = default_calendar().session(DAY)
APPKEY = "PSAPPKEY0123456789abcdefSECRETKEY01"
APPSECRET = "APPSECRET+0123456789/abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz="


@pytest.fixture
def connect(point_kis_at: Callable[..., None]) -> Iterator[Callable[..., KisHook]]:
    """Points ``kis_default`` at a simulator (and the state at a fresh database); returns hooks."""
    hooks: list[KisHook] = []

    def make(sim: SimulatorHandle, **extra: Any) -> KisHook:
        point_kis_at(sim, **extra)
        hook = KisHook(backoff_max=1.0)
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        hook.close()


def at(hhmm: str, day: date = DAY) -> datetime:
    return datetime.combine(day, datetime.strptime(hhmm, "%H:%M").time(), tzinfo=KST)


def test_recent_bars_are_the_closed_truth_up_to_until(connect: Callable[..., KisHook]) -> None:
    with run_simulator(now="2026-11-25T10:31:40+09:00") as sim:
        hook = connect(sim)
        result = hook.recent_bars(CODE, until=at("10:30"))
        truth = [bar for bar in sim.truth(CODE, DAY) if bar.minute <= at("10:30")]
        assert result.bars == truth[-30:]
        assert result.bars[-1].minute == at("10:30")  # the forming 10:31 bar is not there
        assert result.rejected == [] and result.pages == 1
        assert result.cumulative_volume is not None and result.cumulative_volume > sum(b.volume for b in truth)
        assert sim.counters()["requests_by_endpoint"]["inquire-time-itemchartprice"] == 1


def test_recent_bars_drop_rows_after_until(connect: Callable[..., KisHook]) -> None:
    """Even when the answer holds a newer row (here: the caller's until lags the clock), it is not kept."""
    with run_simulator(now="2026-11-25T10:31:40+09:00") as sim:
        hook = connect(sim)
        result = hook.recent_bars(CODE, until=at("10:20"))
        assert max(bar.minute for bar in result.bars) == at("10:20")


def test_the_forming_bar_is_not_kept_when_kis_answers_past_the_cursor(connect: Callable[..., KisHook]) -> None:
    """KIS, asked at a minute before its clock, answers up to its own minute, the forming bar included
    (the simulator's ``rows_after_cursor``): the hook keeps only the bars up to ``until``."""
    with run_simulator(now="2026-11-25T10:31:40+09:00", faults={"rows_after_cursor": True}) as sim:
        hook = connect(sim)
        # The precondition: the answer to a 10:30 cursor does hold the forming 10:31 row.
        served = endpoints.today_minute_bars(hook.get_conn(), CODE, day=DAY, until=at("10:30").time())
        assert max(bar.minute for bar in served.bars) == at("10:31")
        result = hook.recent_bars(CODE, until=at("10:30"))
        truth = [bar for bar in sim.truth(CODE, DAY) if bar.minute <= at("10:30")]
        assert result.bars[-1].minute == at("10:30") and all(bar.minute <= at("10:30") for bar in result.bars)
        assert result.bars == truth[-29:]  # the page's 30 rows less the forming one
        assert result.rejected == [] and result.pages == 1


def test_a_whole_day_walked_backwards_equals_the_truth(connect: Callable[..., KisHook]) -> None:
    with run_simulator(now="2026-11-25T16:00:00+09:00") as sim:
        hook = connect(sim)
        for code in ("005930", "000660"):
            truth = sim.truth(code, DAY)
            result = hook.session_bars(code, SESSION)
            assert result.bars == truth, code
            assert result.rejected == []
            # KIS's day volume at 16:00: the session and the off-session trades so far.
            assert result.cumulative_volume == sim.cumulative_volume(code, DAY, at=at("16:00"))
        assert len(sim.truth("005930", DAY)) == len(SESSION.bar_minutes) == 381
        assert result.pages == 13


def test_a_past_day_on_a_mock_account_is_a_clear_error(connect: Callable[..., KisHook]) -> None:
    with run_simulator(mode="mock") as sim:
        hook = connect(sim)
        past = default_calendar().session(date(2026, 11, 24))
        with pytest.raises(KisUnsupported, match="real accounts only"):
            hook.session_bars(CODE, past)
        assert sim.counters()["requests_by_endpoint"].get("inquire-time-dailychartprice", 0) == 0


def test_a_past_day_on_a_real_account_comes_from_the_daily_endpoint(connect: Callable[..., KisHook]) -> None:
    past_day = date(2026, 11, 24)
    with run_simulator(now="2026-11-25T10:31:00+09:00") as sim:
        hook = connect(sim)
        result = hook.session_bars(CODE, default_calendar().session(past_day))
        assert result.bars == [bar for bar in sim.truth(CODE, past_day) if bar.volume > 0]
        requests = sim.counters()["requests_by_endpoint"]
        minute_pages = requests["inquire-time-dailychartprice"]
        volume_pages = requests["inquire-daily-itemchartprice"]
        # KIS's clock is read from the first answer, to the today endpoint: one request per hook.
        assert requests["inquire-time-itemchartprice"] == 1
        assert minute_pages <= 4 and result.pages == 1 + minute_pages + volume_pages
        assert volume_pages == 1  # the day volume: one request per code


# Moments at which KIS's today endpoint has no bar of its own day up to the cursor asked: its answer
# is an empty page, which says nothing of the day it served, and only KIS's clock (the Date header)
# tells that the day asked is past. (After the close, or once the next session has opened, the rows
# are dated with KIS's day and give it away.) Each: KIS's clock, the day asked, and the cursor.
EMPTY_TODAY_PAGES = {
    "after midnight": ("2026-11-26T00:07", DAY, "10:30"),
    "before the open": ("2026-11-26T08:59", DAY, "10:30"),
    "on a weekend": ("2026-11-28T10:31", date(2026, 11, 27), "10:30"),
    "on a holiday": ("2026-12-25T10:31", date(2026, 12, 24), "10:30"),
    "before a late open": ("2026-11-19T09:45", date(2026, 11, 18), "10:30"),
    "a cursor before a late open": ("2026-11-19T11:00", date(2026, 11, 18), "09:30"),
}


@pytest.mark.parametrize(("clock", "day", "until"), EMPTY_TODAY_PAGES.values(), ids=EMPTY_TODAY_PAGES)
def test_a_past_day_whose_today_page_is_empty_comes_from_the_past_day_endpoint(
    connect: Callable[..., KisHook], clock: str, day: date, until: str
) -> None:
    """A minute run cleared after its day, at an hour when KIS's today has no bar yet: its bars come
    from the past-day endpoint, never as an empty success."""
    with run_simulator(now=f"{clock}:00+09:00") as sim:
        hook = connect(sim)
        result = hook.recent_bars(CODE, until=at(until, day))
        traded = [bar for bar in sim.truth(CODE, day) if bar.volume > 0 and bar.minute <= at(until, day)]
        assert traded and result.bars == traded
        requests = sim.counters()["requests_by_endpoint"]
        assert (requests["inquire-time-itemchartprice"], requests["inquire-time-dailychartprice"]) == (1, 1)


@pytest.mark.parametrize(
    ("clock", "day"),
    [(clock, day) for clock, day, until in EMPTY_TODAY_PAGES.values() if until == "10:30"],
    ids=[name for name, (*_, until) in EMPTY_TODAY_PAGES.items() if until == "10:30"],
)
def test_a_past_day_walked_when_its_today_page_is_empty_comes_from_the_past_day_endpoint(
    connect: Callable[..., KisHook], clock: str, day: date
) -> None:
    """The backfill of a day cleared at such an hour walks the past-day endpoint."""
    with run_simulator(now=f"{clock}:00+09:00") as sim:
        hook = connect(sim)
        result = hook.session_bars(CODE, default_calendar().session(day))
        traded = [bar for bar in sim.truth(CODE, day) if bar.volume > 0]
        assert traded and result.bars == traded
        assert result.cumulative_volume == sim.cumulative_volume(CODE, day)


def test_a_past_day_has_its_volume_from_the_period_endpoint(connect: Callable[..., KisHook]) -> None:
    """The daily endpoint has no no-trade minutes and shows today's volume; the period row has the day's."""
    past_day = date(2026, 11, 24)
    with run_simulator(now="2026-11-25T10:31:00+09:00") as sim:
        hook = connect(sim)
        # 035720 has no-trade minutes that day; the third code a VI (two minutes without a bar).
        for code in ("005930", "035720", "000121"):
            result = hook.session_bars(code, default_calendar().session(past_day))
            assert result.cumulative_volume == sim.cumulative_volume(code, past_day), code
            assert sum(bar.volume for bar in result.bars) == sim.session_volume(code, past_day), code
        assert any(bar.volume == 0 for bar in sim.truth("035720", past_day))
        assert [a["reason"] for a in sim.absences("000121", past_day)] == ["volatility_interruption"] * 2


def test_a_past_day_before_a_split_has_its_original_volume(connect: Callable[..., KisHook]) -> None:
    """The period request asks for original prices (``FID_ORG_ADJ_PRC=1``): after a 1:50 split, the
    adjusted row of the day before would show 50 times the volume the minute bars add up to."""
    past_day = date(2026, 11, 24)
    split = {"code": CODE, "date": "2026-11-25", "ratio": 50}
    with run_simulator(now="2026-11-25T10:31:00+09:00", splits=[split]) as sim:
        hook = connect(sim)
        sent: list[str] = []
        hook.get_conn().session.hooks["response"].append(lambda response, **_: sent.append(response.request.url))
        result = hook.session_bars(CODE, default_calendar().session(past_day))
        assert result.cumulative_volume == sim.cumulative_volume(CODE, past_day)  # not 50 times it
        assert sum(bar.volume for bar in result.bars) == sim.session_volume(CODE, past_day) <= result.cumulative_volume
    period = [parse_qs(urlsplit(url).query) for url in sent if "inquire-daily-itemchartprice" in url]
    assert len(period) == 1 and period[0]["FID_ORG_ADJ_PRC"] == ["1"]


def test_a_day_without_a_period_row_has_no_volume(connect: Callable[..., KisHook]) -> None:
    # A Saturday: the daily endpoint answers with Friday's rows, the period endpoint with none.
    saturday = date(2026, 11, 28)
    window = _Window(saturday, at("09:00", saturday), at("15:30", saturday))
    with run_simulator(now="2026-11-30T10:31:00+09:00") as sim:
        result = connect(sim).session_bars(CODE, window)
        assert result.bars == [] and result.rejected
        assert result.cumulative_volume is None


def test_the_day_volume_is_taken_only_from_the_row_of_the_asked_day() -> None:
    rows = [
        {"stck_bsop_date": "20261125", "acml_vol": "900"},  # newest first
        {"stck_bsop_date": "20261124", "acml_vol": "700"},
    ]
    assert day_volume(rows, date(2026, 11, 24)) == 700
    assert day_volume(rows[:1], date(2026, 11, 24)) is None
    assert day_volume([{"stck_bsop_date": "20261124", "acml_vol": "7e2"}, None], date(2026, 11, 24)) is None


def test_rows_of_another_day_are_rejected(connect: Callable[..., KisHook]) -> None:
    """The daily endpoint fills a page from earlier sessions once the cursor nears the open."""
    past_day = date(2026, 11, 24)
    early = _Window(past_day, at("09:00", past_day), at("09:10", past_day))
    with run_simulator(now="2026-11-25T10:31:00+09:00") as sim:
        result = connect(sim).session_bars(CODE, early)
        assert result.bars == [b for b in sim.truth(CODE, past_day) if b.volume > 0 and b.minute <= early.close]
        assert result.rejected and all("is not the asked 2026-11-24" in r.reason for r in result.rejected)


def test_an_expired_token_is_replaced_once_and_the_call_succeeds(connect: Callable[..., KisHook]) -> None:
    with run_simulator(now="2026-11-25T10:31:00+09:00", token_throttle_seconds=1) as sim:
        hook = connect(sim, token_issue_interval=1)
        hook.recent_bars(CODE, until=at("10:30"))
        sim.expire_tokens()
        sim.advance(60)
        result = hook.recent_bars(CODE, until=at("10:31"))
        assert result.bars[-1].minute == at("10:31")
        assert sim.counters()["tokens_issued"] == 2
        assert hook.get_conn().counters["token_refused"] == 1


def test_token_issuance_is_paced_and_egw00133_waited_out(connect: Callable[..., KisHook]) -> None:
    with run_simulator(token_throttle_seconds=2, token_lifetime_seconds=3) as sim:
        # Another client takes a token, which is then revoked: our first tokenP call is throttled.
        requests.post(
            f"{sim.base_url}/oauth2/tokenP",
            json={"grant_type": "client_credentials", "appkey": sim.appkey, "appsecret": sim.appsecret},
            timeout=5,
        ).raise_for_status()
        sim.expire_tokens()
        hook = connect(sim, token_issue_interval=2)
        started = time.monotonic()
        hook.recent_bars(CODE, until=at("10:30"))
        assert time.monotonic() - started >= 1.5
        assert sim.counters()["requests_by_endpoint"]["tokenP"] == 3  # other, throttled, ours

        # Our own tokens expire after 3 s: the next one is asked for no sooner than the interval.
        time.sleep(3)
        hook.recent_bars(CODE, until=at("10:30"))
        counters = sim.counters()
        assert counters["tokens_issued"] == 3
        assert counters["requests_by_endpoint"]["tokenP"] == 4  # no EGW00133 this time


def test_a_refused_key_fails_at_once_and_its_other_workers_learn_it_from_the_state(
    connect: Callable[..., KisHook], market_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KIS refuses the app key at the token endpoint (EGW00103): no retry. Another worker of the key
    (another hook, as in another process) gets the refusal from the state database within the issue
    interval, neither asking KIS again nor waiting the interval out; after it, KIS is asked again."""
    with run_simulator(now="2026-11-25T10:31:00+09:00") as sim:
        sim.revoke_appkey(sim.appkey)
        with pytest.raises(KisKeyRefused) as refused:
            connect(sim).recent_bars(CODE, until=at("10:30"))
        assert (refused.value.msg_cd, refused.value.status) == ("EGW00103", 403)
        waits: list[float] = []  # the limiter's pacing sleeps a few ms; the issue interval's wait would be ~60 s
        monkeypatch.setattr(token_store.time, "sleep", waits.append)
        with KisHook() as other, pytest.raises(KisKeyRefused) as learnt:
            other.recent_bars(CODE, until=at("10:30"))
        assert learnt.value.msg_cd == "EGW00103" and max(waits, default=0) < 1
        assert sim.counters()["requests_by_endpoint"] == {"tokenP": 1}
        with psycopg.connect(market_dsn, autocommit=True) as conn:  # the issue interval (60 s) has passed
            conn.execute("UPDATE kis_api_token SET last_issue_at = last_issue_at - interval '61 seconds'")
        with KisHook() as later, pytest.raises(KisKeyRefused):
            later.recent_bars(CODE, until=at("10:30"))
        assert sim.counters()["requests_by_endpoint"] == {"tokenP": 2} and max(waits, default=0) < 1


@pytest.mark.parametrize(
    "faults",
    [
        {"http_5xx": 0.4},
        {"rate_storm": 0.4},
        {"malformed_json": 0.2, "truncated_body": 0.2},
        {"http_5xx": 0.1, "rate_storm": 0.1, "malformed_json": 0.1, "truncated_body": 0.1},
    ],
    ids=["5xx", "egw00201-storm", "bad-bodies", "mixed"],
)
def test_faults_are_retried_to_success(connect: Callable[..., KisHook], faults: dict[str, float]) -> None:
    with run_simulator(now="2026-11-25T16:00:00+09:00", faults={"seed": 3, **faults}) as sim:
        hook = connect(sim)
        result = hook.session_bars(CODE, SESSION)
        assert result.bars == sim.truth(CODE, DAY)
        assert sum(sim.counters()["faults_injected"].values()) > 0
        assert hook.get_conn().counters["rate_limited"] + hook.get_conn().counters["transient"] > 0
        if "rate_storm" in faults:
            assert result.rate_limited == hook.get_conn().counters["rate_limited"] > 0


def test_missing_fields_are_rejected_rows_and_the_rest_is_kept(connect: Callable[..., KisHook]) -> None:
    with run_simulator(now="2026-11-25T16:00:00+09:00", faults={"missing_fields": 1.0}) as sim:
        result = connect(sim).session_bars(CODE, SESSION)
        truth = sim.truth(CODE, DAY)
        assert result.rejected and all(r.reason.startswith("missing field") for r in result.rejected)
        assert set(result.bars) <= set(truth)
        assert len(result.bars) + len(result.rejected) >= len(truth)


def test_an_unknown_code_fails_that_code_only(connect: Callable[..., KisHook]) -> None:
    with run_simulator(now="2026-11-25T10:31:00+09:00", faults={"unknown_codes": ["999990"]}) as sim:
        hook = connect(sim)
        with pytest.raises(KisUnknownCode) as raised:
            hook.recent_bars("999990", until=at("10:30"))
        assert raised.value.code == "999990" and raised.value.msg_cd == "OPSQ1001"
        assert "999990" in str(raised.value)
        assert hook.recent_bars(CODE, until=at("10:30")).bars


def test_invalid_codes_never_reach_the_api(connect: Callable[..., KisHook]) -> None:
    with run_simulator() as sim:
        hook = connect(sim)
        with pytest.raises(ValueError, match="invalid stock code"):
            hook.recent_bars("5930", until=at("10:30"))
        assert sim.counters()["requests_by_endpoint"] == {}


def test_config_extras_are_not_sent_as_headers_and_no_basic_auth(connect: Callable[..., KisHook]) -> None:
    with run_simulator() as sim:
        session = connect(sim, rate_limit=5).get_conn().session
        assert session.auth is None
        assert {"environment", "rate_limit", "state_conn_id", "custtype"} & set(session.headers) == {"custtype"}
        assert session.headers["custtype"] == "P"


def test_no_secret_reaches_logs_exceptions_or_the_database(
    connect: Callable[..., KisHook], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], market_dsn: str
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    with run_simulator(
        now="2026-11-25T10:31:00+09:00", appkey=APPKEY, appsecret=APPSECRET, token_throttle_seconds=1,
        faults={"seed": 5, "http_5xx": 0.1, "rate_storm": 0.1, "malformed_json": 0.1, "unknown_codes": ["999990"]},
    ) as sim:
        hook = connect(sim, token_issue_interval=1)
        result = hook.recent_bars(CODE, until=at("10:30"))
        token = hook.get_conn().tokens.get()
        sim.expire_tokens()
        hook.recent_bars(CODE, until=at("10:30"))
        for call in (lambda: hook.recent_bars("999990", until=at("10:30")),
                     lambda: hook.session_bars(CODE, default_calendar().session(date(2026, 11, 24)))):
            try:
                call()
            except KisApiError as exc:
                errors += [str(exc), repr(exc)]
        errors += [repr(hook), repr(hook.settings), repr(hook.get_conn().tokens), repr(hook.get_conn()), repr(result)]
        sim.set_faults({"http_5xx": 1.0})
        with pytest.raises(KisApiError) as raised:
            KisHook(max_attempts=2, backoff_max=0.01).recent_bars(CODE, until=at("10:30"))
        errors += [str(raised.value), repr(raised.value)]
        new_token = hook.get_conn().tokens.get()

    with psycopg.connect(market_dsn) as conn:
        stored = json.dumps(conn.execute("SELECT * FROM kis_api_token").fetchall(), default=str)
    out, err = capfd.readouterr()
    haystack = "\n".join([caplog.text, out, err, stored, *errors])
    assert "KIS refused the token" in haystack  # the scenario did what it should
    assert app_key_hash(APPKEY) in stored
    for secret in (APPKEY, APPSECRET, token, new_token, APPKEY[:12], APPSECRET[-16:], token[-16:]):
        assert secret not in haystack


@dataclass(frozen=True)
class _Window:
    day: date
    open: datetime
    close: datetime
    venue: Venue = Venue.KRX


def test_a_future_day_is_refused(connect: Callable[..., KisHook]) -> None:
    with run_simulator(now="2026-11-25T16:00:00+09:00") as sim:
        hook = connect(sim)
        with pytest.raises(KisNotYet, match="after KIS's today"):
            hook.session_bars(CODE, default_calendar().session(DAY + timedelta(days=1)))
        with pytest.raises(KisNotYet, match="after KIS's today"):  # KIS's clock is known now: no request
            hook.recent_bars(CODE, until=at("10:30", DAY + timedelta(days=1)))
        assert sim.counters()["requests_by_endpoint"]["inquire-time-itemchartprice"] == 1


# --- venues: KIS's market codes ---------------------------------------------------------------------


def test_recent_bars_ask_the_venues_market_code(connect: Callable[..., KisHook]) -> None:
    with run_simulator(now="2026-11-25T08:31:20+09:00") as sim:
        hook = connect(sim)
        pre_market = hook.recent_bars(CODE, until=at("08:30"), venue=Venue.NEXTRADE)
        assert pre_market.bars == [bar for bar in sim.truth(CODE, DAY, "nxt") if bar.minute <= at("08:30")][-30:]
        assert pre_market.bars[0].minute == at("08:01") and pre_market.cumulative_volume == sim.cumulative_volume(
            CODE, DAY, at="2026-11-25T08:31:20+09:00", venue="nxt"
        )
        sim.set_now("2026-11-25T10:31:20+09:00")
        unified = hook.recent_bars(CODE, until=at("10:30"), venue=Venue.UNIFIED)
        assert unified.bars == [bar for bar in sim.truth(CODE, DAY, "unified") if bar.minute <= at("10:30")][-30:]
        assert unified.bars != hook.recent_bars(CODE, until=at("10:30")).bars  # not KRX's


@pytest.mark.parametrize("venue", [Venue.NEXTRADE, Venue.UNIFIED])
def test_session_bars_walk_a_venues_whole_day_and_keep_what_the_grid_missed(
    connect: Callable[..., KisHook], venue: Venue
) -> None:
    extra = {"unpredicted_minutes": [{"code": CODE, "venue": "nxt", "minutes": ["15:25", "20:00"]}]}
    with run_simulator(now="2026-11-25T20:10:00+09:00", faults=extra) as sim:
        session = default_calendar().session(DAY, venue)
        result = connect(sim).session_bars(CODE, session)
        truth = sim.truth(CODE, DAY, venue.value)
        assert result.bars == truth
        assert {at("15:25"), at("20:00")} <= {bar.minute for bar in result.bars} - set(session.bar_minutes)
        assert result.pages == -(-len(truth) // endpoints.TODAY_MINUTES_PAGE_ROWS)  # 30 rows a page
        assert result.cumulative_volume == sim.cumulative_volume(CODE, DAY, venue=venue.value)
