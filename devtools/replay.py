"""A past session played live on the wall clock: ``make airflow REPLAY=2026-11-27``.

The whole local stack runs under libfaketime (Debian's ``libfaketime``, installed on demand as
root) with one relative offset: its own PostgreSQL cluster, the Airflow components and the
simulator all read the replayed day's clock, which runs on in real time from where it starts. The
DAGs, the gate and the simulator then do on that day exactly what they do live; nothing in the
product knows about the replay.

The database is shifted too, in a cluster of its own: the scheduler creates a run when
``next_dagrun_create_after <= now()`` in SQL, with the tick computed by Python; with the Python
clocks alone set back, every tick would be due at once and the runs would race ahead of the market.
The monotonic clock is shifted as well: libfaketime 0.9.10 with ``FAKETIME_DONT_FAKE_MONOTONIC``
turns Python's ``time.sleep`` (an absolute ``clock_nanosleep`` on it) into ``EINVAL``.

Each replay starts from nothing (``<state dir>/replay``, removed first): a metadata database with
runs of a later minute, from an earlier replay, would hold the schedule back until then.

File times are not shifted (Debian's libfaketime does not fake ``stat``): the DAG files of the
checkout would be days newer than the replayed clock, and the dag-processor, which parses again a
file modified after its last parse, would parse them every second and reset the first tick while
no run exists yet. The replay parses a copy of ``dags/`` dated at the replay's start instead.
"""

from __future__ import annotations

import glob
import math
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from devtools import airflow_env, debian, localpg

# The kis package lives in plugins/, which Airflow (not this process) puts on sys.path.
if str(airflow_env.REPO / "plugins") not in sys.path:
    sys.path.insert(0, str(airflow_env.REPO / "plugins"))
from kis.bar import KST
from kis.calendar import default_calendar

FAKETIME_LIBRARY = "/usr/lib/*/faketime/libfaketimeMT.so.1"  # the thread-safe build


@dataclass(frozen=True)
class Replay:
    """Where the replayed clock starts (KST) and the cluster port of its world."""

    start: datetime
    pg_port: int

    @classmethod
    def parse(cls, text: str, pg_port: int) -> Replay:
        """``2026-11-27`` (that day's KRX open) or ``2026-11-27T14:50`` (KST).

        From the open, the stack parses the DAGs during the first minute and the first run is at
        open + 1 (or + 2 on a slow start), about a minute after the UI answers: its 30 closed bars
        reach back to the open, so no minute is missed. (A minute earlier, the UI answered a minute
        before the first bar, and the open's own tick only skips.)

        :raises ValueError: not a date, or a day without a KRX session.
        """
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"replay: {text!r} is neither YYYY-MM-DD nor YYYY-MM-DDTHH:MM") from None
        session = default_calendar().session(moment.date())
        if session is None:
            raise ValueError(f"replay: KRX has no session on {moment.date():%Y-%m-%d (%A)}: pick a trading day")
        if len(text) == len("YYYY-MM-DD"):
            return cls(session.open, pg_port)
        return cls(moment.replace(tzinfo=moment.tzinfo or KST).astimezone(KST), pg_port)

    @property
    def day(self) -> date:
        return self.start.date()

    def faketime(self, now: datetime) -> dict[str, str]:
        """The variables that set a process's clocks to this replay, ``now`` being the real time."""
        offset = math.ceil((self.start - now).total_seconds())  # never before the asked start
        return {
            "LD_PRELOAD": _library(),
            "FAKETIME": f"{offset:+d}",
        }


def enter(replay: Replay) -> Path:
    """Points this process's environment, and so every process it starts, at a fresh replay world.

    The world keeps the checkout's UI login; its cluster listens on ``replay.pg_port``. Returns its
    DAGs folder (see the module's docstring).
    """
    password = airflow_env.admin_password()
    world = localpg.state_dir() / "replay"
    os.environ |= {"KIS_STATE_DIR": str(world), "KIS_PG_PORT": str(replay.pg_port)}
    localpg.stop()  # an earlier replay that was not stopped cleanly
    shutil.rmtree(world, ignore_errors=True)
    world.mkdir(parents=True)
    world.chmod(0o755)  # the server user must reach its cluster inside
    (world / "admin.password").write_text(password)
    (world / "admin.password").chmod(0o600)
    dags = shutil.copytree(airflow_env.REPO / "dags", world / "dags")
    dated = replay.start.timestamp()
    for path in [dags, *dags.rglob("*")]:
        os.utime(path, (dated, dated))
    os.environ |= replay.faketime(datetime.now(KST))
    return dags


def _library() -> str:
    """libfaketime's path; installs Debian's package when root."""
    found = glob.glob(FAKETIME_LIBRARY)
    if not found and debian.install("libfaketime", "the replay's clock"):
        found = glob.glob(FAKETIME_LIBRARY)
    if not found:
        sys.exit("libfaketime not found: install Debian's package (sudo apt-get install libfaketime).")
    return found[0]
