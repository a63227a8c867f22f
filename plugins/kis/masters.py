"""KIS's stock masters: ``kospi_code.mst``, ``kosdaq_code.mst``, ``konex_code.mst`` -> typed records.

KIS publishes one fixed-width file per market, zipped (``kospi_code.mst.zip`` ...), every record a
line of cp949 bytes: a 61-byte head (short code 9, standard code 12, Korean name 40, space padded)
and an ASCII tail of 227 (KOSPI), 221 (KOSDAQ) or 184 (KONEX) bytes whose fields are declared in
:data:`LAYOUTS`, in the order and widths of KIS's layout headers. docs/stock-masters.md has the
sources, what is unconfirmed, and why the parser is as strict as it is.

The parser checks every record's length and its fields' shapes, so a truncated, cut or shifted
file fails with :class:`MasterFileError` naming the file and the line, instead of becoming a
universe with wrong codes; it tolerates what is only formatting (CR LF line ends, a missing final
newline).
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from functools import cached_property

__all__ = [
    "HEAD_LENGTH", "LAYOUTS", "Layout", "MasterFile", "MasterFileError", "MasterRecord", "StockMarket", "parse_master",
    "read_master_zip",
]  # fmt: skip


class StockMarket(StrEnum):
    """A KRX market with a master file of its own, as stored in ``stock_universe.market``."""

    KOSPI = "kospi"
    KOSDAQ = "kosdaq"
    KONEX = "konex"

    @property
    def label(self) -> str:
        return self.value.upper()

    @property
    def file_name(self) -> str:
        """The master file inside the zip: ``kospi_code.mst``."""
        return f"{self.value}_code.mst"

    @property
    def path(self) -> str:
        """Where KIS's download server (and the simulator) serves it: ``/common/master/kospi_code.mst.zip``."""
        return f"/common/master/{self.file_name}.zip"


# The head of every record: 단축코드 SZ_SHRNCODE=9, 표준코드 SZ_STNDCODE=12, 한글종목명 SZ_KORNAME=40 bytes.
SHORT_CODE, STANDARD_CODE, NAME = slice(0, 9), slice(9, 21), slice(21, 61)
HEAD_LENGTH = 61

# The tails, field by field: (the layout header's C name, width in bytes). The blocks every market
# shares are declared once; the KOSPI and KOSDAQ headers differ in their index and sector flags.
_INDEX_CODES = (("scrt_grp_cls_code", 2), ("avls_scal_cls_code", 1), ("bstp_larg_div_code", 4),
                ("bstp_medm_div_code", 4), ("bstp_smal_div_code", 4))  # fmt: skip
