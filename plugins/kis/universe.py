"""The tasks of ``kis_universe``: KIS's stock masters of the day into ``stock_universe``.

Every trading day before the pre-market, the three master files (KOSPI, KOSDAQ, KONEX) are
downloaded from the connection ``kis_master``, parsed (:mod:`kis.masters`) and stored in one
transaction: the day's membership (``stock_universe_daily``), each code's description
(``stock_universe``: first and last day seen, the day it left) and the files themselves
(``stock_universe_loads``). Listings, delistings and halts are the differences between two loaded
days. A bad file stores nothing: the previous day's universe stays the latest, and the run fails
with the file and line at fault. A watch-listed code that leaves the universe is alerted once.
docs/stock-masters.md has the layouts, their sources and the choices made here.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from kis import alerts, task_context
from kis.alerts import Alert, send_alert
from kis.bar import KST
from kis.calendar import default_calendar
from kis.task_context import CollectionFailed, Run
from kis.master_hook import KisMasterHook
from kis.masters import MasterFile, MasterFileError, MasterRecord, StockMarket, read_master_zip
from kis.resources import load_sql
from kis.watchlist import load_watchlist

log = logging.getLogger(__name__)

#: The alert of a watch-listed code that the day's masters no longer list.
LEFT_UNIVERSE = "left_universe"
# A day's files that lose more of a market's codes than this, at once, are refused unless the run
# says they are right (param allow_large_change): KRX delists a few codes a week, and a file cut at
# a line's end parses as a valid, shorter file.
MAX_DEPARTURES = 20
MAX_DEPARTED_SHARE = 0.05
# How many codes of each change the run's summary (its XCom) names; the log names them all.
NAMED_CHANGES = 50


class UniverseRejected(RuntimeError):
    """The day's master files are not a universe to store (damaged, truncated, implausible):
    nothing is stored. Retried, since KIS may be rewriting them; the last try fails the run."""


def is_trading_day(run: Run) -> bool:
    """Whether the run's KST day is a KRX session: a universe is kept per trading day."""
    day = run.at.astimezone(KST).date()
    if default_calendar().is_session(day):
        return True
    log.info("%s is not a KRX trading day: no universe to record", day)
    return False


def update_universe(run: Run, *, allow_large_change: bool = False, hook: KisMasterHook | None = None) -> dict[str, Any]:
    """Downloads, checks and stores the universe of the run's day; alerts the watch-listed codes that
    left it. Returns the day's summary (counts, and the codes of each change)."""
    day = run.at.astimezone(KST).date()
    with hook or KisMasterHook() as masters:
        files = [_master_file(masters, market, day) for market in StockMarket]
    _check_one_market_each(files)
    with task_context.prepared_market_db(day) as conn:
        stored = store_universe(conn, day, files, run_id=run.run_id, allow_large_change=allow_large_change)
        alert_departed_watchlist(conn, stored, run)
    summary = stored.summary()
    log.info(
        "The universe of %(date)s: %(codes)d codes %(markets)s, %(kospi_kosdaq_stocks)d KOSPI and KOSDAQ stocks, "
        "%(halted)d halted", summary,
    )
    return summary


def _master_file(masters: KisMasterHook, market: StockMarket, day: date) -> MasterFile:
    download = masters.download(market)
    served = download.served_at.astimezone(KST).date() if download.served_at else None
    if served is not None and served != day:
        raise CollectionFailed(
            f"{download.url} is the file of {served} (the server's Date), not of {day}: KIS serves only "
            f"the current masters, so a run cannot record another day's universe. Trigger a new run."
        )
    try:
        return read_master_zip(market, download.content, source=download.url)
    except MasterFileError as err:
        raise UniverseRejected(f"{err}. Nothing was stored: the universe of the last loaded day stays") from None


def _check_one_market_each(files: Sequence[MasterFile]) -> None:
    """A code in two files at once is refused."""
    where: dict[str, StockMarket] = {}
    for file in files:
        for record in file.records:
            if (other := where.setdefault(record.stock_code, file.market)) is not file.market:
                raise UniverseRejected(
                    f"{record.stock_code} is listed in both {other.file_name} and {file.market.file_name}: "
                    "nothing was stored"
                )


@dataclass(frozen=True)
class StoredDay:
    """What storing a day's universe found."""

    day: date
    records: Sequence[MasterRecord]
    previous: date | None  # the loaded day before it
    departed: list[tuple[str, str, str]]  # (code, name, market) listed on ``previous``, not on ``day``
    changes: dict[str, list[str]] = field(default_factory=dict)  # listed, delisted, moved, halted, resumed
    unchanged_files: list[str] = field(default_factory=list)  # markets whose file is byte for byte the previous day's

    def summary(self) -> dict[str, Any]:
        """The run's return value: small whatever the universe (at most ``NAMED_CHANGES`` codes a change)."""
        records = self.records
        by_market = Counter(record.market.value for record in records)
        stocks = sum(r.market is not StockMarket.KONEX and r.security_group == "ST" for r in records)
        return {
            "date": self.day.isoformat(),
            "previous": self.previous.isoformat() if self.previous else None,
            "codes": len(records),
            "markets": dict(by_market),
            "kospi_kosdaq_stocks": stocks,
            "halted": sum(record.halted for record in records),
            "changes": {kind: {"count": len(codes), "codes": codes[:NAMED_CHANGES]} for kind, codes in self.changes.items()},
            "unchanged_files": self.unchanged_files,
        }


