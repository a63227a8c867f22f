"""A verified day in three steps: the outcome (pure), the report (text), the alert.

``storage.verify_day`` compares the stored bars with the calendar's grid and writes one row per code
(``include/sql/verify_day.sql``); this module judges those rows against the completeness threshold,
formats them for logs and the demo, and builds the alert of a day that falls short.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from kis.alerts import Alert
from kis.storage import DayVerification
from kis.venues import Venue

#: The statuses of a code whose day is short of data: alerted by name.
SHORT = ("gap", "no_data")
#: The statuses of a code whose day is settled: every grid minute stored or its absence explained.
COMPLETE = ("complete", "complete_with_explained_absences")
#: What each status means, as the report's legend says it (verify_day.sql decides them).
STATUS_MEANINGS = {
    "complete": "every minute of the grid is stored",
    "complete_with_explained_absences": "minutes without a bar, and the stored bars' volumes add up to KIS's day "
    "volume: those minutes had no trade (a VI, a halt, an illiquid code); the day is complete",
    "unverifiable": "minutes without a bar, the closing bar stored (where the venue has one), and KIS's day volume is not the bars' sum, so a "
    "minute without trades cannot be told from a lost one; reported, not alerted by the verification",
    "gap": "the closing bar is missing: bars were lost (alerted)",
    "no_data": "no bar at all (alerted; the day fails)",
}
#: What each value of the volume column means: KIS's day volume against the sum of the stored bars'.
VOLUME_MEANINGS = {
    "match": "KIS's day volume equals the stored bars' sum",
    "exceeds": "KIS's day volume is larger: it also counts off-session trades (before the open, after the "
    "close), which are in no minute bar (docs/krx-sessions.md)",
    "below": "KIS's day volume is smaller than the stored bars' sum",
    "unknown": "KIS reported no day volume",
    "mismatch": "KIS's day volume is not the bars' sum (a verification from before migration 007)",
}


@dataclass(frozen=True)
class DayOutcome:
    """The verification of one day over every code: the figures and whether the day passes.

    The day passes when its completeness reaches the threshold and every code has bars: a code
    with nothing stored is never "mostly collected". Gaps above the threshold still get an alert;
    unverifiable codes (their volumes cannot tell missing minutes from lost ones) are reported, and
    so are the bars the venue served outside the grid (``unexpected``): stored, never an error, and
    the sign that the grid's assumption about the venue's minutes is wrong.
    """

    day: date
    venue: Venue
    stock_codes: tuple[str, ...]  # the codes verified, in the report's order
    present: int
    explained_absences: int
    expected: int
    threshold: float
    codes_with_gaps: tuple[str, ...]
    codes_without_data: tuple[str, ...]
    unverifiable: tuple[str, ...]
    missing: dict[str, list[str]]  # code -> ISO minutes, of every code with minutes missing
    unexpected: dict[str, list[str]]  # code -> ISO minutes served outside the grid

    @property
    def codes(self) -> int:
        return len(self.stock_codes)

    @property
    def completeness(self) -> float:
        """Stored or explained bars over expected bars (1.0 for a day that expects none)."""
        return (self.present + self.explained_absences) / self.expected if self.expected else 1.0

    @property
    def passed(self) -> bool:
        return self.completeness >= self.threshold and not self.codes_without_data

    @property
    def alerted(self) -> bool:
        return not self.passed or bool(self.codes_with_gaps)

    def summary(self) -> dict[str, Any]:
        """What the verification task returns (its XCom)."""
        return {
            "day": self.day.isoformat(),
            "venue": self.venue.value,
            "codes": self.codes,
            "present": self.present,
            "explained_absences": self.explained_absences,
            "expected": self.expected,
            "completeness": round(self.completeness, 5),
            "threshold": self.threshold,
            "passed": self.passed,
            "codes_with_gaps": list(self.codes_with_gaps),
            "unverifiable": list(self.unverifiable),
            "unexpected_bars": sum(map(len, self.unexpected.values())),
        }


def outcome(day: date, report: Sequence[DayVerification], threshold: float, *, venue: Venue = Venue.KRX) -> DayOutcome:
    """Judges the report rows of ``day`` on ``venue`` against ``threshold`` (a fraction, e.g. 0.98)."""
    short = [r for r in report if r.status in SHORT]
    return DayOutcome(
        day=day,
        venue=venue,
        stock_codes=tuple(r.stock_code for r in report),
        present=sum(r.present for r in report),
        explained_absences=sum(
            r.expected - r.present for r in report if r.status == "complete_with_explained_absences"
        ),
        expected=sum(r.expected for r in report),
        threshold=threshold,
        codes_with_gaps=tuple(r.stock_code for r in short),
        codes_without_data=tuple(r.stock_code for r in report if r.status == "no_data"),
        unverifiable=tuple(r.stock_code for r in report if r.status == "unverifiable"),
        missing={r.stock_code: [m.isoformat() for m in r.missing_minutes] for r in report if r.missing_minutes},
        unexpected={r.stock_code: [m.isoformat() for m in r.unexpected_minutes] for r in report if r.unexpected_minutes},
    )


def complete_codes(report: Sequence[DayVerification]) -> list[str]:
    """The codes of ``report`` whose day is complete: their gap alerts are settled."""
    return [r.stock_code for r in report if r.status in COMPLETE]


def format_report(report: Sequence[DayVerification]) -> str:
    """The verification as a fixed-width table, one line per code, for logs, alerts and the demo:
    what the grid expected, what was present, and the minutes missing and served outside the grid;
    then what each status and volume value of the table means, so that it reads without the source."""
    lines = [f"{'code':<7} {'status':<33} {'present':>11} {'volume':<9} missing minutes (KST)"]
    for r in report:
        unexpected = f"; outside the grid: {minutes_text(r.unexpected_minutes, kst=False)}" if r.unexpected_minutes else ""
        lines.append(
            f"{r.stock_code:<7} {r.status:<33} {f'{r.present}/{r.expected}':>11} {r.volume_status:<9} "
            f"{minutes_text(r.missing_minutes, kst=False) or '-'}{unexpected}"
        )
    present, expected = sum(r.present for r in report), sum(r.expected for r in report)
    lines.append(f"{'total':<7} {'':<33} {f'{present}/{expected}':>11}")
    lines += _legend("status", STATUS_MEANINGS, {r.status for r in report})
    lines += _legend("volume, KIS's day volume against the stored bars' sum", VOLUME_MEANINGS, {r.volume_status for r in report})
    return "\n".join(lines)


def _legend(column: str, meanings: dict[str, str], shown: set[str]) -> list[str]:
    """The meanings of the values of ``column`` the table shows, in the order of ``meanings``."""
    used = [value for value in meanings if value in shown]
    lines = [textwrap.fill(f"{value}: {meanings[value]}", 100, initial_indent="  ", subsequent_indent="    ") for value in used]
    return [f"{column}:", *lines] if used else []


def shortfall_alert(result: DayOutcome, report_text: str, *, dag_id: str, run_id: str) -> Alert:
    """The alert of a day that failed or has gaps, with the report and every missing minute."""
    verdict = "below the threshold" if not result.passed else "above the threshold, with gaps"
    on_venue = "" if result.venue is Venue.KRX else f" on {result.venue.label}"
    return Alert(
        kind="incomplete_day",
        message=(
            f"{result.day}{on_venue}: {result.present}/{result.expected} bars and {result.explained_absences} explained "
            f"absences: {percent(result.completeness)}, {verdict} {percent(result.threshold)}; "
            f"codes with gaps: {', '.join(result.codes_with_gaps) or 'none'}; "
            f"unverifiable: {', '.join(result.unverifiable) or 'none'}\n{report_text}"
        ),
        trading_date=result.day,
        dag_id=dag_id,
        run_id=run_id,
        venue=result.venue.value,
        details=result.summary() | {"missing": result.missing, "unexpected": result.unexpected},
    )


def percent(fraction: float) -> str:
    """A fraction as a percentage, three decimals truncated, never rounded: 97.998 % and even
    97.9996 % stay below a 98 % threshold (rounding showed the first as "98.00 %", a failure)."""
    thousandths = math.floor(round(fraction * 100_000, 6))  # round first: 0.98 * 100_000 is 97999.99...
    text = f"{thousandths // 1000}.{thousandths % 1000:03d}".rstrip("0").rstrip(".")
    return f"{text} %"


def minutes_text(minutes: Sequence[datetime], shown: int = 12, *, kst: bool = True) -> str:
    """``09:31, 09:32, … (+N) KST``: KST minutes for a message, the first ``shown`` of them, labelled
    unless ``kst`` is False (a table whose header says KST); empty without minutes."""
    text = ", ".join(m.strftime("%H:%M") for m in minutes[:shown])
    text += f" … (+{len(minutes) - shown})" if len(minutes) > shown else ""
    return f"{text} KST" if text and kst else text