_KOSPI_FLAGS = tuple((name, 1) for name in (
    "mnin_cls_code_yn", "low_current_yn", "sprn_strr_nmix_issu_yn", "kospi200_apnt_cls_code", "kospi100_issu_yn",
    "kospi50_issu_yn", "krx_issu_yn", "etp_prod_cls_code", "elw_pblc_yn", "krx100_issu_yn", "krx_car_yn",
    "krx_smcn_yn", "krx_bio_yn", "krx_bank_yn", "etpr_undt_objt_co_yn", "krx_enrg_chms_yn", "krx_stel_yn",
    "short_over_cls_code", "krx_medi_cmnc_yn", "krx_cnst_yn", "krx_fnnc_svc_yn", "krx_scrt_yn", "krx_ship_yn",
    "krx_insu_yn", "krx_trnp_yn", "sri_nmix_yn",
))  # fmt: skip
_KOSDAQ_FLAGS = tuple((name, 1) for name in (
    "vntr_issu_yn", "low_current_yn", "krx_issu_yn", "etp_prod_cls_code", "krx100_issu_yn", "krx_car_yn",
    "krx_smcn_yn", "krx_bio_yn", "krx_bank_yn", "etpr_undt_objt_co_yn", "krx_enrg_chms_yn", "krx_stel_yn",
    "short_over_cls_code", "krx_medi_cmnc_yn", "krx_cnst_yn", "invt_alrm_yn", "krx_scrt_yn", "krx_ship_yn",
    "krx_insu_yn", "krx_trnp_yn", "ksq150_nmix_yn",
))  # fmt: skip
_TRADING = (
    ("stck_sdpr", 9), ("frml_mrkt_deal_qty_unit", 5), ("ovtm_mrkt_deal_qty_unit", 5), ("trht_yn", 1),
    ("sltr_yn", 1), ("mang_issu_yn", 1), ("mrkt_alrm_cls_code", 2), ("mrkt_alrm_risk_adnt_yn", 1),
    ("insn_pbnt_yn", 1), ("byps_lstn_yn", 1), ("flng_cls_code", 2), ("fcam_mod_cls_code", 2), ("icic_cls_code", 2),
    ("marg_rate", 3), ("crdt_able", 1), ("crdt_days", 3), ("prdy_vol", 12), ("stck_fcam", 12),
    ("stck_lstn_date", 8), ("lstn_stcn", 15), ("cpfn", 21), ("stac_month", 2), ("po_prc", 7), ("prst_cls_code", 1),
    ("ssts_hot_yn", 1), ("stange_runup_yn", 1), ("krx300_issu_yn", 1),
)  # fmt: skip
_FINANCIALS = (("sale_account", 9), ("bsop_prfi", 9), ("op_prfi", 9), ("thtr_ntin", 5), ("roe", 9),
               ("base_date", 8), ("prdy_avls_scal", 9))  # fmt: skip
_CREDIT = (("co_crdt_limt_over_yn", 1), ("secu_lend_able_yn", 1), ("stln_able_yn", 1))


@dataclass(frozen=True)
class Layout:
    """One market's record: the head, then ``fields`` (name, width) in order."""

    market: StockMarket
    fields: tuple[tuple[str, int], ...]

    @cached_property
    def tail_length(self) -> int:
        return sum(width for _, width in self.fields)

    @property
    def record_length(self) -> int:
        return HEAD_LENGTH + self.tail_length

    @cached_property
    def slices(self) -> dict[str, slice]:
        """Each field's place in the tail."""
        places, start = {}, 0
        for name, width in self.fields:
            places[name] = slice(start, start + width)
            start += width
        return places


LAYOUTS: dict[StockMarket, Layout] = {
    StockMarket.KOSPI: Layout(
        StockMarket.KOSPI, _INDEX_CODES + _KOSPI_FLAGS + _TRADING + (("kospi_issu_yn", 1),) + _FINANCIALS
        + (("grp_code", 3),) + _CREDIT,
    ),
    StockMarket.KOSDAQ: Layout(
        StockMarket.KOSDAQ, _INDEX_CODES + _KOSDAQ_FLAGS + _TRADING + _FINANCIALS + (("grp_code", 3),) + _CREDIT
    ),
    StockMarket.KONEX: Layout(StockMarket.KONEX, (("scrt_grp_cls_code", 2),) + _TRADING + _FINANCIALS + _CREDIT),
}
# KIS's layout headers (stocks_info/*.h) and its samples' field_specs add up to these; a typo above must not pass.
assert {market: layout.tail_length for market, layout in LAYOUTS.items()} == {
    StockMarket.KOSPI: 227, StockMarket.KOSDAQ: 221, StockMarket.KONEX: 184
}

_SHORT_CODE = re.compile(r"[0-9A-Z]{1,9}")  # 6 characters, 7 for an ETN (Q500001); any other is kept as it is
_STANDARD_CODE = re.compile(r"[0-9A-Z]{12}")  # an ISIN
_GROUP = re.compile(r"[A-Z]{2}")  # ST, EF, EN, ... (the headers' list misses EN: any pair is accepted)
_NUMBER = re.compile(r" *-?[0-9]+")
_FLAGS = {"Y": True, "N": False, " ": False}  # the real files hold a space for many a "no"


