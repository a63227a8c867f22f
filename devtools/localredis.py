"""A private Redis for a local CeleryExecutor: the broker of `make airflow --celery-workers N`, the
distributed test and the benchmark.

It uses Debian's ``redis-server`` (installed on demand when we run as root, like
``devtools.localpg`` does for PostgreSQL), listens on 127.0.0.1 only, requires a password
generated once per checkout and kept (0600) in the state directory, and keeps nothing on disk. It
runs in its own process group as a child of the caller, who stops it by its PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools import airflow_env, debian, localpg


def _server() -> str:
    server = shutil.which("redis-server")
    if not server and debian.install("redis-server", "the Celery broker"):
        server = shutil.which("redis-server")
    if not server:
        sys.exit("redis-server not found: install Debian's package (sudo apt-get install redis-server).")
    return server


def password() -> str:
    return airflow_env.kept_secret("redis.password", lambda: os.urandom(18).hex())


def broker_url(port: int) -> str:
    return f"redis://:{password()}@127.0.0.1:{port}/0"


@contextmanager
def running_redis(port: int, log_path: Path | None = None) -> Iterator[subprocess.Popen]:
    """``redis-server`` on 127.0.0.1:``port`` until the block ends; the password via stdin, never argv."""
    work = localpg.state_dir() / f"redis-{port}"
    work.mkdir(parents=True, exist_ok=True)
    config = "\n".join([
        "bind 127.0.0.1",
        f"port {port}",
        "protected-mode yes",
        f"requirepass {password()}",
        'save ""',
        "appendonly no",
        f"dir {work}",
        "daemonize no",
        "",
    ])
    log = open(log_path or work / "redis.log", "ab")
    # "-" reads the configuration from stdin: the password appears in no command line.
    process = subprocess.Popen([_server(), "-"], stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True, cwd=work)
    process.stdin.write(config.encode())
    process.stdin.close()
    try:
        _wait_until_accepting(port, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_until_accepting(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}: see its log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(f"AUTH {password()}\r\nPING\r\n".encode())
                if b"PONG" in sock.recv(100):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis-server did not answer on 127.0.0.1:{port} within {timeout:.0f} s")
        time.sleep(0.2)
