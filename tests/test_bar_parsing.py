"""KIS minute rows -> validated bars: types, exact prices, OHLC sanity, business date, codes."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from kis.bar import KST, Bar
from kis.parsing import ROW_FIELDS, parse_bar, parse_int, parse_rows, validate_code

DAY = date(2026, 11, 25)


def row(**overrides: str) -> dict[str, str]:
    base = {
        "stck_bsop_date": "20261125",
        "stck_cntg_hour": "103000",
        "stck_oprc": "71500",
        "stck_hgpr": "71700",
        "stck_lwpr": "71400",
        "stck_prpr": "71600",
        "cntg_vol": "12345",
        "acml_tr_pbmn": "999999999999",
    }
    return {**base, **overrides}


def test_a_good_row_becomes_a_bar_with_exact_int_prices() -> None:
    bar = parse_bar(row(), code="005930", day=DAY)
    assert bar == Bar("005930", datetime(2026, 11, 25, 10, 30, tzinfo=KST), 71500, 71700, 71400, 71600, 12345)
    assert all(type(v) is int for v in (bar.open, bar.high, bar.low, bar.close, bar.volume))


def test_large_prices_stay_exact() -> None:
    bar = parse_bar(
        row(stck_oprc="1234567891", stck_hgpr="1234567891", stck_lwpr="1234567891", stck_prpr="1234567891"),
        code="005930",
        day=DAY,
    )
    assert bar.close == 1234567891


def test_the_mapping_covers_every_bar_field() -> None:
    assert set(ROW_FIELDS.values()) == {"date", "time", "open", "high", "low", "close", "volume"}


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"stck_oprc": "71500.5"}, "open is not an integer"),
        ({"stck_prpr": "1e3"}, "close is not an integer"),
        ({"cntg_vol": " 12"}, "volume is not an integer"),
        ({"stck_hgpr": "71450"}, "OHLC out of order"),  # high below open, above low
        ({"stck_lwpr": "71550"}, "OHLC out of order"),  # low above open
        ({"stck_prpr": "71800"}, "OHLC out of order"),  # close above high
        ({"stck_hgpr": "71400", "stck_lwpr": "71700"}, "high below low: high 71400 low 71700"),  # open, close between
        ({"stck_oprc": "0", "stck_lwpr": "0"}, "non-positive price"),
        ({"stck_oprc": "-1", "stck_lwpr": "-1"}, "non-positive price"),
        ({"cntg_vol": "-5"}, "negative volume"),
        ({"stck_bsop_date": "20261124"}, "business date 2026-11-24 is not the asked 2026-11-25"),
        ({"stck_cntg_hour": "103015"}, "not the start of a minute"),
        ({"stck_cntg_hour": "256000"}, "bad date/time"),
        ({"stck_cntg_hour": "106000"}, "bad date/time"),  # minute 60
        ({"stck_bsop_date": "20261131"}, "bad date/time"),  # no such day
        ({"stck_bsop_date": "20261325"}, "bad date/time"),  # no such month
        ({"stck_bsop_date": "2026-11-25"}, "bad date/time"),
        ({"stck_oprc": ""}, "missing field stck_oprc"),
    ],
)
def test_bad_rows_are_rejected_with_their_reason(overrides: dict[str, str], reason: str) -> None:
    parsed = parse_rows([row(**overrides)], code="005930", day=DAY)
    assert parsed.bars == []
    assert len(parsed.rejected) == 1
    assert reason in parsed.rejected[0].reason


def test_a_missing_field_is_a_rejected_row_and_good_rows_are_kept() -> None:
    missing = row(stck_cntg_hour="102900")
    del missing["cntg_vol"]
    parsed = parse_rows([row(), missing, row(stck_cntg_hour="102800"), "not a row"], code="005930", day=DAY)  # type: ignore[list-item]
    assert [bar.minute.strftime("%H%M") for bar in parsed.bars] == ["1030", "1028"]
    assert [r.reason for r in parsed.rejected] == ["missing field cntg_vol", "row is not an object: str"]


def test_high_and_low_are_taken_from_their_own_fields() -> None:
    """An asymmetric row (every price different): a parser that swaps high and low, or sorts them, fails."""
    asymmetric = row(stck_oprc="71500", stck_hgpr="71900", stck_lwpr="71300", stck_prpr="71600")
    bar = parse_bar(asymmetric, code="005930", day=DAY)
    assert (bar.open, bar.high, bar.low, bar.close) == (71500, 71900, 71300, 71600)
    assert bar.high == int(asymmetric["stck_hgpr"]) and bar.low == int(asymmetric["stck_lwpr"])


def test_a_row_with_high_below_low_is_rejected_alone() -> None:
    """High 100 < low 110 with open and close (105) between them: the row would pass a check of open
    and close against a swapped pair, and the table's CHECK would then refuse the whole minute's
    batch, every code's. It is rejected with its reason; the other rows of the page are kept."""
    inverted = row(stck_cntg_hour="102900", stck_oprc="105", stck_hgpr="100", stck_lwpr="110", stck_prpr="105")
    parsed = parse_rows([row(), inverted, row(stck_cntg_hour="102800")], code="005930", day=DAY)
    assert [bar.minute.strftime("%H%M") for bar in parsed.bars] == ["1030", "1028"]
    assert [r.reason for r in parsed.rejected] == ["high below low: high 100 low 110"]
    assert parsed.rejected[0].row is inverted
    assert all(bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high for bar in parsed.bars)


def test_a_flat_zero_volume_minute_is_a_valid_bar() -> None:
    flat = row(stck_oprc="71600", stck_hgpr="71600", stck_lwpr="71600", stck_prpr="71600", cntg_vol="0")
    assert parse_bar(flat, code="005930", day=DAY).volume == 0


def test_parse_int_is_exact_or_none() -> None:
    assert parse_int("123") == 123
    assert parse_int("123.5") is None
    assert parse_int(None) is None
    assert parse_int("") is None


@pytest.mark.parametrize("code", ["005930", "0126Z0", "0009K0", "00680K", "Q50001"])
def test_valid_codes(code: str) -> None:
    assert validate_code(code) == code


@pytest.mark.parametrize("code", ["5930", "0059300", "005930 ", "00593a", "00-930", "", None, 5930, "00593０"])
def test_invalid_codes(code: object) -> None:
    with pytest.raises(ValueError, match="invalid stock code"):
        validate_code(code)  # type: ignore[arg-type]