@dataclass(frozen=True, slots=True)
class MasterRecord:
    """What the universe keeps of one line of a master file."""

    stock_code: str  # 단축코드: 005930, 0126Z0, Q500001 (an ETN)
    standard_code: str  # 표준코드, the ISIN (KR7005930003)
    name: str  # 한글종목명
    market: StockMarket
    security_group: str  # 증권그룹구분코드: ST stock, EF ETF, EN ETN, ...
    listed_on: date | None  # 주식 상장 일자; None when the file leaves it blank
    halted: bool  # 거래정지 여부
    liquidation: bool  # 정리매매 여부: the last days of trading before a delisting
    administrative: bool  # 관리 종목 여부
    spac: bool  # 기업인수목적회사여부 (no such field on KONEX: False)
    preferred: bool  # 우선주 구분 코드 other than 0 (common)
    market_cap: int | None  # 전일기준 시가총액, in 100 million won (억)

    def as_row(self) -> dict[str, object]:
        """The record as a JSON object of the universe statements (include/sql/universe_*.sql)."""
        return {
            "stock_code": self.stock_code,
            "standard_code": self.standard_code,
            "name": self.name,
            "market": self.market.value,
            "security_group": self.security_group,
            "listed_on": self.listed_on.isoformat() if self.listed_on else None,
            "halted": self.halted,
            "liquidation": self.liquidation,
            "administrative": self.administrative,
            "spac": self.spac,
            "preferred": self.preferred,
            "market_cap": self.market_cap,
        }


class MasterFileError(ValueError):
    """A master file that is not what its layout says: damaged, truncated or of another layout.

    :param source: the file (or its download address).
    :param line: the 1-based line, when one line is at fault.
    """

    def __init__(self, source: str, problem: str, line: int | None = None) -> None:
        self.source, self.problem, self.line = source, problem, line
        super().__init__(f"{source}{'' if line is None else f' line {line}'}: {problem}")


@dataclass(frozen=True)
class MasterFile:
    """A parsed master file, and what tells one day's file from another's."""

    market: StockMarket
    records: list[MasterRecord]
    written: datetime | None  # the zip member's timestamp, as written (its time zone is not documented)
    sha256: str  # of the .mst


def read_master_zip(market: StockMarket, data: bytes, *, source: str | None = None) -> MasterFile:
    """A downloaded ``<market>_code.mst.zip``: its ``<market>_code.mst`` member (or its only
    ``.mst`` member) parsed by :func:`parse_master`. A damaged archive, a CRC mismatch or a missing
    member raise :class:`MasterFileError`."""
    source = source or f"{market.file_name}.zip"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            member = _member(archive, market, source)
            content = archive.read(member)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise MasterFileError(source, f"not a readable zip archive ({err}); {len(data)} bytes received") from None
    records = parse_master(market, content, source=f"{source}:{member.filename}")
    return MasterFile(market, records, _written(member), hashlib.sha256(content).hexdigest())


def _member(archive: zipfile.ZipFile, market: StockMarket, source: str) -> zipfile.ZipInfo:
    members = archive.infolist()
    exact = [m for m in members if m.filename == market.file_name]
    masters = exact or [m for m in members if m.filename.endswith(".mst")]
    if len(masters) == 1:
        return masters[0]
    raise MasterFileError(source, f"no {market.file_name} in the archive (it holds {archive.namelist()})")


def _written(member: zipfile.ZipInfo) -> datetime | None:
    try:
        return datetime(*member.date_time)
    except ValueError:  # a zero date: the writer gave none
        return None


