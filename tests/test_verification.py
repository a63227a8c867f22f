"""The verification report as a person reads it (verify_day's log, the incomplete_day alert, make
demo): a table, then what each status and volume value it shows means."""

from __future__ import annotations

from datetime import date, datetime

from kis.storage import DayVerification
from kis.verification import STATUS_MEANINGS, VOLUME_MEANINGS, format_report

DAY = date(2026, 11, 25)


def row(code: str, status: str, volume_status: str, missing: list[str] = ()) -> DayVerification:
    minutes = [datetime.fromisoformat(f"{DAY}T{hhmm}") for hhmm in missing]
    return DayVerification(
        trading_date=DAY, stock_code=code, venue="krx", expected=381, stored=381 - len(minutes),
        present=381 - len(minutes), missing_minutes=minutes, unexpected_minutes=[], closing_bar_at=None,
        volume_sum=1000, reported_volume=1200, volume_status=volume_status, status=status, run_id="r",
        checked_at=datetime(2026, 11, 25, 16, 40),
    )  # fmt: skip


def test_the_report_says_what_each_status_and_volume_it_shows_means() -> None:
    text = format_report([
        row("005930", "complete", "exceeds"),
        row("000660", "unverifiable", "exceeds", ["10:43", "10:44"]),
        row("055550", "complete_with_explained_absences", "match", ["14:50", "14:51"]),
    ])  # fmt: skip
    table, legend = text.split("\ntotal")
    assert "000660  unverifiable" in table and "10:43, 10:44" in table
    legend_lines = legend.splitlines()[1:]
    assert max(map(len, legend_lines)) <= 100
    # Only the values the table shows, in the order of the meanings.
    assert " ".join(" ".join(legend_lines).split()) == " ".join([
        "status:",
        f"complete: {STATUS_MEANINGS['complete']}",
        f"complete_with_explained_absences: {STATUS_MEANINGS['complete_with_explained_absences']}",
        f"unverifiable: {STATUS_MEANINGS['unverifiable']}",
        "volume, KIS's day volume against the stored bars' sum:",
        f"match: {VOLUME_MEANINGS['match']}",
        f"exceeds: {VOLUME_MEANINGS['exceeds']}",
    ])  # fmt: skip
    assert "off-session trades" in VOLUME_MEANINGS["exceeds"]
