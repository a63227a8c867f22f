"""The simulated stock master files: ``kospi_code.mst.zip``, ``kosdaq_code.mst.zip``, ``konex_code.mst.zip``.

Each is written as KIS writes its own (docs/stock-masters.md): one record a line, cp949, the short
code left-aligned in 9 bytes, the ISIN in 12, the name space-padded to 40 bytes, then the ASCII
tail of the market's layout (``kis.masters.LAYOUTS``) with every field at its width, values shaped
like the real lines' (zero-padded numbers, Y/N flags, blanks where the real files have blanks),
LF line ends with a final one, zipped as a single member named after the file.

The fields the universe reads come from :class:`simulator.listings.Listings` (the group, the
listing date, halts, the liquidation before a delisting, administrative issues, SPACs, preferred
shares); the base price is the code's start price in the simulated market (the previous close
would need the previous day's tape of every code). The other fields (sector codes, share counts,
financials) are invented per code, and the previous day's volume per code and day, so that no two
days' files are alike.
"""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Callable
from datetime import date

from kis.masters import LAYOUTS, StockMarket
from simulator.listings import Listing, Listings
from simulator.market import stable_seed

__all__ = ["DAMAGES", "master_file", "master_zip"]

#: How the fault ``damaged_masters`` spoils a file: the download cut short, or its last record cut.
DAMAGES = ("truncated_zip", "truncated_record")
WRITTEN_AT = (5, 0, 0)  # the zip member's time of day: KIS's is not documented (invented)
_SECTORS = {
    StockMarket.KOSPI: ("0027", "0013", "0008", "0016", "0019", "0021", "0024", "0026"),
    StockMarket.KOSDAQ: ("1009", "1012", "1014", "1026", "1027", "1028", "1151", "1152"),
}


def master_zip(listings: Listings, market: StockMarket, day: date, price: Callable[[str], int],
               damage: str | None = None) -> bytes:  # fmt: skip
    """The zip KIS's download server would serve for ``market`` on ``day``; ``damage`` one of ``DAMAGES``."""
    content = master_file(listings, market, day, price)
    if damage == "truncated_record":
        content = content[:-11]  # the last record loses its newline and ten bytes
    member = zipfile.ZipInfo(market.file_name, date_time=(day.year, day.month, day.day, *WRITTEN_AT))
    member.compress_type = zipfile.ZIP_DEFLATED
    member.external_attr = 0o644 << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(member, content)
    data = buffer.getvalue()
    return data[: len(data) // 2] if damage == "truncated_zip" else data


def master_file(listings: Listings, market: StockMarket, day: date, price: Callable[[str], int]) -> bytes:
    """The ``.mst`` of ``market`` on ``day``: the codes listed that day, in code order."""
    lines = [_record(listings, listing, day, price(listing.code)) for listing in listings.on(day) if listing.market is market]
    return b"".join(line + b"\n" for line in lines)


def _record(listings: Listings, listing: Listing, day: date, price: int) -> bytes:
    layout = LAYOUTS[listing.market]
    values = _tail_values(listings, listing, day, price)
    tail = "".join(values.get(name, "N" if width == 1 else "0" * width) for name, width in layout.fields)
    name = listing.name.encode("cp949").ljust(40)
    line = listing.code.ljust(9).encode("ascii") + listing.standard_code.encode("ascii") + name + tail.encode("ascii")
    assert len(line) == layout.record_length, (listing.code, len(line))
    return line


def _tail_values(listings: Listings, listing: Listing, day: date, price: int) -> dict[str, str]:
    """Every field whose value is not a plain N (flags) or zeros (numbers), by its layout name."""
    rng = random.Random(stable_seed(listings.seed, listing.code, "master"))
    daily = random.Random(stable_seed(listings.seed, listing.code, day.isoformat(), "master"))
    face = rng.choice((100, 500, 500, 1000, 5000))
    shares = int(rng.lognormvariate(9.5, 1.3)) + 100  # thousands
    cap = price * shares * 1000 // 100_000_000  # 억 won
    stock = listing.group in ("ST", "KN")
    size = "1" if cap > 20_000 else "2" if cap > 2_000 else "3"  # 시가총액 규모: large, medium, small
    return {
        "scrt_grp_cls_code": listing.group,
        "avls_scal_cls_code": size if stock else "0",
        "bstp_larg_div_code": rng.choice(_SECTORS.get(listing.market, ("0000",))) if stock else "0000",
        "bstp_medm_div_code": rng.choice(("0013", "0008", "0015", "1028", "0000")) if stock else "0000",
        "mnin_cls_code_yn": " ",
        "vntr_issu_yn": " ",
        "kospi200_apnt_cls_code": "0",
        "etp_prod_cls_code": {"etf": "2", "etn": "3"}.get(listing.kind, " "),
        "etpr_undt_objt_co_yn": "Y" if listing.kind == "spac" else "N",
        "short_over_cls_code": "0",
        "stck_sdpr": f"{price:09d}",
        "frml_mrkt_deal_qty_unit": "00001",
        "ovtm_mrkt_deal_qty_unit": "00001",
        "trht_yn": "Y" if listings.halted(listing.code, day) else "N",
        "sltr_yn": "Y" if listings.liquidation(listing, day) else "N",
        "mang_issu_yn": "Y" if listings.administrative(listing, day) else "N",
        "mrkt_alrm_cls_code": "00",
        "flng_cls_code": "00",
        "fcam_mod_cls_code": "00",
        "icic_cls_code": "00",
        "marg_rate": rng.choice(("020", "040", "100")),
        "crdt_able": rng.choice("YN"),
        "crdt_days": "090",
        "prdy_vol": f"{int(daily.lognormvariate(11, 1.5)):012d}",
        "stck_fcam": f"{face:012d}",
        "stck_lstn_date": listing.listed_on.strftime("%Y%m%d"),
        "lstn_stcn": f"{shares:015d}",
        "cpfn": f"{shares * 1000 * face:021d}",
        "stac_month": "12",
        "po_prc": " " * 7,
        "prst_cls_code": "1" if listing.kind == "preferred" else "0",
        "ssts_hot_yn": " ",
        "kospi_issu_yn": "Y" if stock else "N",
        "sale_account": f"{rng.randrange(0, 10**7):09d}" if stock else "0" * 9,
        "bsop_prfi": _signed(rng, 9) if stock else "0" * 9,
        "op_prfi": _signed(rng, 9) if stock else "0" * 9,
        "thtr_ntin": _signed(rng, 5) if stock else "0" * 5,
        # KOSPI's real lines write ROE with two decimals, KOSDAQ's as a whole number.
        "roe": (f"{rng.uniform(-20, 40):09.2f}" if listing.market is StockMarket.KOSPI else _signed(rng, 9, 40))
        if stock else "000000.00",
        "base_date": "20260630" if stock else " " * 8,
        "prdy_avls_scal": f"{cap:09d}",
        "grp_code": "   ",
    }


def _signed(rng: random.Random, width: int, largest: int | None = None) -> str:
    """A whole number as the real files write one: zero-padded, a minus sign inside the width."""
    largest = largest or 10 ** (width - 1)
    value = rng.randrange(-(largest // 10), largest)
    return f"-{-value:0{width - 1}d}" if value < 0 else f"{value:0{width}d}"
