"""The market archive's progress (kis.archive_scope, the dashboard's archive table): per month of the
year KIS keeps, the code-days a run of each day would cover, those settled, and what the rest costs
in requests and time at the keys' rate. On a real PostgreSQL with the schema's functions."""

from __future__ import annotations

from datetime import date, datetime

import psycopg
import pytest
from simulated_day import store_universe

from kis import archive_scope, schema
from kis.archive_scope import ArchiveRate, UniverseSelection
from kis.bar import KST
from kis.calendar import default_calendar
from kis.client import KisSettings
from kis.venues import Venue

NOW = datetime(2026, 11, 27, 17, 0, tzinfo=KST)  # a Friday after the close: its day counts
STOCKS = ["000100", "000200", "000300", "000400"]
LISTED = "000500"  # in the universe of 11-26, listed that day
ETF = "000900"  # not a stock: outside the default selection
RATE = ArchiveRate(keys=2, requests_per_second=28.8)


def load(conn: psycopg.Connection) -> None:
    """Universes loaded on 11-20 (STOCKS and ETF) and 11-26 (the same and LISTED); settled and
    unsettled verifications; alerts that leave codes out of a day."""
    schema.migrate(conn, today=NOW.date())
    for day, codes in ((date(2026, 11, 20), [*STOCKS, ETF]), (date(2026, 11, 26), [*STOCKS, ETF, LISTED])):
        store_universe(conn, day, {code: ("kospi", "EF" if code == ETF else "ST", False) for code in codes})
    conn.execute(
        "INSERT INTO stock_universe (stock_code, standard_code, name, market, security_group, listed_on, halted,"
        " liquidation, administrative, spac, preferred, first_seen, last_seen)"
        " VALUES (%s, 'KR7000500000', 'new listing', 'kospi', 'ST', '2026-11-26', false, false, false, false,"
        " false, '2026-11-26', '2026-11-26')",
        (LISTED,),
    )
    verified = [
        (date(2026, 11, 25), STOCKS[0], "krx", "complete"),
        (date(2026, 11, 25), STOCKS[1], "krx", "complete_with_explained_absences"),
        (date(2026, 11, 25), STOCKS[2], "krx", "gap"),  # not settled: a re-run fetches it
        (date(2026, 11, 25), STOCKS[1], "nxt", "complete"),  # the other venue
        (date(2026, 10, 15), STOCKS[0], "krx", "unverifiable"),
    ]
    for day, code, venue, status in verified:
        conn.execute(
            "INSERT INTO minute_verification (trading_date, stock_code, venue, expected, stored, present,"
            " missing_minutes, volume_sum, volume_status, status, run_id)"
            " VALUES (%s, %s, %s, 381, 381, 381, '{}', 0, 'unknown', %s, 'test')",
            (day, code, venue, status),
        )
    # 11-25: KIS did not know STOCKS[3] (left out on every venue); 11-24: Nextrade does not trade STOCKS[2].
    for day, code, kind, venue in (
        (date(2026, 11, 25), STOCKS[3], "unknown_code", None),
        (date(2026, 11, 24), STOCKS[2], "not_on_venue", "nxt"),
    ):
        conn.execute(
            "INSERT INTO collection_alerts (kind, dag_id, run_id, stock_code, venue, trading_date, message)"
            " VALUES (%s, 'kis_market_archive', 'test', %s, %s, %s, 'test')",
            (kind, code, venue, day),
        )
    conn.commit()


@pytest.fixture
def market(new_database) -> psycopg.Connection:
    with psycopg.connect(new_database()) as conn:
        load(conn)
        yield conn


