"""The watch-list: which codes the DAGs collect (:mod:`kis.batches` splits them into mapped fetch tasks)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from kis.parsing import CODE_PATTERN

DEFAULT_WATCHLIST = Path(__file__).parents[2] / "include" / "watchlist.csv"


@dataclass(frozen=True)
class WatchList:
    """The valid codes, in order and without repeats, and the entries that were rejected."""

    codes: tuple[str, ...]
    invalid: tuple[str, ...]


def parse_watchlist(entries: list[str]) -> WatchList:
    """Validates and de-duplicates entries; lower case is accepted and upper-cased."""
    codes: dict[str, None] = {}
    invalid: list[str] = []
    for entry in entries:
        code = entry.strip().upper()
        if CODE_PATTERN.fullmatch(code):
            codes.setdefault(code)
        elif entry.strip():
            invalid.append(entry.strip())
    return WatchList(codes=tuple(codes), invalid=tuple(invalid))


def load_watchlist(override: str | None = None, path: Path = DEFAULT_WATCHLIST) -> WatchList:
    """The watch-list from ``override`` when given, else from the CSV file (``code,name``).

    ``override`` is the value of the Airflow Variable ``kis_watchlist`` (``AIRFLOW_VAR_KIS_WATCHLIST``):
    a JSON list of codes or a comma/space separated string.
    """
    if override and override.strip():
        text = override.strip()
        entries = [str(e) for e in json.loads(text)] if text.startswith("[") else re.split(r"[\s,]+", text)
        return parse_watchlist(entries)
    with path.open(encoding="utf-8", newline="") as handle:
        return parse_watchlist([row["code"] for row in csv.DictReader(handle)])
