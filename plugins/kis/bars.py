"""The minute bar: the one shape in which market data travels between the hook, the DAGs and SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

KST = ZoneInfo("Asia/Seoul")


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

    def as_record(self) -> dict[str, Any]:
        """The row as stored: ``datetime`` is KST wall-clock without a zone (see the README)."""
        return {
            "stock_code": self.stock_code,
            "datetime": self.minute.astimezone(KST).strftime("%Y-%m-%dT%H:%M:%S"),
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
