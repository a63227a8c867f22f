"""A private PostgreSQL cluster for the demo, the tests and the benchmarks.

It uses the server binaries of Debian's ``postgresql`` package (installed on demand when we run
as root), keeps its data under the project's state directory, listens on 127.0.0.1 only and
requires a password, which is generated once and kept in a 0600 file beside the data.

As root the server runs as the ``postgres`` system user (PostgreSQL refuses to run as root), so
the state directory is then under /var/tmp, which that user can reach whatever the checkout's
path is.

    python -m devtools.localpg start | stop | status | dsn [DBNAME] | createdb NAME
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devtools import debian

REPO = Path(__file__).resolve().parent.parent
SUPERUSER = "kis"
DEFAULT_PORT = 54329


@dataclass(frozen=True)
class Cluster:
    """Where the cluster lives and how to reach it."""

    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def password(self) -> str:
        """The superuser's password, generated on first use: ``initdb`` takes it from this file, so
        a DSN can be formed (a test suite's configuration read) before the cluster exists."""
        if not self.password_file.exists():
            with _lock(self):
                if not self.password_file.exists():
                    _new_password(self)
        return self.password_file.read_text().strip()

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{self.password()}@127.0.0.1:{self.port}/{dbname}"


def _is_root() -> bool:
    return os.geteuid() == 0


def state_dir() -> Path:
    """Where this checkout keeps its local services' state (``KIS_STATE_DIR`` overrides)."""
    if os.environ.get("KIS_STATE_DIR"):
        return Path(os.environ["KIS_STATE_DIR"])
    if _is_root():
        tag = hashlib.sha1(str(REPO).encode()).hexdigest()[:10]
        return Path(f"/var/tmp/kis-minute-bars-{tag}")
    return REPO / ".local"


def cluster() -> Cluster:
    """The cluster of this checkout (``KIS_PG_PORT`` overrides the port)."""
    return Cluster(state_dir() / "pg", int(os.environ.get("KIS_PG_PORT", DEFAULT_PORT)))


def _bin_dir() -> Path:
    """The newest installed PostgreSQL server's bin directory; installs Debian's when root."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_major_version)
    if not candidates and debian.install("postgresql", "the private database cluster"):
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_major_version)
    if not candidates:
        sys.exit("PostgreSQL server not found: install Debian's package (sudo apt-get install postgresql).")
    return Path(candidates[-1]).parent


def _major_version(path: str) -> int:
    return int(Path(path).parent.parent.name)


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if _is_root() else argv


def _run(argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    # From "/": the server user may not enter the caller's directory (a root-only mktemp clone).
    return subprocess.run(_as_server_user(argv), check=check, cwd="/", **kwargs)


def _new_password(c: Cluster) -> None:
    """Written aside and renamed into place: a reader never sees the file half written."""
    c.root.mkdir(parents=True, exist_ok=True)
    new = c.password_file.with_name(c.password_file.name + ".new")
    with open(os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(secrets.token_urlsafe(24) + "\n")
    new.replace(c.password_file)


def _init(c: Cluster, bin_dir: Path) -> None:
    if not c.password_file.exists():
        _new_password(c)
    if _is_root():
        shutil.chown(c.root, "postgres", "postgres")
        shutil.chown(c.password_file, "postgres", "postgres")
    _run(
        [
            str(bin_dir / "initdb"),
            "-D", str(c.data_dir),
            "-U", SUPERUSER,
            "--auth=scram-sha-256",
            f"--pwfile={c.password_file}",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ],
        stdout=subprocess.DEVNULL,
    )
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(c.port),
        "unix_socket_directories": f"'{c.root}'",
        "timezone": "'Asia/Seoul'",
        "max_connections": "200",
        "shared_buffers": "'256MB'",
        # A disposable development cluster: durability is traded for speed.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    with open(c.data_dir / "postgresql.auto.conf", "a") as conf:
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())


@contextmanager
def _lock(c: Cluster):
    """Serialises start/stop between concurrent callers (pytest-xdist workers, make targets)."""
    lock_path = Path(str(c.root) + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def is_running(c: Cluster | None = None) -> bool:
    c = c or cluster()
    if not (c.data_dir / "PG_VERSION").exists():
        return False
    status = _run(
        [str(_bin_dir() / "pg_ctl"), "status", "-D", str(c.data_dir)],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return status.returncode == 0


def start() -> bool:
    """Starts the cluster, creating it the first time; returns False when it was already up."""
    c = cluster()
    with _lock(c):
        bin_dir = _bin_dir()
        if not (c.data_dir / "PG_VERSION").exists():
            _init(c, bin_dir)
        if is_running(c):
            return False
        _run(
            [str(bin_dir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(c.data_dir), "-l", str(c.log_file)],
            stdout=subprocess.DEVNULL,
        )
        return True


def stop() -> None:
    c = cluster()
    with _lock(c):
        if is_running(c):
            _run(
                [str(_bin_dir() / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(c.data_dir)],
                stdout=subprocess.DEVNULL,
            )


def create_database(name: str, *, drop_existing: bool = False) -> str:
    """Creates database ``name`` when missing (or afresh) and returns its DSN."""
    import psycopg

    c = cluster()
    with psycopg.connect(c.dsn(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and drop_existing:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    return c.dsn(name)


def wait_until_accepting(timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(cluster().dsn(), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main(argv: list[str]) -> None:
    command = argv[0] if argv else "status"
    if command == "start":
        started = start()
        wait_until_accepting()
        print("started" if started else "already running", cluster().root)
    elif command == "stop":
        stop()
    elif command == "status":
        print("running" if is_running() else "stopped", cluster().root)
    elif command == "dsn":
        print(cluster().dsn(argv[1] if len(argv) > 1 else "postgres"))
    elif command == "createdb":
        print(create_database(argv[1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
