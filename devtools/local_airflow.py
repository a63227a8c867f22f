"""A local Airflow without Docker: scheduler, dag-processor, triggerer and api-server, on 127.0.0.1.

`airflow standalone` would bind its log servers on every interface, so the parts run separately,
with ``--skip-serve-logs`` (the task logs stay readable from the shared log folder), each in its
own process group so that stopping them ends their children too and nothing else.

    python -m devtools.local_airflow [--api-port 8080] [--simulator-port 9443] [--celery-workers N]
    python -m devtools.local_airflow --replay 2026-11-27[T14:50]
    python -m devtools.local_airflow airflow dags test kis_minute_backfill 2026-11-25

The first form (`make airflow`) starts the simulator (the default KIS endpoint until
``AIRFLOW_CONN_KIS_DEFAULT`` is set), brings the market schema up to date, prints the UI address
and the login, and stops everything on Ctrl-C (or SIGTERM, or the terminal closing). The second
runs a command in the same environment (metadata database, connections, secrets), for ``airflow
dags test`` and the other CLI commands, while the first one runs in another terminal.

``--replay DAY`` (``make airflow REPLAY=DAY``) plays a past session live on the wall clock, the
whole stack in a world of its own under libfaketime (``devtools/replay.py``).

``--celery-workers N`` (or ``KIS_CELERY_WORKERS=N``) runs a CeleryExecutor instead of the
LocalExecutor: a private Redis on 127.0.0.1 (``devtools.localredis``, Debian's ``redis-server``,
installed on demand as root) and N ``airflow celery worker`` processes, each with its own hostname
(``kis-worker-1``...) and log-server port, and ``--skip-serve-logs`` like the other components
(Airflow's log server binds every interface; the UI reads the task logs from the shared folder).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import date
from pathlib import Path

from devtools import airflow_env, localpg, localredis, replay
from devtools.net import free_port

PLUGINS = airflow_env.REPO / "plugins"
COMPONENTS = {
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
    "api-server": ["api-server"],
}


def celery_worker_argv(index: int) -> list[str]:
    return ["celery", "worker", "--celery-hostname", f"kis-worker-{index}@%h", "--skip-serve-logs"]


def _start(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(processes: dict[str, subprocess.Popen], grace: float = 20.0) -> None:
    """SIGTERM to each process group we started, then SIGKILL to whatever is left after ``grace``.

    The group is killed even when its leader has exited: a component's workers (the api-server's
    uvicorn, the scheduler's executor processes) may outlive it.
    """
    for process in processes.values():
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def wait_for_http(
    url: str, timeout: float = 90.0, processes: dict[str, subprocess.Popen] | None = None
) -> None:
    """Waits until ``url`` answers at all (any status); fails fast when one of ``processes`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            for name, process in (processes or {}).items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {process.returncode} while starting: see its log"
                    ) from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.5)


@contextmanager
def running_airflow(
    env: dict[str, str], *, components: Sequence[str] = tuple(COMPONENTS), log_dir: Path | None = None,
    celery_workers: int = 0,
) -> Iterator[dict[str, subprocess.Popen]]:
    """Starts the components with ``env`` (from :func:`airflow_env.environment`), yields, stops them.

    The metadata database is migrated and the pools imported first. Each component logs to
    ``<log_dir>/<name>.log`` (default ``$AIRFLOW_HOME/components``). ``celery_workers`` Celery
    workers (``celery-worker-1``...) are started too; ``env`` must then carry
    :func:`airflow_env.celery`.
    """
    airflow_env.prepare(env)
    log_dir = log_dir or Path(env["AIRFLOW_HOME"]) / "components"
    processes: dict[str, subprocess.Popen] = {}
    airflow = str(airflow_env.VENV_BIN / "airflow")
    try:
        # The API server first, and healthy before anything runs a task: a task started earlier
        # cannot reach the Execution API and is killed ("Workload execution failed"), and its run
        # then misses its deadline: a failure and an alert on every first start. The dag-processor
        # runs no task: it starts beside the API server, so that the DAGs are parsed (and their
        # first tick set) by the time the UI answers, not half a minute later.
        early = [name for name in ("api-server", "dag-processor") if name in components]
        for name in early:
            processes[name] = _start([airflow, *COMPONENTS[name]], env, log_dir / f"{name}.log")
        if "api-server" in processes:
            api = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}"
            wait_for_http(f"{api}/api/v2/monitor/health", processes=processes)
            if "scheduler" in components or celery_workers:
                # The Execution API (a Cadwyn app) builds its versioned routes on its first request,
                # on the server's event loop: 5-12 s on 2 loaded cores during which the whole API
                # server answers nothing, the UI and the REST API included. Made here, that first
                # request keeps the first task's start call (and a client's 5 s timeout) out of it.
                wait_for_http(f"{api}/execution/health", processes=processes)
        for name in components:
            if name not in early:
                processes[name] = _start([airflow, *COMPONENTS[name]], env, log_dir / f"{name}.log")
        for index in range(1, celery_workers + 1):
            own = airflow_env.celery_worker(index, free_port())
            worker = _start([airflow, *celery_worker_argv(index)], {**env, **own}, log_dir / f"celery-worker-{index}.log")
            worker.own_env = own  # what sets it apart (setproctitle hides /proc/PID/environ)
            processes[f"celery-worker-{index}"] = worker
        if "api-server" in processes:
            wait_for_http(f"{api}/api/v2/monitor/health", processes=processes)
        yield processes
    finally:
        # The API server last: the others call it on their way out (a running task reports its
        # end, the triggerer its triggers'), and without it they wait out their retries instead.
        _stop({name: process for name, process in processes.items() if name != "api-server"})
        _stop({name: process for name, process in processes.items() if name == "api-server"})


@contextmanager
def running_simulator(
    port: int, extra_args: Sequence[str] = (), log_path: Path | None = None
) -> Iterator[subprocess.Popen]:
    """The KIS simulator as its own process on 127.0.0.1:``port`` (``python -m simulator``)."""
    argv = [
        str(airflow_env.VENV_BIN / "python"),
        "-m",
        "simulator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra_args,
    ]
    # The simulator imports the kis package from plugins/, as Airflow does.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")])),
    }
    with open(log_path, "ab") if log_path else nullcontext() as log:
        process = subprocess.Popen(
            argv, cwd=airflow_env.REPO, env=env, start_new_session=True, stdout=log, stderr=log
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/_sim/clock", timeout=30, processes={"simulator": process})
        yield process
    finally:
        _stop({"simulator": process}, grace=5)


def migrate_market_db(env: dict[str, str], today: date | None = None) -> list[str]:
    """Brings the market schema up to date, so that the dashboard works before the first DAG run.

    :param today: the day whose month is partitioned (default: today in KST).
    """
    import psycopg

    # The kis package lives in plugins/, which Airflow (not this process) puts on sys.path.
    if str(PLUGINS) not in sys.path:
        sys.path.insert(0, str(PLUGINS))
    from kis import schema

    with psycopg.connect(env["AIRFLOW_CONN_KIS_MARKET_DB"]) as conn:
        return schema.migrate(conn, today=today)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stop_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP (terminal closed) stop everything.

    The first one unwinds the context managers, which stop the components; later ones are ignored,
    so that an impatient second Ctrl-C cannot cut the clean-up short and orphan a process group
    (the clean-up ends with SIGKILL after its grace period anyway).
    """

    def interrupt(signum: int, frame: object) -> None:
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, signal.SIG_IGN)
        print(f"\n{signal.Signals(signum).name}: stopping everything...", file=sys.stderr, flush=True)
        raise KeyboardInterrupt

    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, interrupt)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument("--simulator-port", type=int, default=9443)
    parser.add_argument(
        "--celery-workers",
        type=int,
        default=int(os.environ.get("KIS_CELERY_WORKERS", "0")),
        help="run a CeleryExecutor with this many workers and a private Redis (default 0: LocalExecutor;"
        " env KIS_CELERY_WORKERS)",
    )
    parser.add_argument("--redis-port", type=int, default=6389, help="the private Redis's port (with Celery)")
    parser.add_argument(
        "--replay",
        default=os.environ.get("KIS_REPLAY") or None,
        metavar="DAY[THH:MM]",
        help="play a past session live on the wall clock, from its open or from HH:MM KST,"
        " in a world of its own under libfaketime (devtools/replay.py; env KIS_REPLAY)",
    )
    parser.add_argument(
        "--replay-pg-port", type=int, default=None, help="the replay cluster's port (default: any free one)"
    )
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        help="instead of starting Airflow, run this command in its environment, e.g. airflow dags test ...",
    )
    args = parser.parse_args(argv)

    kis_conn = os.environ.get("AIRFLOW_CONN_KIS_DEFAULT")
    replaying = None
    if args.replay:
        if kis_conn or args.command:
            parser.error("--replay plays the simulator's market in a world of its own: without"
                         " AIRFLOW_CONN_KIS_DEFAULT and without a command")
        try:
            replaying = replay.Replay.parse(args.replay, args.replay_pg_port or free_port())
        except ValueError as error:
            parser.error(str(error))
        replay_dags = replay.enter(replaying)
    # The environment names the cluster's password: on a fresh machine the cluster is made first.
    localpg.start()
    localpg.wait_until_accepting()
    env = airflow_env.environment(
        "local",
        api_port=args.api_port,
        kis_conn=kis_conn or airflow_env.kis_connection("127.0.0.1", args.simulator_port),
        # With a KIS account of its own, the masters come from KIS's download server.
        master_conn=None if kis_conn else airflow_env.master_connection("127.0.0.1", args.simulator_port),
    )
    # A local Airflow is there to watch the DAGs run: they start unpaused (the compose stack keeps
    # Airflow's default, paused, for a deployment).
    env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
    if replaying:
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(replay_dags)
    if args.celery_workers:
        env |= airflow_env.celery(env, localredis.broker_url(args.redis_port))
    if args.command:
        # The same metadata database, connections and secrets as the running local Airflow,
        # without printing any of them.
        path = os.pathsep.join([str(airflow_env.VENV_BIN), os.environ.get("PATH", "")])
        sys.exit(subprocess.run(args.command, env={**os.environ, **env, "PATH": path}).returncode)
    base = f"http://127.0.0.1:{args.api_port}"
    log_dir = Path(env["AIRFLOW_HOME"]) / "components"
    log_dir.mkdir(parents=True, exist_ok=True)
    _stop_on_signals()
    try:
        simulator = (
            nullcontext()
            if kis_conn
            else running_simulator(args.simulator_port, log_path=log_dir / "simulator.log")
        )
        redis = (
            localredis.running_redis(args.redis_port, log_dir / "redis.log") if args.celery_workers else nullcontext()
        )
        print("Starting the simulator, PostgreSQL and Airflow (about 30 s)...", flush=True)
        with simulator, redis, running_airflow(env, log_dir=log_dir, celery_workers=args.celery_workers):
            applied = migrate_market_db(env, today=replaying.day if replaying else None)
            endpoint = (
                "AIRFLOW_CONN_KIS_DEFAULT"
                if kis_conn
                else f"the simulator on 127.0.0.1:{args.simulator_port}"
            )
            print(
                f"\nAirflow UI:    {base}   login: admin / {airflow_env.admin_password()}\n"
                f"Dashboard:     {base}/kis/dashboard   (also 'Minute bars' in the UI's side bar)\n"
                + (
                    f"Replaying:     {replaying.day} from {replaying.start:%H:%M} KST: every clock of this stack,"
                    " its database's too, reads that day and runs on in real time\n"
                    if replaying
                    else ""
                )
                + f"Status API:    {base}/kis/api/minute-status?date=YYYY-MM-DD   (Bearer token or UI login)\n"
                f"KIS endpoint:  {endpoint}\n"
                + (
                    f"Executor:      CeleryExecutor, {args.celery_workers} workers (kis-worker-1...),"
                    f" Redis on 127.0.0.1:{args.redis_port}\n"
                    if args.celery_workers
                    else ""
                )
                + f"Market schema: {'upgraded: ' + ', '.join(applied) if applied else 'current'}\n"
                f"Logs:          {log_dir}/\n"
                "Ctrl-C stops everything.\n",
                flush=True,
            )
            while True:
                signal.pause()
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
    finally:
        if replaying:
            localpg.stop()  # the replay's own cluster; the checkout's stays up, as always


if __name__ == "__main__":
    main()
