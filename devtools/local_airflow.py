"""A local Airflow without Docker: scheduler, dag-processor, triggerer and api-server, on 127.0.0.1.

`airflow standalone` would bind its log servers on every interface, so the parts run separately,
with ``--skip-serve-logs`` (the task logs stay readable from the shared log folder), each in its
own process group so that stopping them ends their children too and nothing else.

    python -m devtools.local_airflow [--api-port 8080] [--simulator-port 9443]

starts the simulator (the default KIS endpoint until ``AIRFLOW_CONN_KIS_DEFAULT`` is set), prints
the UI address and the login, and stops everything on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from devtools import airflow_env

COMPONENTS = {
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
    "api-server": ["api-server"],
}


def _start(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(processes: dict[str, subprocess.Popen], grace: float = 20.0) -> None:
    """SIGTERM to each process group we started, then SIGKILL to whatever is left after ``grace``."""
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for_http(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.5)


@contextmanager
def running_airflow(env: dict[str, str], *, components=tuple(COMPONENTS), log_dir: Path | None = None):
    """Starts the components with ``env`` (from :func:`airflow_env.environment`), yields, stops them."""
    airflow_env.prepare(env)
    log_dir = log_dir or Path(env["AIRFLOW_HOME"]) / "components"
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name in components:
            argv = [str(airflow_env.VENV_BIN / "airflow"), *COMPONENTS[name]]
            processes[name] = _start(argv, env, log_dir / f"{name}.log")
        if "api-server" in processes:
            wait_for_http(f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}/api/v2/monitor/health")
        yield processes
    finally:
        _stop(processes)


@contextmanager
def running_simulator(port: int, extra_args: list[str] = ()):
    argv = [str(airflow_env.VENV_BIN / "python"), "-m", "simulator", "--host", "127.0.0.1", "--port", str(port),
            *extra_args]
    process = subprocess.Popen(argv, cwd=airflow_env.REPO, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/_sim/clock", timeout=30)
        yield process
    finally:
        _stop({"simulator": process}, grace=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument("--simulator-port", type=int, default=9443)
    args = parser.parse_args()

    kis_conn = os.environ.get("AIRFLOW_CONN_KIS_DEFAULT")
    env = airflow_env.environment(
        "local", api_port=args.api_port,
        kis_conn=kis_conn or airflow_env.kis_connection("127.0.0.1", args.simulator_port),
    )
    password = airflow_env.admin_password()
    with running_simulator(args.simulator_port) if not kis_conn else _nothing():
        with running_airflow(env):
            print(
                f"\nAirflow UI: http://127.0.0.1:{args.api_port}  (login admin / {password})\n"
                f"KIS endpoint: {'the simulator on 127.0.0.1:' + str(args.simulator_port) if not kis_conn else 'AIRFLOW_CONN_KIS_DEFAULT'}\n"
                f"Logs: {env['AIRFLOW_HOME']}/components/  ·  Ctrl-C stops everything.\n",
                flush=True,
            )
            try:
                signal.pause()
            except KeyboardInterrupt:
                print("Stopping...", file=sys.stderr)


@contextmanager
def _nothing():
    yield None


if __name__ == "__main__":
    main()
