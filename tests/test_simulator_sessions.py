"""The simulator's own statement of the sessions (simulator/sessions.py) against the collector's
calendar (kis.calendar), day by day: the simulator's ground truth no longer comes from the calendar
it checks, so a session grid wrong in either shows here as a disagreement (issue 22)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from kis.calendar import default_calendar
from kis.venues import Venue

from simulator.sessions import Sessions

FIRST, LAST = date(2024, 1, 1), date(2026, 12, 31)


@pytest.mark.parametrize("venue", list(Venue), ids=[venue.value for venue in Venue])
def test_the_simulators_sessions_are_the_calendars_on_every_day_of_2024_to_2026(venue: Venue) -> None:
    calendar, sessions = default_calendar(), Sessions()
    differ = []
    for day in (FIRST + timedelta(days=n) for n in range((LAST - FIRST).days + 1)):
        product, simulated = calendar.session(day, venue), sessions.session(day, venue)
        grid = product.bar_minutes if product else None
        if grid != (simulated.bar_minutes if simulated else None):
            differ.append(f"{day}: calendar {len(grid or ())} bars, simulator {len(simulated.bar_minutes) if simulated else 0}")
        elif venue is Venue.KRX and product and product.closing_bar != simulated.closing_print:
            differ.append(f"{day}: closing bar {product.closing_bar:%H:%M} in the calendar, {simulated.closing_print:%H:%M} simulated")
    assert differ == []

