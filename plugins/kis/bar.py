"""The minute bar: the one shape in which market data travels between the hook, the DAGs and SQL."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

KST = ZoneInfo("Asia/Seoul")

# A bar in transit (the fetch tasks' XComs, the upsert's parameter) is a positional row under its
# code: a key per value made the rows three times larger, and a minute run pushes 30 of them per code.
BAR_ROW = ("minute", "open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed 1-minute OHLCV bar, labelled by the start of its minute (KST, as KIS labels it).

    Prices are whole won (``int``): KRW has no fractional unit, and floats would round them.
    """

    stock_code: str
    minute: datetime  # time-zone aware, Asia/Seoul, seconds zero
    open: int
    high: int
    low: int
    close: int
    volume: int

    @property
    def _wall_clock(self) -> str:
        return self.minute.astimezone(KST).strftime("%Y-%m-%dT%H:%M:%S")

    def as_record(self) -> dict[str, Any]:
        """The row as stored: ``datetime`` is KST wall-clock without a zone (see the README)."""
        return {
            "stock_code": self.stock_code,
            "datetime": self._wall_clock,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Bar:
        return cls(
            stock_code=record["stock_code"],
            minute=datetime.fromisoformat(record["datetime"]).replace(tzinfo=KST),
            open=int(record["open"]),
            high=int(record["high"]),
            low=int(record["low"]),
            close=int(record["close"]),
            volume=int(record["volume"]),
        )

    def as_row(self) -> list[Any]:
        """The row in transit (``BAR_ROW``), the minute as in :meth:`as_record`."""
        return [self._wall_clock, self.open, self.high, self.low, self.close, self.volume]


def bars_by_code(bars: Iterable[Bar]) -> dict[str, list[list[Any]]]:
    """The bars in transit: each code once, with its rows (``Bar.as_row``) in the order given."""
    rows: dict[str, list[list[Any]]] = {}
    for bar in bars:
        rows.setdefault(bar.stock_code, []).append(bar.as_row())
    return rows