def test_each_month_counts_the_code_days_a_run_covers_and_prices_the_rest(market) -> None:
    calendar = default_calendar()
    progress = archive_scope.progress(market, calendar, Venue.KRX, UniverseSelection.parse(None), NOW, RATE)

    sessions = calendar.sessions_between(date(2025, 11, 28), NOW.date())
    assert (progress["from"], progress["to"]) == (sessions[0].day.isoformat(), "2026-11-27")
    assert [m["month"] for m in progress["months"]] == [f"2026-{m:02}" for m in range(11, 0, -1)] + ["2025-12", "2025-11"]
    november = progress["months"][0]
    # 20 sessions: the 15 up to 11-20 take 11-20's universe (4 stocks), 11-23/24 take 11-26's without
    # the later listing (4 each), 11-25 also without the code KIS did not know (3), 11-26 all five;
    # 11-27 has no universe loaded on or after it: nothing known yet.
    assert november == {
        "month": "2026-11", "sessions": 20, "sessions_without_universe": 1,
        "expected": 15 * 4 + 4 + 4 + 3 + 5, "archived": 2, "remaining": 74,
        "remaining_requests": 74 * 5,  # a past KRX day: 4 pages of 120 and the day volume
        "estimated_seconds": round(74 * 5 / 28.8),
    }  # fmt: skip
    october = progress["months"][1]
    october_sessions = len(calendar.sessions_between(date(2026, 10, 1), date(2026, 10, 31)))
    assert (october["sessions"], october["expected"], october["archived"]) == (october_sessions, 4 * october_sessions, 1)
    total = progress["total"]
    assert total["sessions"] == len(sessions) == sum(m["sessions"] for m in progress["months"])
    assert (total["expected"], total["archived"]) == (4 * (len(sessions) - 5) + 16, 3)
    # The year's first session opens at 10:00: 321 bars, 3 pages and the volume for each of its 4 codes.
    assert total["remaining_requests"] == 5 * total["remaining"] - 4
    assert (progress["keys"], progress["requests_per_second"], progress["rate_problem"]) == (2, 28.8, None)


def test_a_venue_leaves_out_what_it_does_not_trade_and_a_selection_takes_its_groups(market) -> None:
    calendar = default_calendar()
    everything = UniverseSelection.parse('{"markets": null, "groups": null}')
    progress = archive_scope.progress(market, calendar, Venue.NEXTRADE, everything, NOW, RATE)
    days = {m["month"]: m for m in progress["months"]}
    # Nextrade's November up to 11-26 (11-27's day ends at 20:00): the ETF counts too; 11-24 without
    # the code Nextrade does not trade, 11-25 without the one KIS did not know.
    november = days["2026-11"]
    assert (november["sessions"], november["expected"], november["archived"]) == (19, 15 * 5 + 5 + 4 + 4 + 6, 1)
    # A Nextrade day is ~690 bars (6 pages of 120 and the day volume), CSAT's (11-19) ~580 (5 and 1).
    assert november["remaining_requests"] == 7 * (november["expected"] - 1 - 5) + 6 * 5


def test_the_rate_is_the_paced_rate_of_the_real_keys() -> None:
    def settings(environment: str, **extra: object) -> KisSettings:
        extra = {"environment": environment, **extra}
        return KisSettings.from_connection(login="key", password="secret", base_url="http://kis", extra=extra)

    rate = archive_scope.archive_rate({"a": settings("real"), "b": settings("real", rate_limit=10), "m": settings("mock")})
    assert (rate.keys, rate.requests_per_second, rate.problem) == (2, 18 * 0.8 + 10 * 0.8, None)
    assert rate.seconds(2_304) == 2_304 / rate.requests_per_second
    mock_only = archive_scope.archive_rate({"m": settings("mock")})
    assert (mock_only.keys, mock_only.seconds(100)) == (0, None)
    assert mock_only.problem == "no connection of kis_connections is a real account's"
    missing = archive_scope.archive_rate({"a": settings("real"), "gone": ValueError("The conn_id `gone` isn't defined")})
    assert missing.keys == 1 and missing.problem == "gone: The conn_id `gone` isn't defined"


def test_a_day_costs_its_pages_at_the_cheapest_endpoint() -> None:
    calendar = default_calendar()
    full, csat = calendar.session(date(2026, 11, 25)), calendar.session(date(2026, 11, 19))
    assert [archive_scope.requests_per_code_day(s, today=False) for s in (full, csat)] == [5, 5]
    assert archive_scope.requests_per_code_day(full, today=True) == 13  # 30 rows a page, volume included
    nextrade = calendar.session(date(2026, 11, 25), Venue.NEXTRADE)
    assert archive_scope.requests_per_code_day(nextrade, today=False) == 7
