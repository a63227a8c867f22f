"""Airflow plugin entry point: registers our timetables, the minute DAG's ``KrxSessionTimetable`` and
the daily DAGs' ``KisCronTimetable``.

A DAG file may use any timetable class, but the scheduler and the API server rebuild a serialized
DAG's timetable only from Airflow's own classes and those a plugin lists in ``timetables``; an
unregistered one fails the DAG's serialization. The class lives in the ``kis`` package (ignored by
the plugin manager through ``plugins/.airflowignore``), so that the DAG file and this plugin import
one and the same class.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from kis.timetable import KisCronTimetable, KrxSessionTimetable


class KisTimetablePlugin(AirflowPlugin):
    name = "kis_minute_bars_timetable"
    timetables = [KrxSessionTimetable, KisCronTimetable]
