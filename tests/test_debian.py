"""What a package installed on demand (libfaketime for a replay, PostgreSQL, Redis) shows on the
console: one line, and apt-get's own output only when it fails. apt-get is a stand-in script here
that talks as the real one does on both streams: no package is installed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devtools import debian

APT_GET = """#!/bin/sh
echo "Reading package lists..."
echo "debconf: delaying package configuration, since apt-utils is not installed" >&2
echo "W: an apt warning" >&2
[ "$1" = install ] && [ -n "$FAIL_INSTALL" ] && { echo "E: Unable to locate package $4" >&2; exit 100; }
exit 0
"""


@pytest.fixture
def apt_get(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "apt-get"
    script.write_text(APT_GET)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))


def test_an_install_shows_one_line_and_keeps_apts_output_in_a_log(apt_get, capfd, tmp_path: Path) -> None:
    assert debian.install("libfaketime", "the replay's clock") is True
    out, err = capfd.readouterr()
    assert (out, err) == ("Installing Debian's libfaketime (the replay's clock), once...\n", "")
    assert "debconf: delaying package configuration" in (tmp_path / "kis-apt-libfaketime.log").read_text()


def test_a_failed_install_exits_with_apts_last_lines(apt_get, capfd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIL_INSTALL", "1")
    with pytest.raises(SystemExit) as exited:
        debian.install("libfaketime", "the replay's clock")
    assert "`apt-get install -y -q libfaketime` failed" in str(exited.value.code)
    assert str(exited.value.code).endswith("E: Unable to locate package libfaketime")


def test_without_root_nothing_is_tried(apt_get, capfd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert debian.install("libfaketime", "the replay's clock") is False
    assert capfd.readouterr() == ("", "")
