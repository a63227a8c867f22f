"""The Debian packages the local tools install on demand (PostgreSQL, libfaketime, Redis), as root.

apt-get writes its progress to stdout and its warnings to stderr ("debconf: delaying package
configuration, since apt-utils is not installed", "W: ..."): between the lines of `make airflow`
they read as errors. Both go to a log file instead; the console gets one line saying what is
installed and why, and apt-get's last lines only when it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# What a failure shows of apt-get's log, besides the log's path.
FAILURE_TAIL_LINES = 15


def install(package: str, why: str) -> bool:
    """Installs Debian's ``package`` when this process is root and has apt-get; False when it cannot
    try (the caller then says what to install). Exits with apt-get's last lines when it fails.

    :param why: what the package is for, on the console's one line.
    """
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    print(f"Installing Debian's {package} ({why}), once...", flush=True)
    log = Path(tempfile.gettempdir()) / f"kis-apt-{package}.log"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with open(log, "w") as output:
        for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", package]):
            if subprocess.run(argv, env=env, stdout=output, stderr=subprocess.STDOUT).returncode != 0:
                output.close()
                tail = log.read_text(errors="replace").splitlines()[-FAILURE_TAIL_LINES:]
                sys.exit(f"Could not install {package}: `{' '.join(argv)}` failed (whole output: {log}):\n" + "\n".join(tail))
    return True
