"""The alerts about one code of a run: KIS does not know it, a venue does not trade it, its fetch
failed; and the resolution of the last once a later run fetched it.

An unknown code and a code not traded on a venue are alerted once a day; the watch-list's batches
leave them out for the rest of the day (:mod:`kis.batches`), which these alerts are the record of.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date
from typing import Any

from kis import alerts
from kis.alerts import Alert, send_alert
from kis.errors import KisUnknownCode
from kis.task_context import Run
from kis.venues import Venue

log = logging.getLogger(__name__)

#: KIS does not know the code: alerted once, the code left out for the rest of the day.
UNKNOWN_CODE = "unknown_code"
#: The information that Nextrade does not trade a watch-list code: once a day, then never asked again.
NOT_ON_VENUE = "not_on_venue"
#: A code that still failed on its fetch task's last try.
FETCH_FAILED = "fetch_failed"


def alert_unknown_code(code: str, err: KisUnknownCode, day: date, run: Run) -> None:
    _send(
        UNKNOWN_CODE, code, day, run,
        f"KIS does not know {code} ({err.msg_cd}: {err.msg1}); left out for the rest of {day}",
        {"msg_cd": err.msg_cd, "msg1": err.msg1},
    )  # fmt: skip


def report_not_on_venue(code: str, err: KisUnknownCode, day: date, run: Run, venue: Venue) -> None:
    """Information, not a gap: ``venue`` does not trade ``code`` today (KIS answered as for an
    unknown code). Sent once a day: later runs leave the code out (``kis.batches.run_work``)."""
    _send(
        NOT_ON_VENUE, code, day, run,
        f"{code} is not traded on {venue.label} ({err.msg_cd}: {err.msg1}); left out there for the rest of {day}",
        {"msg_cd": err.msg_cd, "msg1": err.msg1},
        venue=venue,
    )  # fmt: skip


def alert_fetch_failed(code: str, reason: str, day: date, run: Run, *, tries: int, venue: Venue = Venue.KRX) -> None:
    """The alert of a code its fetch task's last try failed; resolved by a later run that fetched it
    (see :func:`resolve_fetch_alerts`), hence its venue."""
    _send(
        FETCH_FAILED, code, day, run,
        f"{code}{'' if venue is Venue.KRX else f' on {venue.label}'}: not fetched after {tries} tries: "
        f"{reason}. The other codes of its batch go on to the upsert; clear its fetch task to fetch it again",
        {"reason": reason, "tries": tries},
        venue=venue,
    )  # fmt: skip


def _send(
    kind: str, code: str, day: date, run: Run, message: str, details: dict[str, Any], *, venue: Venue | None = None
) -> None:
    send_alert(
        Alert(
            kind=kind,
            message=message,
            trading_date=day,
            dag_id=run.dag_id,
            run_id=run.run_id,
            stock_code=code,
            venue=venue.value if venue is not None else None,
            details=details,
        )
    )


def resolve_fetch_alerts(conn: Any, fetched: Sequence[Any], day: date, run: Run) -> None:
    """Marks resolved the ``fetch_failed`` alerts of every code the run's fetch tasks fetched (their
    XComs' ``"fetched"``): once per run, after the upsert stored them, one statement per venue. A
    failure is logged, never raised: the bars stored matter more than the alert's state."""
    by_venue: dict[str, list[str]] = {}
    for result in fetched:
        if isinstance(result, dict):  # a failed map index pulls None
            by_venue.setdefault(result.get("venue", Venue.KRX.value), []).extend(result.get("fetched", ()))
    try:
        with conn.transaction():  # a savepoint: a failure here leaves the caller's work standing
            resolved = [
                code
                for venue, codes in by_venue.items()
                for code in alerts.resolve_fetched(conn, day, venue, codes, run_id=run.run_id)
            ]
    except Exception:
        log.exception("Could not mark the fetch_failed alerts of the fetched codes resolved")
        return
    if resolved:
        log.info("Fetched now, their fetch_failed alerts resolved: %s", ", ".join(resolved))
