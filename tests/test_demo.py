"""`make demo`'s closing words on what is still missing after the backfill: checked against the
simulated market's own record of the day, a minute it had trades in is called lost."""

from __future__ import annotations

from datetime import datetime

from devtools.demo import _say_what_is_missing
from test_verification import row


def said(report, without_trades) -> str:
    lines: list[str] = []
    _say_what_is_missing(lines.append, "krx", report, without_trades)
    return " ".join(" ".join(lines).split())


def test_minutes_without_trades_are_not_lost_and_others_are() -> None:
    vi = {datetime(2026, 11, 25, 10, 43): "volatility_interruption", datetime(2026, 11, 25, 10, 44): "volatility_interruption"}
    report = [row("000660", "unverifiable", "exceeds", ["10:43", "10:44"]), row("005930", "complete", "match")]
    text = said(report, {("krx", "000660"): vi, ("krx", "005930"): {}})
    assert "Still missing: 2 minutes of 1 code. The simulated market had no trade in 2 of them (volatility interruption: 2)" in text
    assert "Nothing was lost." in text
    lost = said([row("000660", "gap", "exceeds", ["10:43", "11:00"])], {("krx", "000660"): vi})
    assert "no trade in 1 of them" in lost and "1 had trades: lost, see the report." in lost
    assert said([row("005930", "complete", "match")], {("krx", "005930"): {}}) == (
        "Nothing is missing: every minute of every code's grid is stored."
    )
