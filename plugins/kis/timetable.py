"""The DAGs' schedules: the minute DAG's, the user's cron plus every collection minute of the venues'
calendar it misses; the daily DAGs' cron. Neither takes a manual run dated ahead of the clock.

Registered with Airflow by ``plugins/kis_timetable_plugin.py``: the scheduler and the API server only
rebuild a custom timetable from its serialized form when a plugin names its class.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.timetables.trigger import CronTriggerTimetable
from croniter import croniter

from kis.calendar import CLOSING_PRINT_GRACE, KST, KrxCalendar, Session, default_calendar
from kis.venues import DEFAULT_VENUES, Venue

if TYPE_CHECKING:
    from airflow.timetables.base import DataInterval
    from pendulum import DateTime
    from pendulum.tz.timezone import FixedTimezone, Timezone

__all__ = ["DEFAULT_CRON", "FIRST_RUN_AT_NEXT_TICK", "KisCronTimetable", "KrxSessionTimetable", "MANUAL_RUN_LEAD"]

DEFAULT_CRON = "* 9-15 * * 1-5"
# ``run_immediately`` of our DAGs: a DAG's first run is its next tick, never a tick missed before it
# was first scheduled (a newcomer starting at 19:00 gets no backfill of the day, and no minute run
# of 15:35, already past its deadline). Airflow 3.3.2 reads ``False`` as ``None`` (the past tick
# still runs when it is within 10 % of the interval or 5 minutes) and ignores the option when the
# DAG has a ``start_date``, so our DAGs have none and say ``timedelta(0)``.
FIRST_RUN_AT_NEXT_TICK = timedelta(0)
ONE_MINUTE = timedelta(minutes=1)
# KRX never closes for more than about ten days in a row (New Year, Chuseok); a month of days
# without a session means the calendar has none to add, and the cron's own ticks go on.
_SEARCH_DAYS = 31
# A regular Wednesday after Nextrade's launch: the description's example of a venue's regular day.
_REGULAR_DAY = date(2025, 11, 26)
# How far ahead of this Airflow's clock a manual run's logical date may be: the trigger form fills in
# the browser's time, which may run a little fast.
MANUAL_RUN_LEAD = timedelta(minutes=5)


class ManualRunsOnTheClock:
    """A timetable mixin that refuses a manual run whose logical date is ahead of this Airflow's clock.

    Airflow 3.3.2 starts no task of a run before its logical date (the scheduler logs "Logical date
    is in future" on every loop, the task's Details say "Logical date ... is in the future", the
    task log is empty), while the run counts against ``max_active_runs=1``: it sits "running" and
    holds back the DAG's scheduled runs until then. The trigger form fills in the browser's time,
    days ahead of a replayed session's clock (``make airflow REPLAY=...``). The API server asks the
    timetable for the data interval of a manual run with a logical date and answers its
    ``ValueError`` with 400 and the message, which the form shows: the trigger is refused with the
    reason and the way out, where it is made. A run without a logical date starts at once.
    """

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        now = datetime.now(UTC)
        if run_after - now > MANUAL_RUN_LEAD:
            raise ValueError(
                f"The logical date {run_after.astimezone(KST):%Y-%m-%d %H:%M} KST is {_span(run_after - now)} ahead"
                f" of this Airflow's clock ({now.astimezone(KST):%Y-%m-%d %H:%M} KST; a replayed session's clock,"
                " make airflow REPLAY=..., is days behind the browser's, which the form fills in): Airflow would start"
                " none of the run's tasks until then, and the run would hold the DAG's one active run, its scheduled"
                " runs waiting behind it. Clear the logical date (the run then starts now, on this clock; a backfill"
                " takes its day from the date field) or choose one that is not in the future."
            )
        return super().infer_manual_data_interval(run_after=run_after)  # type: ignore[misc]


class KisCronTimetable(ManualRunsOnTheClock, CronTriggerTimetable):
    """Airflow's ``CronTriggerTimetable`` (serialized as ours, and rebuilt as itself by its own
    ``deserialize``), refusing manual runs dated ahead of the clock (:class:`ManualRunsOnTheClock`):
    the schedule of the backfills and of ``kis_maintenance``."""


class KrxSessionTimetable(ManualRunsOnTheClock, CronTriggerTimetable):
    """``CronTriggerTimetable`` of the user's cron, plus every collection minute of every session of
    the collected venues (KRX by default; Nextrade's and the unified view's day run 08:00-20:00).

    The ticks are the union of:

    * every tick of the cron (``* 9-15 * * 1-5`` in Asia/Seoul by default), kept as they are, holidays
      and weekday closures included: the minute DAG's session gate skips those runs without a
      request, and the schedule then reads as the user wrote it;
    * every minute from a session's first collection tick (open + 1 minute, when its first bar has
      closed) to its close + ``CLOSING_PRINT_GRACE``, the window of
      ``KrxCalendar.in_collection_window``, for every session of the calendar. On a regular day the
      cron already holds all of them; a special session (CSAT day's 16:00-16:35, any row a user adds
      to ``include/krx_special_sessions.csv``) adds the minutes the cron misses, and so do the hours
      of Nextrade (``include/venue_sessions.csv``) when a venue of ``venues`` trades there.

    Everything else is ``CronTriggerTimetable``'s: the logical date and ``run_after`` are the tick,
    catchup and ``run_immediately`` behave the same, because only the tick arithmetic
    (``_get_next``/``_get_prev``, on which its alignment and ``next_dagrun_info`` are built) is
    extended here.

    The session tables and the venues travel in the serialized timetable, so the scheduler follows
    what the DAG was parsed with and never reads the files itself.

    :param cron: the base schedule.
    :param timezone: the cron's time zone.
    :param calendar: the KRX calendar; defaults to the one of ``include/krx_special_sessions.csv``.
    :param venues: the venues collected (the Variable ``kis_venues``, read when the DAG is parsed).
    """

    def __init__(
        self,
        cron: str = DEFAULT_CRON,
        *,
        timezone: str | Timezone | FixedTimezone = "Asia/Seoul",
        calendar: KrxCalendar | None = None,
        venues: tuple[Venue, ...] = DEFAULT_VENUES,
        **cron_options: Any,
    ) -> None:
        self._calendar = calendar or default_calendar()
        self._venues = tuple(venues)
        self._description: str | None = None
        super().__init__(cron, timezone=timezone, **cron_options)

    # --- the ticks ------------------------------------------------------------------------------

    def _get_next(self, current: DateTime) -> DateTime:
        """The first tick after ``current``: the cron's or a collection minute, whichever is first."""
        cron_next = super()._get_next(current)
        minute = self._next_collection_minute(current)
        return cron_next if minute is None else min(cron_next, _utc(minute))

    def _get_prev(self, current: DateTime) -> DateTime:
        """The last tick before ``current``: the cron's or a collection minute, whichever is last."""
        cron_prev = super()._get_prev(current)
        minute = self._prev_collection_minute(current)
        return cron_prev if minute is None else max(cron_prev, _utc(minute))

    def _next_collection_minute(self, after: datetime) -> datetime | None:
        """The first minute strictly after ``after`` inside a session's collection window."""
        at = after.astimezone(KST)
        for offset in range(_SEARCH_DAYS):
            windows = self._windows(at.date() + timedelta(days=offset))
            starts = [first for first, _ in windows if at < first]
            inside = [at.replace(second=0, microsecond=0) + ONE_MINUTE for first, last in windows if first <= at < last]
            if starts or inside:
                return min(starts + inside)
        return None

    def _prev_collection_minute(self, before: datetime) -> datetime | None:
        """The last minute strictly before ``before`` inside a session's collection window."""
        at = before.astimezone(KST)
        floor = at.replace(second=0, microsecond=0)
        for offset in range(_SEARCH_DAYS):
            windows = self._windows(at.date() - timedelta(days=offset))
            ends = [last for _, last in windows if at > last]
            inside = [floor - ONE_MINUTE if floor == at else floor for first, last in windows if first < at <= last]
            if ends or inside:
                return max(ends + inside)
        return None

    def _windows(self, day: date) -> list[tuple[datetime, datetime]]:
        """The collection windows of ``day``, one per collected venue that trades that day."""
        sessions = (self._calendar.session(day, venue) for venue in self._venues)
        return [_collection_window(session) for session in sessions if session is not None]

    def extra_minutes(self, session: Session) -> list[datetime]:
        """The collection minutes of ``session`` that the base cron does not tick at."""
        first, last = _collection_window(session)
        count = (last - first) // ONE_MINUTE + 1
        local_first, local_last = first.astimezone(self._timezone), last.astimezone(self._timezone)
        # The description lists these for every special session, and Airflow reads the description
        # wherever the DAG file is parsed, each task process included (isinstance against its
        # Timetable protocol reads every attribute): a window within one local day and offset is
        # checked against the cron's fields in microseconds, and only the rest walks croniter.
        cron = _CronFields.of(self._expression)
        if cron is not None and local_first.date() == local_last.date() and local_first.utcoffset() == local_last.utcoffset():
            start = local_first.hour * 60 + local_first.minute
            ticked = cron.minutes_of_day(local_first.date())
            return [first + i * ONE_MINUTE for i in range(count) if start + i not in ticked]
        cursor = pendulum.instance(first - ONE_MINUTE).in_timezone(self._timezone).naive()
        walk = croniter(self._expression, start_time=cursor)
        covered: set[datetime] = set()
        while (tick := pendulum.instance(walk.get_next(datetime), tz=self._timezone)) <= last:
            covered.add(tick)
        return [m for i in range(count) if (m := first + i * ONE_MINUTE) not in covered]

    # --- what the UI shows ----------------------------------------------------------------------

    @property
    def summary(self) -> str:
        nextrade = any(venue is not Venue.KRX for venue in self._venues)
        return f"{self._expression} + KRX special sessions" + (" + Nextrade hours" if nextrade else "")

    @property
    def description(self) -> str:
        """The cron's own description, then the extra hours of each special session that has some."""
        if self._description is None:
            self._description = self._describe()
        return self._description

    @description.setter
    def description(self, cron_description: str) -> None:
        # CronMixin.__init__ assigns the cron's description; it becomes the first half of ours, and
        # the extra hours are only worked out when something reads the description.
        self._cron_description = cron_description
        self._description = None

    def _describe(self) -> str:
        extra_by_hours: dict[str, list[str]] = {}
        for row in self._calendar.special_session_rows():
            session = self._calendar.session(date.fromisoformat(row["date"]))
            if session is not None and (extra := self.extra_minutes(session)):
                extra_by_hours.setdefault(_ranges(extra), []).append(row["date"])
        extras = "; ".join(f"{hours} on {', '.join(days)}" for hours, days in extra_by_hours.items())
        text = f"{self._cron_description} ({self._timezone.name}), plus KRX special sessions: " + (
            extras or "none outside the cron"
        )
        for venue in self._venues:
            if venue is not Venue.KRX and (session := self._calendar.session(_REGULAR_DAY, venue)):
                text += f"; plus {venue.value} ({venue.label}): {_ranges(self.extra_minutes(session))} on a regular day"
        return text

    # --- serialization --------------------------------------------------------------------------

    def serialize(self) -> dict[str, Any]:
        return {
            **super().serialize(),
            "special_sessions": self._calendar.special_session_rows(),
            "venue_sessions": self._calendar.venue_session_rows(),
            "venues": [venue.value for venue in self._venues],
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> KrxSessionTimetable:
        # The cron half is decoded by Airflow's own CronTriggerTimetable (time zone, interval, ...).
        base = CronTriggerTimetable.deserialize(data)
        return cls(
            base._expression,
            timezone=base._timezone,
            interval=base._interval,
            run_immediately=base._run_immediately,
            calendar=KrxCalendar(data["special_sessions"], data.get("venue_sessions")),
            venues=tuple(Venue(name) for name in data.get("venues", [Venue.KRX.value])),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KrxSessionTimetable):
            return NotImplemented
        return super().__eq__(other) and self._venues == other._venues and (
            self._calendar.special_session_rows() == other._calendar.special_session_rows()
            and self._calendar.venue_session_rows() == other._calendar.venue_session_rows()
        )

    def __hash__(self) -> int:
        return super().__hash__()


@dataclass(frozen=True)
class _CronFields:
    """A five-field cron expression as croniter expands it: the minutes of day it ticks at, and
    its days. Day of month and day of week are OR-ed when both are restricted, as cron does."""

    minutes: frozenset[int]  # of the day: hour * 60 + minute
    days: frozenset[int] | None  # None: any
    months: frozenset[int] | None
    weekdays: frozenset[int] | None  # cron's: Sunday 0

    @classmethod
    @functools.cache
    def of(cls, expression: str) -> _CronFields | None:
        """None for what only a croniter walk reads (``L``, ``#``, a seconds field)."""
        fields, nth_weekday = croniter.expand(expression)
        if nth_weekday or len(fields) != 5 or any(v != "*" and not isinstance(v, int) for f in fields for v in f):
            return None
        minutes, hours, days, months, weekdays = (None if field == ["*"] else frozenset(field) for field in fields)
        return cls(
            minutes=frozenset(h * 60 + m for h in (hours or range(24)) for m in (minutes or range(60))),
            days=days,
            months=months,
            weekdays=None if weekdays is None else frozenset(day % 7 for day in weekdays),  # Sunday is 0 or 7
        )

    def minutes_of_day(self, day: date) -> frozenset[int]:
        """The minutes of ``day`` (hour * 60 + minute) the cron ticks at."""
        if self.months is not None and day.month not in self.months:
            return frozenset()
        on_day = self.days is None or day.day in self.days
        on_weekday = self.weekdays is None or day.isoweekday() % 7 in self.weekdays
        both = self.days is not None and self.weekdays is not None
        ticks = (on_day or on_weekday) if both else (on_day and on_weekday)
        return self.minutes if ticks else frozenset()


def _collection_window(session: Session) -> tuple[datetime, datetime]:
    """First and last collection tick of ``session``, as ``KrxCalendar.in_collection_window`` has them."""
    return session.open + ONE_MINUTE, session.close + CLOSING_PRINT_GRACE


def _span(ahead: timedelta) -> str:
    """``3 days 4 h 40 min``: how far ahead, to the minute."""
    minutes = int(ahead.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return " ".join(part for part in (f"{days} days" if days else "", f"{hours} h" if hours else "", f"{minutes} min") if part)


def _utc(moment: datetime) -> DateTime:
    return pendulum.instance(moment).in_timezone("UTC")


def _ranges(minutes: list[datetime]) -> str:
    """``16:00-16:35``-style runs of consecutive minutes (KST wall clock)."""
    runs: list[list[datetime]] = []
    for minute in minutes:
        if runs and minute - runs[-1][-1] == ONE_MINUTE:
            runs[-1].append(minute)
        else:
            runs.append([minute])
    return ", ".join(f"{run[0]:%H:%M}-{run[-1]:%H:%M}" if len(run) > 1 else f"{run[0]:%H:%M}" for run in runs)
