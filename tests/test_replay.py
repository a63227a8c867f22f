"""`make airflow REPLAY=...`: which moment a replay starts at, what a process under it reads, and
what `make airflow` hands on to ``devtools.local_airflow``.

The whole replayed stack is exercised by tests/test_first_start.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from kis.bar import KST

from devtools.replay import Replay


def kst(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=KST)


@pytest.mark.parametrize(
    ("asked", "start"),
    [
        ("2026-11-27", "2026-11-27T09:00"),  # the open
        ("2026-11-19", "2026-11-19T10:00"),  # CSAT day opens at 10:00
        ("2026-11-27T14:50", "2026-11-27T14:50"),  # KST when it has no offset
        ("2026-11-27T05:50+00:00", "2026-11-27T14:50"),
    ],
)
def test_a_replay_starts_where_it_is_asked_to(asked: str, start: str) -> None:
    assert Replay.parse(asked, pg_port=1).start == kst(start)


@pytest.mark.parametrize(
    ("asked", "reason"),
    [("2026-11-28", "no session on 2026-11-28 (Saturday)"), ("yesterday", "neither YYYY-MM-DD")],
)
def test_a_day_without_a_session_is_refused_with_the_reason(asked: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        Replay.parse(asked, pg_port=1)


def test_a_process_under_the_replay_reads_the_replayed_clock_and_can_sleep() -> None:
    replay = Replay.parse("2026-11-27T10:30", pg_port=1)
    child = subprocess.run(
        [sys.executable, "-c", "import time, datetime; time.sleep(0.1); print(datetime.datetime.now().astimezone().isoformat())"],
        env={"TZ": "Asia/Seoul", **replay.faketime(datetime.now(KST))},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert datetime.fromisoformat(child.stdout.strip()).strftime("%Y-%m-%d %H:%M") == "2026-11-27 10:30"


def test_make_airflow_hands_its_ports_and_options_to_the_module() -> None:
    """``make airflow API_PORT=... SIMULATOR_PORT=...`` (README), and any other option through AIRFLOW_ARGS."""
    make_vars = ("REPLAY", "API_PORT", "SIMULATOR_PORT", "AIRFLOW_ARGS", "MAKEFLAGS", "MAKELEVEL")
    dry_run = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", "airflow", "REPLAY=2026-11-27", "API_PORT=18480", "SIMULATOR_PORT=19444",
         "AIRFLOW_ARGS=--replay-pg-port 54399"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=True,
        env={key: value for key, value in os.environ.items() if key not in make_vars},
    )  # fmt: skip
    # Under `make test` (CI) this make is a sub-make: its own lines come around the command.
    (command,) = [line for line in dry_run.stdout.splitlines() if "-m devtools.local_airflow" in line]
    assert command.split("-m devtools.local_airflow", 1)[1].split() == [
        "--replay", "2026-11-27", "--api-port", "18480", "--simulator-port", "19444", "--replay-pg-port", "54399"
    ]  # fmt: skip