def parse_master(market: StockMarket, data: bytes, *, source: str | None = None) -> list[MasterRecord]:
    """Every record of a ``<market>_code.mst``, in file order.

    Lines end with LF (a CR before it is dropped); the last line may lack its LF. Raises
    :class:`MasterFileError` on an empty file, a line of the wrong length (a truncated or cut file,
    or another layout), a field that does not have its shape, or a code listed twice.
    """
    source = source or market.file_name
    layout = LAYOUTS[market]
    records: list[MasterRecord] = []
    seen: dict[str, int] = {}
    for number, line in _lines(data):
        if len(line) != layout.record_length:
            raise MasterFileError(
                source,
                f"{len(line)} bytes; a {market.label} record has {layout.record_length} ({HEAD_LENGTH} + "
                f"{layout.tail_length}): the file is truncated, cut, or not of the layout of docs/stock-masters.md",
                number,
            )
        try:
            record = _record(layout, line)
        except ValueError as err:
            raise MasterFileError(source, str(err), number) from None
        if record.stock_code in seen:
            raise MasterFileError(source, f"{record.stock_code} again (first on line {seen[record.stock_code]})", number)
        seen[record.stock_code] = number
        records.append(record)
    if not records:
        raise MasterFileError(source, f"no record in {len(data)} bytes")
    return records


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    lines = data.split(b"\n")
    if lines[-1] == b"":  # the final newline
        lines.pop()
    for number, line in enumerate(lines, start=1):
        yield number, line.removesuffix(b"\r")


def _record(layout: Layout, line: bytes) -> MasterRecord:
    code = _ascii(line[SHORT_CODE], "short code").rstrip(" ")
    if not _SHORT_CODE.fullmatch(code):
        raise ValueError(f"short code {code!r} is not 1-9 characters of 0-9 or A-Z, left-aligned")
    standard = _ascii(line[STANDARD_CODE], "standard code").rstrip(" ")
    if standard and not _STANDARD_CODE.fullmatch(standard):
        raise ValueError(f"{code}: standard code {standard!r} is not 12 characters of 0-9 or A-Z")
    tail = _ascii(line[HEAD_LENGTH:], "tail (bytes 62 on)")
    fields = {name: tail[place] for name, place in layout.slices.items()}
    group = fields["scrt_grp_cls_code"]
    if not _GROUP.fullmatch(group):
        raise ValueError(f"{code}: security group {group!r} is not two letters")
    return MasterRecord(
        stock_code=code,
        standard_code=standard,
        name=_name(line[NAME], code),
        market=layout.market,
        security_group=group,
        listed_on=_date(fields["stck_lstn_date"], code, "listing date"),
        halted=_flag(fields, "trht_yn", code),
        liquidation=_flag(fields, "sltr_yn", code),
        administrative=_flag(fields, "mang_issu_yn", code),
        spac="etpr_undt_objt_co_yn" in fields and _flag(fields, "etpr_undt_objt_co_yn", code),
        preferred=fields["prst_cls_code"] not in ("0", " "),
        market_cap=_number(fields["prdy_avls_scal"], code, "market cap"),
    )


def _ascii(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as err:
        raise ValueError(f"non-ASCII byte {raw[err.start]:#04x} in the {what}") from None


def _name(raw: bytes, code: str) -> str:
    """The 40-byte name: cp949, space padded. A double-byte character cut by the field's end (a
    name longer than 40 bytes) is dropped; any other undecodable byte is damage."""
    try:
        return raw.decode("cp949").strip()
    except UnicodeDecodeError as err:
        if err.start == len(raw.rstrip(b" ")) - 1:
            return raw[: err.start].decode("cp949").strip()
        raise ValueError(f"{code}: the name is not cp949 (byte {raw[err.start]:#04x} at {err.start + 22})") from None


def _flag(fields: dict[str, str], name: str, code: str) -> bool:
    try:
        return _FLAGS[fields[name]]
    except KeyError:
        raise ValueError(f"{code}: {name} is {fields[name]!r}, not Y, N or blank") from None


def _date(raw: str, code: str, what: str) -> date | None:
    if raw.strip(" 0") == "":
        return None
    try:
        if not raw.isdigit():
            raise ValueError(raw)
        return date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    except ValueError:
        raise ValueError(f"{code}: {what} {raw!r} is not a date (YYYYMMDD)") from None


def _number(raw: str, code: str, what: str) -> int | None:
    if not raw.strip():
        return None
    if not _NUMBER.fullmatch(raw):
        raise ValueError(f"{code}: {what} {raw!r} is not a whole number")
    return int(raw)

