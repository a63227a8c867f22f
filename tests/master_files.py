"""Master files for tests: lines of KIS's layouts (kis.masters.LAYOUTS) with chosen fields, zipped
as KIS's download server serves them."""

from __future__ import annotations

import io
import zipfile

from kis.masters import LAYOUTS, StockMarket

# Real lines of the live files, copied by third parties (docs/stock-masters.md, "Sources"): six from
# gong-yeongbin/my-trading internal/kis/master_test.go (2026-09), one from a Kotlin test (2024-09-07).
SAMSUNG = (
    "005930   KR7005930003삼성전자                                ST1002700130000 NN5YYY YYNNNNNNN0NNNNNNNY000269"
    "0000000100001NNN00NNN000000020Y0900000225170760000000001001975061100000000584627800000000077804668500012"
    "       0 NYY00305372900146725200153268211884000031.3920260630015726489511NNN"
)
SAMSUNG_2024 = (
    "005930   KR7005930003삼성전자                                ST1000000130000YNN5YYY YYNNNNNNN0NNNNNNNY000064"
    "7000000100001NNN00NNN000000020Y0900000375660160000000001001975061100000000596978200000000077804668500012"
    "       0 NYY00145983900017049900019302116596000008.9520240630003862449511NNN"
)
KR_MOTORS = (
    "000040   KR7000040006KR모터스                                ST3002700150000 NN0NNN NNNNNNNNN0NNNNNNNN000001"
    "1510000100001NNY00NNN000000100N0900000000299950000000025001976052500000000001967500000000004918759000012"
    "       0 NNY000000289-0000000200000028300289000054.8320260630000000226   NNN"
)
DL_PREFERRED = (
    "000215   KR7000211003DL우                                    ST0002700080000 NN0NNN NNNNNNNNN0NNNNNNNN000025"
    "4000000100001NNN00NNN000000100N0900000000020040000000050001989082100000000000168600000000001043057500012"
    "       1 NNN00000000000000000000000000000000000000.00        000000428   NNN"
)
ECOPRO = (
    "247540   KR7247540008에코프로비엠                            ST1100910280000 NY Y    N  0  N    Y00010390000"
    "00100001NNN00NNN000000040Y0900000003787260000000005002019030500000000009783000000000004895545400012       0"
    " NY0000118210000003900000001420011700000000320260630000101645LD2NNN"
)
SPAC = (
    "0004Y0   KR70004Y0000디비금융제14호스팩                      ST3101400000000 NN N    Y  0  N    N00000198800"
    "00100001NNN00NNN000000100N0900000000042230000000001002025072200000000000531500000000000053150000012       0"
    " NN0000000000000000000000000000000000000000020241231000000105   NNN"
)
SILLA_ADMINISTRATIVE = (
    "001000   KR7001000009신라섬유                                ST3000000000000NNN NNNNNNNN0NNNNNNNN00000177200"
    "00100001NNY00NNN000000100N0900000002136620000000005001994062800000000000485500000000000242775400012       0"
    " NN000000037000000004-00000003-0003-0000000220241231000000086   NNN"
)


def cp949(*lines: str, end: bytes = b"\n") -> bytes:
    return b"".join(line.encode("cp949") + end for line in lines)


def record(market: StockMarket, code: str = "123450", name: str = "시험종목", standard: str = "KR7123450007",
           **fields: str) -> str:  # fmt: skip
    """A line of ``market``'s layout: N flags and zero numbers, and ``fields`` by their header names."""
    values = {"scrt_grp_cls_code": "ST", "stck_lstn_date": "20200102", "prdy_avls_scal": "000001234"} | fields
    tail = "".join(values.get(name, "N" if width == 1 else "0" * width) for name, width in LAYOUTS[market].fields)
    padded = name.encode("cp949").ljust(40).decode("cp949")
    return f"{code:<9}{standard}{padded}{tail}"


def zipped(member: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo(member, date_time=(2026, 11, 25, 5, 0, 0)), content)
    return buffer.getvalue()
