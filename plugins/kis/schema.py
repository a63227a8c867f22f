"""Schema migrations: numbered SQL files in ``include/sql/migrations``, applied in order by the pipeline.

A fresh database reaches the current schema without a manual step, and an existing one is upgraded
in place: :func:`migrate` applies every file whose number is not yet recorded in
``kis_schema_migrations``. Any task may call it first thing: when the schema is current it costs
one query, and concurrent callers (50 mapped tasks at once) are serialised by an advisory lock, so
each migration runs exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import psycopg

from kis.bar import KST

__all__ = ["MIGRATIONS_DIR", "Migration", "migrate", "migrations"]

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "include" / "sql" / "migrations"

# Any constant works; this one spells "KISMIGR" so it is recognisable in pg_locks.
_MIGRATION_LOCK = 0x4B49534D494752
_FILE_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    """One migration file; ``version`` is its three-digit number, the order it is applied in."""

    version: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in ``directory``, in order; a misnamed or duplicated number is an error."""
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name!r} is not named NNN_lower_case_description.sql")
        version = match.group(1)
        if version in found:
            first = found[version].path.name
            raise ValueError(f"migrations {first!r} and {path.name!r} share number {version}")
        found[version] = Migration(version, path)
    return [found[version] for version in sorted(found)]


def migrate(conn: psycopg.Connection, target: str | None = None, *, today: date | None = None) -> list[str]:
    """Applies the pending migrations up to ``target`` (a version such as ``"002"``; all when None).

    Returns the names of the migrations applied, empty when the schema was already current. All
    pending migrations are applied in one transaction (a failure leaves the schema as it was). When
    something was applied, the current and the next month's partitions are ensured too (``today``
    is the KST date, now by default).

    :param conn: a psycopg 3 connection, idle (the migrations commit on it) or autocommit.
    """
    wanted = [m for m in migrations() if target is None or m.version <= target]
    if target is not None and not any(m.version == target for m in wanted):
        raise ValueError(f"no migration numbered {target!r} in {MIGRATIONS_DIR}")
    if {m.version for m in wanted} <= _applied_versions(conn):
        return []

    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS kis_schema_migrations (
                version    text PRIMARY KEY,
                name       text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        # Re-read under the lock: a concurrent caller may have applied them while we waited.
        done = {row[0] for row in conn.execute("SELECT version FROM kis_schema_migrations")}
        for migration in wanted:
            if migration.version in done:
                continue
            conn.execute(migration.path.read_text())
            conn.execute(
                "INSERT INTO kis_schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration.name)
        if applied:
            month = today or datetime.now(KST).date()
            conn.execute(
                "SELECT ensure_minute_partitions(%(month)s, (%(month)s::date + interval '1 month')::date)",
                {"month": month},
            )
    return applied


def _applied_versions(conn: psycopg.Connection) -> set[str]:
    """The recorded versions in one query; empty on a database never migrated."""
    try:
        with conn.transaction():
            return {row[0] for row in conn.execute("SELECT version FROM kis_schema_migrations")}
    except psycopg.errors.UndefinedTable:
        return set()
