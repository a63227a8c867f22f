"""Where the stack's CPU goes: py-spy over every component's process tree, idle and during minute runs.

    .venv/bin/python bench/profile_stack.py [--runs 5] [--idle 60] [--shape per-code|batched|bare]
        [--top 25] [--out test-output/profile]

Starts the benchmarks' stack (bench/_harness.py), lets it settle, then samples each component
(scheduler with its executor workers and task processes, dag-processor, triggerer, api-server)
with ``py-spy record --subprocesses``: first ``--idle`` seconds with nothing to do, then while
``--runs`` minute runs of the chosen shape play. For each phase and component it prints the
functions that hold the most samples, by their own samples ("self") and with what they call
("total"), restricted to frames of our code, Airflow, and the libraries they call. The raw
collapsed stacks are kept in ``--out`` (one file per phase and component) for flame graphs
(``speedscope``, ``flamegraph.pl``).

What py-spy samples is wall time of running threads (``--idle`` threads left out): a process
waiting on a socket does not count, one spinning does. Needs ``py-spy`` (requirements-test.txt)
and, for another user's processes, root or ptrace permission.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from _harness import KST, REPO, measure_minute_run, running_stack

SHAPES = {"per-code": ("kis_minute_bars", "1"), "batched": ("kis_minute_bars", "10"), "bare": ("bare_minute_shape", "1")}


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        sys.exit("py-spy not found: scripts/bootstrap.sh installs it (requirements-test.txt)")
    return found


def record(pids: dict[str, int], out: Path, phase: str) -> dict[str, subprocess.Popen]:
    """One py-spy per component, sampling its whole process tree until stopped."""
    out.mkdir(parents=True, exist_ok=True)
    return {
        name: subprocess.Popen(
            [py_spy(), "record", "--pid", str(pid), "--subprocesses", "--format", "raw", "--rate", "100",
             "--nonblocking", "--output", str(out / f"{phase}-{name}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    }


def stop(recorders: dict[str, subprocess.Popen]) -> None:
    for process in recorders.values():
        process.send_signal(signal.SIGINT)
    for process in recorders.values():
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def frame_name(frame: str) -> str:
    """``function (path:line)`` shortened to ``function (package/module.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/plugins/", "/dags/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def summarize(path: Path, top: int) -> str:
    """The functions with the most samples in a collapsed-stack file, by self and by total."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    if not path.exists():
        return f"  (no samples: {path.name})"
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [frame_name(f) for f in stack.split(";")[1:]]  # the first frame is the process
        n = int(count)
        samples += n
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"  {samples} samples ({samples / 100:.1f} s of running threads at 100 Hz)"]
    lines.append("  self:")
    lines += [f"    {n:7d} {100 * n / max(samples, 1):5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines.append("  total (with callees):")
    lines += [f"    {n:7d} {100 * n / max(samples, 1):5.1f}%  {frame}" for frame, n in total.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--idle", type=float, default=60.0, help="seconds of idle sampling (0: none)")
    p.add_argument("--shape", choices=sorted(SHAPES), default="per-code")
    p.add_argument("--day", default="2026-11-25")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", default=str(REPO / "test-output" / "profile"))
    args = p.parse_args()
    out = Path(args.out)
    day = datetime.fromisoformat(args.day).replace(tzinfo=KST)
    dag_id, per_task = SHAPES[args.shape]
    bare = [REPO / "bench" / "dags" / "bare_minute_shape.py"] if args.shape == "bare" else []
    with running_stack("profile", day=day, extra_dags=bare) as stack:
        stack.wait_for_dag(dag_id)
        stack.set_variable("kis_codes_per_task", per_task)
        pids = {name: process.pid for name, process in stack.processes.items()}
        # One unmeasured run: the token, the schema, the first partitions.
        measure_minute_run(stack, day.replace(hour=9, minute=59), f"warmup_{uuid.uuid4().hex[:6]}", dag_id=dag_id)
        time.sleep(5)
        if args.idle > 0:
            recorders = record(pids, out, "idle")
            time.sleep(args.idle)
            stop(recorders)
        recorders = record(pids, out, args.shape)
        started = time.monotonic()
        for i in range(args.runs):
            tick = day.replace(hour=10, minute=0) + timedelta(minutes=i + 1)
            run = measure_minute_run(stack, tick, f"profile_{i}_{uuid.uuid4().hex[:6]}", dag_id=dag_id)
            print(f"  run {i + 1}: {run.state}, queued -> committed {run.since_queued():.2f} s", flush=True)
        elapsed = time.monotonic() - started
        stop(recorders)
    for phase, seconds in (("idle", args.idle), (args.shape, elapsed)):
        if phase == "idle" and not args.idle:
            continue
        print(f"\n=== {phase}: {seconds:.0f} s ===")
        for name in pids:
            print(f"\n[{name}]")
            print(summarize(out / f"{phase}-{name}.txt", args.top))


if __name__ == "__main__":
    main()
