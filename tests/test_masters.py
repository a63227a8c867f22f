"""KIS's stock master files -> records (kis.masters): real lines, the layouts of KIS's samples,
and files damaged in every way a download or a writer can damage them."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from itertools import pairwise

import pytest
from master_files import (
    DL_PREFERRED, ECOPRO, KR_MOTORS, SAMSUNG, SAMSUNG_2024, SILLA_ADMINISTRATIVE, SPAC, cp949, record, zipped,
)

from kis.masters import LAYOUTS, MasterFileError, StockMarket, parse_master, read_master_zip

KOSPI, KOSDAQ, KONEX = StockMarket.KOSPI, StockMarket.KOSDAQ, StockMarket.KONEX

# The official samples' tail widths (koreainvestment/open-trading-api, stocks_info/kis_kospi_code_mst.py
# and kis_kosdaq_code_mst.py field_specs, verbatim) and the KONEX sample's slices from the line's end
# (stocks_info/kis_konex_code_mst.py, row[-184:-182] ... row[-1:]).
KOSPI_FIELD_SPECS = [2, 1, 4, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9,
                     5, 5, 1, 1, 1, 2, 1, 1, 1, 2, 2, 2, 3, 1, 3, 12, 12, 8, 15, 21, 2, 7, 1, 1, 1, 1, 1, 9, 9, 9, 5,
                     9, 8, 9, 3, 1, 1, 1]  # fmt: skip
KOSDAQ_FIELD_SPECS = [2, 1, 4, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 5, 5, 1, 1, 1,
                      2, 1, 1, 1, 2, 2, 2, 3, 1, 3, 12, 12, 8, 15, 21, 2, 7, 1, 1, 1, 1, 9, 9, 9, 5, 9, 8, 9, 3, 1,
                      1, 1]  # fmt: skip
KONEX_SLICE_BOUNDS = [184, 182, 173, 168, 163, 162, 161, 160, 158, 157, 156, 155, 153, 151, 149, 146, 145, 142, 130,
                      118, 110, 95, 74, 72, 65, 64, 63, 62, 61, 52, 43, 34, 29, 20, 12, 3, 2, 1, 0]  # fmt: skip


# --- the layouts --------------------------------------------------------------------------------


def test_the_layouts_are_those_of_kis_samples() -> None:
    assert [width for _, width in LAYOUTS[KOSPI].fields] == KOSPI_FIELD_SPECS
    assert [width for _, width in LAYOUTS[KOSDAQ].fields] == KOSDAQ_FIELD_SPECS
    konex = [a - b for a, b in pairwise(KONEX_SLICE_BOUNDS)]
    assert [width for _, width in LAYOUTS[KONEX].fields] == konex
    assert {m: LAYOUTS[m].record_length for m in StockMarket} == {KOSPI: 288, KOSDAQ: 282, KONEX: 245}


# --- real lines ---------------------------------------------------------------------------------


def test_real_kospi_lines() -> None:
    samsung, motors, preferred = parse_master(KOSPI, cp949(SAMSUNG, KR_MOTORS, DL_PREFERRED))
    assert (samsung.stock_code, samsung.standard_code, samsung.name) == ("005930", "KR7005930003", "삼성전자")
    assert (samsung.market, samsung.security_group, samsung.listed_on) == (KOSPI, "ST", date(1975, 6, 11))
    assert (samsung.halted, samsung.liquidation, samsung.administrative, samsung.spac, samsung.preferred) == (
        False, False, False, False, False
    )
    assert samsung.market_cap == 15_726_489  # 억 won: 1,572 trillion
    assert (motors.name, motors.administrative, motors.market_cap) == ("KR모터스", True, 226)
    assert (preferred.stock_code, preferred.name, preferred.preferred, preferred.standard_code) == (
        "000215", "DL우", True, "KR7000211003"
    )
    (samsung_2024,) = parse_master(KOSPI, cp949(SAMSUNG_2024))
    assert (samsung_2024.listed_on, samsung_2024.market_cap) == (date(1975, 6, 11), 3_862_449)


def test_real_kosdaq_lines() -> None:
    ecopro, spac, silla = parse_master(KOSDAQ, cp949(ECOPRO, SPAC, SILLA_ADMINISTRATIVE))
    assert (ecopro.stock_code, ecopro.name, ecopro.listed_on, ecopro.spac) == ("247540", "에코프로비엠", date(2019, 3, 5), False)
    assert (spac.stock_code, spac.name, spac.spac, spac.listed_on) == ("0004Y0", "디비금융제14호스팩", True, date(2025, 7, 22))
    assert (silla.administrative, silla.market, silla.market_cap) == (True, KOSDAQ, 86)


def test_a_line_of_one_market_is_not_a_record_of_another() -> None:
    with pytest.raises(MasterFileError, match=r"kospi_code.mst line 1: 282 bytes; a KOSPI record has 288"):
        parse_master(KOSPI, cp949(ECOPRO))
    with pytest.raises(MasterFileError, match=r"line 1: 288 bytes; a KOSDAQ record has 282"):
        parse_master(KOSDAQ, cp949(SAMSUNG))


# --- lines built from the layout ----------------------------------------------------------------


def test_every_field_the_universe_reads_is_at_its_place() -> None:
    lines = [
        record(KOSPI, "Q500001", "신한 레버리지 WTI원유 선물 ETN", "KRG500001005", scrt_grp_cls_code="EN"),
        record(KOSPI, "0126Z0", trht_yn="Y", sltr_yn="Y", mang_issu_yn="Y", etpr_undt_objt_co_yn="Y",
               prst_cls_code="2", stck_lstn_date="20260105", prdy_avls_scal="-00000012"),
    ]  # fmt: skip
    etn, flagged = parse_master(KOSPI, cp949(*lines))
    assert (etn.stock_code, etn.security_group, etn.name, etn.halted) == ("Q500001", "EN", "신한 레버리지 WTI원유 선물 ETN", False)
    assert (flagged.halted, flagged.liquidation, flagged.administrative, flagged.spac, flagged.preferred) == (True,) * 5
    assert (flagged.listed_on, flagged.market_cap) == (date(2026, 1, 5), -12)
    (konex,) = parse_master(KONEX, cp949(record(KONEX, "278990", "코넥스기업", scrt_grp_cls_code="KN", trht_yn="Y")))
    assert (konex.market, konex.security_group, konex.halted, konex.spac, konex.market_cap) == (KONEX, "KN", True, False, 1234)
    (kosdaq,) = parse_master(KOSDAQ, cp949(record(KOSDAQ, etpr_undt_objt_co_yn="Y", mang_issu_yn=" ")))
    assert (kosdaq.spac, kosdaq.administrative) == (True, False)  # a blank flag is a no, as in the real files


def test_a_name_filling_its_40_bytes_and_blank_fields() -> None:
    full = "가" * 20  # 40 bytes of cp949: the group code follows the name with no space
    (line,) = parse_master(KOSPI, cp949(record(KOSPI, name=full, stck_lstn_date=" " * 8, prdy_avls_scal=" " * 9)))
    assert (line.name, line.listed_on, line.market_cap) == (full, None, None)
    # A name cut by the field's end in the middle of a character loses that character only.
    raw = record(KOSPI, name="가" * 19).encode("cp949")
    cut = raw[:59] + "나".encode("cp949")[:1] + b" " + raw[61:]
    assert parse_master(KOSPI, cut)[0].name == "가" * 19


def test_line_ends_crlf_and_no_final_newline_are_only_formatting() -> None:
    lines = (SAMSUNG, KR_MOTORS, DL_PREFERRED)
    expected = parse_master(KOSPI, cp949(*lines))
    assert parse_master(KOSPI, cp949(*lines, end=b"\r\n")) == expected
    assert parse_master(KOSPI, cp949(*lines)[:-1]) == expected


# --- damage -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (cp949(SAMSUNG, KR_MOTORS)[:-12], r"line 2: 277 bytes; a KOSPI record has 288 \(61 \+ 227\): the file is truncated"),
        (cp949(SAMSUNG, KR_MOTORS[:100]), r"line 2: 103 bytes"),
        (cp949(SAMSUNG, "", KR_MOTORS), r"line 2: 0 bytes"),
        (cp949(SAMSUNG + "N"), r"line 1: 289 bytes"),
        (cp949(SAMSUNG.replace("ST1002700130000", "ST10027001300가")), r"line 1: non-ASCII byte 0xb0 in the tail"),
        (cp949(record(KOSPI, trht_yn="X")), r"line 1: 123450: trht_yn is 'X', not Y, N or blank"),
        (cp949(record(KOSPI, stck_lstn_date="20251341")), r"123450: listing date '20251341' is not a date"),
        (cp949(record(KOSPI, scrt_grp_cls_code="1S")), r"security group '1S' is not two letters"),
        (cp949(record(KOSPI, code=" 12345")), r"short code ' 12345' is not 1-9 characters"),
        (cp949(record(KOSPI, prdy_avls_scal="00001x234")), r"market cap '00001x234' is not a whole number"),
        (cp949(SAMSUNG, KR_MOTORS, SAMSUNG), r"line 3: 005930 again \(first on line 1\)"),
        (b"", r"no record in 0 bytes"),
        (b"\n", r"line 1: 0 bytes"),
    ],
)
def test_a_damaged_file_names_its_line_and_problem(content: bytes, problem: str) -> None:
    with pytest.raises(MasterFileError, match=r"^kospi_code\.mst(:kospi_code\.mst)? ?" + ".*" + problem):
        parse_master(KOSPI, content)


def test_the_zip_as_downloaded() -> None:
    content = cp949(SAMSUNG, KR_MOTORS)
    master = read_master_zip(KOSPI, zipped("kospi_code.mst", content), source="https://host/kospi_code.mst.zip")
    assert [r.stock_code for r in master.records] == ["005930", "000040"]
    assert master.written == datetime(2026, 11, 25, 5, 0)
    assert master.sha256 == hashlib.sha256(content).hexdigest()
    # The only .mst of an archive is the file, whatever its name.
    assert read_master_zip(KOSPI, zipped("KOSPI_CODE.mst", content)).records == master.records


def test_a_damaged_zip_is_named() -> None:
    good = zipped("kospi_code.mst", cp949(SAMSUNG, KR_MOTORS))
    with pytest.raises(MasterFileError, match=r"^https://host/kospi_code.mst.zip: not a readable zip archive .*; 150 bytes received"):
        read_master_zip(KOSPI, good[:150], source="https://host/kospi_code.mst.zip")
    with pytest.raises(MasterFileError, match=r"no kosdaq_code.mst in the archive \(it holds \['readme.txt'\]\)"):
        read_master_zip(KOSDAQ, zipped("readme.txt", cp949(ECOPRO)))
    with pytest.raises(MasterFileError, match=r"kosdaq_code.mst.zip:kospi_code.mst line 1: 288 bytes; a KOSDAQ record"):
        read_master_zip(KOSDAQ, good)
    corrupt = bytearray(good)
    corrupt[45] ^= 0xFF  # inside the deflated data: the CRC (or the stream) tells
    with pytest.raises(MasterFileError, match="not a readable zip archive"):
        read_master_zip(KOSPI, bytes(corrupt))
    # A record cut inside a sound archive: the .mst's line names it.
    with pytest.raises(MasterFileError, match=r"kospi_code.mst.zip:kospi_code.mst line 2: 278 bytes"):
        read_master_zip(KOSPI, zipped("kospi_code.mst", cp949(SAMSUNG, KR_MOTORS)[:-11]))