def store_universe(
    conn: Any, day: date, files: Sequence[MasterFile], *, run_id: str, allow_large_change: bool = False
) -> StoredDay:
    """Stores the day's files in one transaction (see the module docstring); a re-run of the day
    undoes its earlier load first, so a newer file of the day leaves what it alone would have left
    (a code it lacks delisted on the day). Raises :class:`UniverseRejected` when a market loses too
    many codes at once (see ``MAX_DEPARTED_SHARE``) unless ``allow_large_change``, and
    ``CollectionFailed`` for a day before the latest loaded one (the current masters cannot
    describe it)."""
    records = [record for file in files for record in file.records]
    with conn.transaction():
        previous, latest, previous_files = conn.execute(load_sql("universe_loaded_days"), {"day": day}).fetchone()
        if latest is not None and latest > day:
            raise CollectionFailed(f"The universe of {latest} is stored already: {day}'s cannot be recorded after it")
        if previous is not None and not allow_large_change:
            _check_departures(conn, previous, records)
        loads = [
            {"market": f.market.value, "records": len(f.records), "sha256": f.sha256,
             "file_written": f.written.isoformat() if f.written else None}
            for f in files
        ]  # fmt: skip
        conn.execute(load_sql("universe_record_loads"), {"day": day, "run_id": run_id, "loads": json.dumps(loads)})
        conn.execute(load_sql("universe_clear_day"), {"day": day})
        rows = json.dumps([record.as_row() for record in records], ensure_ascii=False)
        conn.execute(load_sql("universe_store_day"), {"day": day, "records": rows})
        if previous is None:
            log.info("The first universe stored: %d codes on %s", len(records), day)
            return StoredDay(day, records, None, [])
        params = {"day": day, "previous": previous}
        departed = [tuple(row[:3]) for row in conn.execute(load_sql("universe_mark_delisted"), params)]
        changes: dict[str, list[str]] = {}
        for code, change in conn.execute(load_sql("universe_changes"), params):
            changes.setdefault(change, []).append(code)
    unchanged = sorted(f.market.value for f in files if (previous_files or {}).get(f.market.value) == f.sha256)
    if unchanged:
        log.warning(
            "The masters of %s are byte for byte those of %s: KIS may not have written the day's files yet "
            "(docs/stock-masters.md, when KIS writes them). Today's changes show at the next run.",
            ", ".join(unchanged), previous,
        )
    for change, codes in sorted(changes.items()):
        log.info("%s since %s: %d codes: %s", change, previous, len(codes), ", ".join(codes))
    return StoredDay(day, records, previous, departed, changes, unchanged)


def _check_departures(conn: Any, previous: date, records: Sequence[MasterRecord]) -> None:
    listed = {record.stock_code for record in records}
    before: dict[str, list[str]] = {}
    for code, market in members(conn, previous):
        before.setdefault(market, []).append(code)
    for market, codes in sorted(before.items()):
        gone = [code for code in codes if code not in listed]
        if len(gone) > max(MAX_DEPARTURES, MAX_DEPARTED_SHARE * len(codes)):
            raise UniverseRejected(
                f"{len(gone)} of the {len(codes)} {StockMarket(market).label} codes listed on {previous} are in "
                f"no master file today ({', '.join(gone[:10])}{' ...' if len(gone) > 10 else ''}): more than "
                f"{MAX_DEPARTED_SHARE:.0%} at once, a truncated file? Nothing was stored. If the market did "
                "change so much, trigger kis_universe with allow_large_change."
            )


def members(
    conn: Any, day: date, *, markets: Sequence[StockMarket] | None = None, groups: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """The codes listed on ``day`` (a loaded day), with their market, in code order: of ``markets``
    and security ``groups`` (None: all). Every KOSPI and KOSDAQ stock: ``markets=(KOSPI, KOSDAQ),
    groups=("ST",)``."""
    params = {
        "day": day,
        "markets": None if markets is None else [market.value for market in markets],
        "groups": None if groups is None else list(groups),
    }
    return [(code, market) for code, market in conn.execute(load_sql("universe_members"), params)]


def alert_departed_watchlist(conn: Any, stored: StoredDay, run: Run) -> None:
    """One alert per watch-listed code that left the universe on the stored day; a re-run of the
    day alerts none again. Logs the watch-listed codes the day's universe does not have."""
    watchlist = load_watchlist(task_context.variable("kis_watchlist"))
    watched = set(watchlist.codes)
    alerted = alerts.codes_alerted(conn, LEFT_UNIVERSE, stored.day)
    for code, name, market in stored.departed:
        if code not in watched or code in alerted:
            continue
        send_alert(
            Alert(
                kind=LEFT_UNIVERSE,
                message=(
                    f"{code} ({name}, {StockMarket(market).label}) is on the watch-list but left the universe on "
                    f"{stored.day}: KIS's stock masters listed it on {stored.previous}, no longer. Delisted, or "
                    "its code changed: KIS will call it unknown; take it off kis_watchlist"
                ),
                trading_date=stored.day,
                dag_id=run.dag_id,
                run_id=run.run_id,
                stock_code=code,
                details={"name": name, "market": market, "last_listed": str(stored.previous)},
            )
        )
    listed = {record.stock_code for record in stored.records}
    if missing := sorted(watched - listed):
        log.warning("Watch-listed codes not in the universe of %s: %s", stored.day, ", ".join(missing))
