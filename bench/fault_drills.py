"""Every fault drill of issue 7 from one command, the slow ones included.

    .venv/bin/python bench/fault_drills.py

Runs ``tests/test_fault_drills.py`` (one implementation of each drill) under pytest with ``-s``, so
that each drill prints what it injected and what the table looked like afterwards, and with the
market-database outage drill enabled: it stops a PostgreSQL cluster for two minutes, so it gets a
cluster of its own, in a temporary state directory on a free port, never the shared cluster on
54329 that the other tests use. That cluster is stopped and deleted afterwards, whatever happened.

Ends with one line per drill (passed / failed / xfailed: a known bug, with its reason) and exits
with pytest's status: non-zero when a drill's promise fails. Bounded: after ``TIME_LIMIT_SECONDS``
pytest is interrupted (its fixtures still clean up), then killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DRILLS = "tests/test_fault_drills.py"
# Read by the outage drill in tests/test_fault_drills.py: where its own cluster may live.
OUTAGE_STATE_DIR_ENV = "KIS_DRILL_OUTAGE_STATE_DIR"
TIME_LIMIT_SECONDS = 9 * 60
INTERRUPT_GRACE_SECONDS = 60


def run_drills(state_dir: Path, junit: Path) -> int:
    """pytest over the drills in its own process group; its exit status (124 when out of time)."""
    command = [sys.executable, "-m", "pytest", DRILLS, "-s", "-q", "-p", "no:cacheprovider",
               "--disable-warnings", f"--junitxml={junit}"]
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, OUTAGE_STATE_DIR_ENV: str(state_dir)},
                               start_new_session=True)
    try:
        return process.wait(timeout=TIME_LIMIT_SECONDS)
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as stop:
        # pytest runs in a session of its own, so a Ctrl-C here has to be passed on, like the timeout.
        out_of_time = isinstance(stop, subprocess.TimeoutExpired)
        print(f"\nfault drills: {'out of time' if out_of_time else 'interrupted'}; stopping", flush=True)
        # SIGINT first: pytest stops as after Ctrl-C and its fixtures stop what the drills started.
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=INTERRUPT_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return 124 if out_of_time else 130


def stop_private_cluster(state_dir: Path) -> None:
    """Stops the outage drill's cluster if it still runs (the drill stops it itself) and deletes it."""
    if (state_dir / "pg" / "data" / "PG_VERSION").exists():
        subprocess.run([sys.executable, "-m", "devtools.localpg", "stop"], cwd=REPO, check=False, timeout=120,
                       env={**os.environ, "KIS_STATE_DIR": str(state_dir)})
    shutil.rmtree(state_dir, ignore_errors=True)


def outcomes(junit: Path) -> list[tuple[str, str, float, str]]:
    """(drill, outcome, seconds, reason) per test case of pytest's JUnit report."""
    rows = []
    for case in ElementTree.parse(junit).iter("testcase"):
        outcome, reason = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, reason = ("failed" if child.tag == "failure" else "error"), child.get("message", "")
            elif child.tag == "skipped":
                xfail = child.get("type") == "pytest.xfail"
                outcome, reason = ("xfailed" if xfail else "skipped"), child.get("message", "")
        rows.append((case.get("name", "?"), outcome, float(case.get("time", 0)), reason))
    return rows


def main() -> int:
    started = time.monotonic()
    # /var/tmp, world-traversable: as root the cluster runs as the postgres user, which must reach it.
    state_dir = Path(tempfile.mkdtemp(prefix="kis-fault-drills-", dir="/var/tmp"))
    state_dir.chmod(0o755)
    junit = state_dir / "drills.xml"
    print(f"fault drills: {DRILLS}, the outage drill's own cluster under {state_dir}", flush=True)
    try:
        status = run_drills(state_dir, junit)
        rows = outcomes(junit) if junit.exists() else []
    finally:
        stop_private_cluster(state_dir)
    print(f"\nfault drills: {len(rows)} in {time.monotonic() - started:.0f} s")
    for name, outcome, seconds, reason in rows:
        print(f"  {name:<58} {outcome:<8} {seconds:6.1f} s" + (f"  {reason[:300]}" if reason else ""))
    return status


if __name__ == "__main__":
    sys.exit(main())
