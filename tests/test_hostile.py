"""Hostile and damaged returned files: each is named, none crashes or stalls the run.

The corpus (:mod:`hostile`) is built here from generated forms; every case is
collected together with a good form in one run, which must finish quickly, keep the
good form accepted, and give each bad file its status and a reason in Chinese.
"""

from __future__ import annotations

import io
import os
import sqlite3
import sys
import time
import unicodedata
import zipfile
from pathlib import Path

import openpyxl
import pytest
from hostile import CORPUS, SHEET, Forms, make_forms, patch_header, rezip, tree_digest, write_case
from test_collect import Text

from kpi_excel import collect as collect_mod
from kpi_excel.collect import check_source, collect, discover, display_path
from kpi_excel.read import DEFAULT_LIMITS, Limits, UnreadableFile, gate

POSIX = sys.platform != "win32"


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> Forms:
    return make_forms(tmp_path_factory.mktemp("forms"))


@pytest.fixture(scope="module")
def corpus_run(forms: Forms, tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("corpus")
    (d / "好表.xlsx").write_bytes(forms.good)
    for case in CORPUS:
        write_case(case, forms, d)
    with open(d / "超大.xlsx", "wb") as fh:  # sparse: 26 MB on paper, nothing on disk
        fh.truncate(26 * 1024 * 1024)
    before = tree_digest(d)
    t0 = time.perf_counter()
    coll = collect([d], out=tmp_path_factory.mktemp("out") / "summary.xlsx")
    seconds = time.perf_counter() - t0
    assert tree_digest(d) == before  # inputs are never modified
    return d, coll, seconds


def _by_name(coll) -> dict[str, object]:
    return {Path(f.path).name: f for f in coll.files}


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_each_case_gets_its_outcome(corpus_run, case) -> None:
    _d, coll, _s = corpus_run
    if case.status == "skipped":
        skipped = {Path(p).name: why for p, why in coll.skipped}
        assert case.words in skipped[case.name]
        return
    f = _by_name(coll)[case.name]
    assert f.status == case.status, (f.status, [(i.kind, i.message) for i in f.issues])
    if case.status == "rejected":
        first = f.errors[0]
        assert first.kind == case.kind, (first.kind, first.message)
        assert case.words in f.reason, f.reason
        assert any("\u4e00" <= ch <= "\u9fff" for ch in f.reason)  # said in Chinese


def test_the_good_form_survives_the_corpus_and_the_run_is_quick(corpus_run) -> None:
    _d, coll, seconds = corpus_run
    good = _by_name(coll)["好表.xlsx"]
    assert good.status == "accepted" and str(good.total) == "121.95"
    assert _by_name(coll)["超大.xlsx"].errors[0].kind == "too_large"
    # every file of the folder is accounted for: results + skipped
    assert len(coll.files) + len(coll.skipped) == len(CORPUS) + 2
    assert seconds < 20, seconds  # generous: ~2 s here; nothing may stall


def test_both_readers_give_the_same_outcomes(corpus_run, tmp_path: Path) -> None:
    """The fast reader (python-calamine and XML, the default) and the openpyxl reader
    pass the same gate: every case comes out the same."""
    d, coll, _s = corpus_run
    slow = collect([d], out=tmp_path / "s.xlsx", fast=False)

    def outcome(c) -> dict[str, tuple[str, str]]:
        return {
            Path(f.path).name: (f.status, f.errors[0].kind if f.errors else "") for f in c.files
        }

    assert outcome(slow) == outcome(coll)
    assert slow.skipped == coll.skipped


def test_the_summary_and_ledger_list_every_file(corpus_run) -> None:
    d, coll, _s = corpus_run
    out = Path(coll.summary_path)
    ws = openpyxl.load_workbook(out, read_only=True)["文件"]
    listed = {Path(r[0]).name: r[1] for r in ws.iter_rows(min_row=2, values_only=True)}
    assert set(listed) == {p.name for p in d.iterdir()}
    con = sqlite3.connect(coll.ledger_path)
    paths = {Path(p).name for (p,) in con.execute("SELECT path FROM sources")}
    con.close()
    assert paths == {Path(f.path).name for f in coll.files}


def test_a_far_away_cell_is_refused_before_calamine_sees_it(forms: Forms) -> None:
    """python-calamine allocates A1 to the farthest cell at once: one value in
    XFD1048576 aborts the process (tried: ``memory allocation of 549755813888 bytes
    failed``). The gate measures the used area first."""
    from hostile import _far_cell

    with pytest.raises(UnreadableFile) as e:
        gate(_far_cell(forms.good))
    assert e.value.kind == "too_many_cells"
    # the same in an exotic spelling (prefix, attributes reordered, no r on the row)
    odd = rezip(
        forms.good,
        {
            SHEET: lambda b: b.replace(
                b"</sheetData>",
                b"<row><x:c xmlns:x='http://schemas.openxmlformats.org/spreadsheetml/2006/main'"
                b" t='n' r='XFD1048576'><x:v>1</x:v></x:c></row></sheetData>",
                1,
            )
        },
    )
    with pytest.raises(UnreadableFile) as e:
        gate(odd)
    assert e.value.kind == "too_many_cells"
    # a styled empty cell far away holds nothing and is fine
    empty = rezip(
        forms.good,
        {
            SHEET: lambda b: b.replace(
                b"</sheetData>", b'<row r="1048576"><c r="XFD1048576" s="1"/></row></sheetData>', 1
            )
        },
    )
    gate(empty)


def test_limits_are_applied(forms: Forms) -> None:
    small = Limits(max_file_bytes=10_000)
    with pytest.raises(UnreadableFile) as e:
        gate(forms.good, small)
    assert e.value.kind == "too_large"
    with pytest.raises(UnreadableFile) as e:
        gate(forms.good, Limits(max_members=5))
    assert e.value.kind == "zip_bomb"
    with pytest.raises(UnreadableFile) as e:
        gate(forms.good, Limits(max_cells=100))
    assert e.value.kind == "too_many_cells"
    with pytest.raises(UnreadableFile) as e:
        gate(forms.good, Limits(max_xml_total=10_000))
    assert e.value.kind == "zip_bomb"
    # a lying sheet size is caught whatever the file's size (sheets are read whole)
    with pytest.raises(UnreadableFile) as e:
        gate(patch_header(forms.good, SHEET, file_size=500))
    assert e.value.kind == "zip_bomb"


def test_the_gate_is_cheap(forms: Forms) -> None:
    t0 = time.perf_counter()
    for _ in range(50):
        gate(forms.good)
    assert (time.perf_counter() - t0) / 50 < 0.01  # ~0.6 ms on a 2-core machine


def test_unclosed_far_cell_tags_do_not_stall_the_gate(forms: Forms) -> None:
    """Cell tags beyond Z999 with no ">" after them: each one used to be scanned to
    the end of the sheet (minutes for a sheet of a few hundred KB, deflated to a few
    KB). The gate's answer is unchanged; only the time."""
    junk = b'<c r="AB1"' * 50_000  # 500 KB after the root element's end
    data = rezip(forms.good, {SHEET: lambda b: b + junk})
    t0 = time.process_time()
    gate(data)
    assert time.process_time() - t0 < 5  # was ~4 minutes


@pytest.mark.parametrize("part", [SHEET, "xl/worksheets/sheet2.xml"])
def test_a_local_header_naming_another_part_is_refused(
    forms: Forms, tmp_path: Path, part: str
) -> None:
    """The gate inflates every worksheet and keeps it for the readers; a local header
    whose name differs from the central directory's (zipfile refuses the part) must
    still refuse the file, on both read paths."""
    with zipfile.ZipFile(io.BytesIO(forms.good)) as z:
        at = z.getinfo(part).header_offset + 30 + part.rindex("t")
    data = bytearray(forms.good)
    data[at : at + 1] = b"T"  # .../sheeT1.xml in the local header only
    gate(bytes(data))  # the gate itself reads the bytes through the local header
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "表.xlsx").write_bytes(bytes(data))
    for fast in (True, False):
        coll = collect([tmp_path / "in"], out=tmp_path / f"{fast}.xlsx", fast=fast)
        f = coll.files[0]
        assert f.status == "rejected" and f.errors[0].kind == "bad_zip", (fast, f.reason)
        assert "differ" in f.reason


def test_a_directory_entry_pointing_into_the_last_bytes_is_refused(
    forms: Forms, tmp_path: Path
) -> None:
    """A directory entry whose local header would start within the last 30 bytes (a
    signature planted in the zip comment) is a damaged file, not a crash."""
    import struct

    data = bytes(forms.good)
    comment = b"xx" + b"PK\x03\x04" + b"abc"
    eocd = data.rfind(b"PK\x05\x06")
    data = data[: eocd + 20] + struct.pack("<H", len(comment)) + comment
    target = len(data) - len(comment) + 2
    pos = struct.unpack_from("<I", data, eocd + 16)[0]
    while data[pos : pos + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack_from("<HHH", data, pos + 28)
        if data[pos + 46 : pos + 46 + n] == b"xl/styles.xml":
            data = data[: pos + 42] + struct.pack("<I", target) + data[pos + 46 :]
        pos += 46 + n + m + k
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "表.xlsx").write_bytes(data)
    for fast in (True, False):
        coll = collect([tmp_path / "in"], out=tmp_path / f"{fast}.xlsx", fast=fast)
        f = coll.files[0]
        assert f.status == "rejected" and f.errors[0].kind == "bad_zip", (fast, f.reason)
        assert "xl/styles.xml" in f.reason


# ------------------------------------------------------------------ on the disk


@pytest.mark.skipif(not POSIX, reason="FIFOs and symlinks")
def test_special_files_never_stall_and_are_accounted_for(forms: Forms, tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "好表.xlsx").write_bytes(forms.good)
    os.mkfifo(d / "管道.xlsx")  # reading it would block forever
    (d / "断链.xlsx").symlink_to(d / "不存在.xlsx")
    (d / "零设备.xlsx").symlink_to("/dev/zero")  # endless
    (d / "循环.xlsx").symlink_to(d / "循环.xlsx")
    (d / "子目录链接").symlink_to(d, target_is_directory=True)  # a loop if followed
    t0 = time.perf_counter()
    coll = collect([d], out=tmp_path / "s.xlsx")
    assert time.perf_counter() - t0 < 20
    got = {Path(f.path).name: (f.status, f.errors[0].kind if f.errors else "") for f in coll.files}
    assert got["好表.xlsx"] == ("accepted", "")
    assert got["管道.xlsx"] == ("rejected", "not_a_file")
    assert got["零设备.xlsx"] == ("rejected", "not_a_file")
    assert got["断链.xlsx"][0] == "rejected" and got["循环.xlsx"][0] == "rejected"
    assert "不存在" in _by_name(coll)["断链.xlsx"].reason
    skipped = {Path(p).name: why for p, why in coll.skipped}
    assert "链接" in skipped["子目录链接"]


@pytest.mark.skipif(not POSIX or os.geteuid() == 0, reason="root reads any folder")
def test_an_unreadable_folder_is_reported(forms: Forms, tmp_path: Path) -> None:
    d = tmp_path / "in"
    (d / "锁住").mkdir(parents=True)
    (d / "锁住" / "a.xlsx").write_bytes(forms.good)
    (d / "锁住").chmod(0)
    try:
        coll = collect([d], out=tmp_path / "s.xlsx")
    finally:
        (d / "锁住").chmod(0o755)
    assert any("无法读取" in why for _p, why in coll.skipped)


def _names_supported(folder: Path) -> bool:
    try:
        p = os.path.join(os.fsencode(folder), b"\xff\xfe.xlsx")
        with open(p, "wb"):
            pass
        os.remove(p)
        return True
    except OSError:
        return False


@pytest.mark.skipif(not POSIX, reason="byte file names")
def test_odd_names_and_long_paths(forms: Forms, tmp_path: Path) -> None:
    d = tmp_path / "in"
    deep = d.joinpath(*["很长的部门文件夹名称" * 3] * 32)  # a path of ~1,100 characters
    deep.mkdir(parents=True)
    long_name = "绩效考核表" * 16 + ".xlsx"  # 85 characters, 245 bytes in UTF-8
    names = {
        "nfc": unicodedata.normalize("NFC", "José_考核.xlsx"),
        "nfd": unicodedata.normalize("NFD", "José_考核.xlsx"),
        "emoji": "张三👍🏽_考核.xlsx",
        "rtl": "تقييم_محمد.xlsx",
        "rlo": "报表\u202excod.xlsx",  # shows as "报表dock.slx" in a file browser
    }
    for n in names.values():
        (d / n).write_bytes(forms.good)
    (deep / long_name).write_bytes(forms.good)
    raw = None
    if _names_supported(d):
        raw = os.path.join(os.fsencode(d), b"\xb2\xe2\xca\xd4_GBK.xlsx")  # GBK bytes, not UTF-8
        with open(raw, "wb") as fh:
            fh.write(forms.good)
    coll = collect([d], out=tmp_path / "s.xlsx", period="2026-11")
    expected = len(names) + 1 + (raw is not None)
    assert len(coll.files) == expected  # NFC and NFD are two files, both accounted for
    shown = [f.path for f in coll.files]
    assert sum(p.endswith(names["nfc"]) or p.endswith(names["nfd"]) for p in shown) == 2
    assert any(p.endswith("报表<U+202E>xcod.xlsx") for p in shown)
    assert any(p.endswith(long_name) and len(p) > 1000 for p in shown)
    if raw is not None:
        assert any(p.endswith("\\xb2\\xe2\\xca\\xd4_GBK.xlsx") for p in shown)
    # all the same employee: one counts, the others are duplicates; nobody is lost
    assert sorted(f.status for f in coll.files).count("accepted") == 1
    assert all(f.reason for f in coll.files if f.status == "rejected")
    ws = openpyxl.load_workbook(tmp_path / "s.xlsx", read_only=True)["文件"]
    assert len(list(ws.iter_rows(min_row=2))) == expected
    con = sqlite3.connect(tmp_path / "s.sqlite")
    assert con.execute("SELECT COUNT(*) FROM sources").fetchone() == (expected,)
    con.close()


def test_display_path() -> None:
    assert display_path("a/b.xlsx") == "a/b.xlsx"
    assert display_path(os.fsdecode(b"a/\xff.xlsx")) == "a/\\xff.xlsx"
    assert display_path("\u202e.xlsx") == "<U+202E>.xlsx"
    assert display_path("\ud800x") == "\ufffdx"


# ------------------------------------------------------------------- archives


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_archives_of_returns(forms: Forms, tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("内层/李四.xlsx", forms.good)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("客服部/张三.xlsx", forms.good)
        z.writestr("客服部/加密.xlsx", forms.good)
        z.writestr("客服部/deflate64.xlsx", forms.good)
        z.writestr("客服部/同名.xlsx", forms.good)
        z.writestr("客服部/同名.xlsx", b"not a workbook")
        z.writestr("嵌套.zip", inner.getvalue())
        z.writestr("__MACOSX/客服部/._张三.xlsx", b"\x00\x05\x16\x07")
    data = patch_header(buf.getvalue(), "客服部/加密.xlsx", flags=0x1)
    data = patch_header(data, "客服部/deflate64.xlsx", method=9)
    archive = tmp_path / "returned.zip"
    archive.write_bytes(data)
    (tmp_path / "坏包.zip").write_bytes(data[:100])  # truncated archive
    coll = collect([archive, tmp_path / "坏包.zip"], out=tmp_path / "out" / "s.xlsx")
    got = {
        f.path.rsplit("!", 1)[-1]: (f.status, f.errors[0].kind if f.errors else "")
        for f in coll.files
    }
    assert got["客服部/张三.xlsx"][0] in ("accepted", "rejected")  # one of two E001 returns counts
    assert got["内层/李四.xlsx"][0] in ("accepted", "rejected")
    assert got["客服部/加密.xlsx"][0] == "rejected"
    assert "解压密码" in _by_name_full(coll, "加密.xlsx").reason
    assert "压缩方式" in _by_name_full(coll, "deflate64.xlsx").reason
    dups = [f for f in coll.files if "同名.xlsx" in f.path]
    assert len(dups) == 2 and all(f.errors[0].kind == "duplicate_name" for f in dups)
    assert len({f.path for f in dups}) == 2  # two distinct rows, nothing merged
    assert _by_name_full(coll, "坏包.zip").status == "rejected"
    assert len(coll.files) == 7 and len(coll.skipped) == 1
    con = sqlite3.connect(tmp_path / "out" / "s.sqlite")
    assert con.execute("SELECT COUNT(*) FROM sources").fetchone() == (7,)
    con.close()


def _by_name_full(coll, tail: str):
    (f,) = [f for f in coll.files if f.path.endswith(tail)]
    return f


# --------------------------------------------------------- crashes, in workers


def _boom(src):  # noqa: ANN001, ANN202 - a Source; runs in a worker process
    if src.display.endswith("崩溃.xlsx"):
        os._exit(3)  # what a native reader crashing on a file does to its process
    return collect_mod._for_main(collect_mod.check_source(src, collect_mod._WORKER_CTX))


@pytest.mark.skipif(not POSIX, reason="fork start method")
def test_a_file_that_kills_its_worker_is_rejected_and_the_rest_go_on(
    forms: Forms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "in"
    d.mkdir()
    for k in range(6):
        (d / f"{k}.xlsx").write_bytes(forms.good)
    (d / "崩溃.xlsx").write_bytes(forms.good)
    monkeypatch.setattr(collect_mod, "_worker_check", _boom)
    coll = collect([d], out=tmp_path / "s.xlsx", workers=2)
    assert len(coll.files) == 7
    crashed = _by_name(coll)["崩溃.xlsx"]
    assert crashed.status == "rejected" and crashed.errors[0].kind == "crashed"
    assert sum(f.status == "accepted" for f in coll.files) == 1  # the others are duplicates


def test_check_source_never_raises(forms: Forms, tmp_path: Path, monkeypatch) -> None:
    """Even a BaseException from a native reader (pyo3's PanicException) is a finding."""

    class PanicException(BaseException):
        pass

    def panic(*_a, **_k):
        raise PanicException("called `Option::unwrap()` on a `None` value")

    p = tmp_path / "a.xlsx"
    p.write_bytes(forms.good)
    monkeypatch.setattr(collect_mod, "check_book", panic)
    src, _ = discover([p])
    res = check_source(src[0], collect_mod.Context())
    assert res.errors[0].kind == "internal" and "PanicException" in res.reason


# ------------------------------------------------------------ re-saved elsewhere


@pytest.mark.engine
def test_a_form_resaved_by_libreoffice_is_accepted_silently(forms: Forms, tmp_path: Path) -> None:
    """LibreOffice saves ``_meta`` as hidden (not very hidden): that is not a finding."""
    from test_collect import G, signed

    from kpi_excel import _lo

    fills = {**G, **signed("张三")}
    (res,) = _lo.recalc([_lo.Job(forms.blank["E001"], fills=fills)], tmp_path / "lo")
    assert res.error is None, res.error
    book = gate(res.out.read_bytes())  # type: ignore[union-attr]
    states = {s.name: s.state for s in book.sheets}
    assert states["_meta"] in ("hidden", "veryHidden")
    coll = collect([res.out], out=tmp_path / "s.xlsx")  # type: ignore[list-item]
    (f,) = coll.files
    assert f.status == "accepted", [i.message for i in f.issues]
    assert not [i for i in f.issues if i.kind == "meta_visible"]


def test_defaults_are_documented() -> None:
    """docs/security.md states the limits the code applies."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "security.md").read_text("utf-8")
    assert f"{DEFAULT_LIMITS.max_file_bytes // 1024**2} MB" in text
    assert f"{DEFAULT_LIMITS.max_cells:,}" in text
    assert f"{DEFAULT_LIMITS.max_xml_total // 1024**2} MB" in text


# ------------------------------------------------------------ formula injection

#: how a cell's text may not start once written (see docs/security.md)
DANGEROUS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠", "\u2212")


def _strings(value: object):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def test_text_from_returned_files_is_written_inert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names, departments, file names and cell text that look like formulas end up as
    text in the summary (no formula cell anywhere) and with a leading ' in the JSON."""
    import csv
    import json

    from test_collect import TEMPLATE, G, fill

    from kpi_excel.collect import result_json
    from kpi_excel.generate import generate_command

    rows = [
        ["工号", "姓名", "部门", "岗位", "考核人"],
        ["E001", '=HYPERLINK("http://x.invalid","点我")', "+1+1", "@SUM(A1)", "-2+3"],
        ["E002", "＝１＋１", "=cmd|' /C calc'!A0", "\u22121", "＠x"],
    ]
    roster = tmp_path / "roster.csv"
    with open(roster, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    made = generate_command(TEMPLATE, roster, "2026-11", tmp_path / "gen")
    d = tmp_path / "in"
    fill(made[0], d / "a.xlsx", G)
    fill(made[1], d / "b.xlsx", {**G, "in_sales_rate_actual": Text("=1+1")})  # rejected text
    (d / "=1+1.xlsx").write_bytes(b"=1+1,@SUM(A1)\n")  # a CSV named like a formula
    monkeypatch.chdir(d)  # relative inputs: the file name is the whole display text
    coll = collect(
        [Path("a.xlsx"), Path("b.xlsx"), Path("=1+1.xlsx")],
        out=tmp_path / "out" / "s.xlsx",
        roster=roster,
    )
    assert {f.status for f in coll.files} == {"accepted", "rejected"}
    wb = openpyxl.load_workbook(tmp_path / "out" / "s.xlsx")
    seen = set()
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (ws.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    assert not cell.value.startswith(DANGEROUS), (ws.title, cell.coordinate)
                    seen.add(cell.value)
    assert '\'=HYPERLINK("http://x.invalid","点我")' in seen
    assert "'＝１＋１" in seen and "'+1+1" in seen and "'=1+1.xlsx" in seen
    data = result_json(coll)
    text = json.dumps(data, ensure_ascii=False)
    assert "'=HYPERLINK" in text and "'\u22121" in text
    for s in _strings(data):
        assert not s.startswith(DANGEROUS), s


def test_safe_text() -> None:
    from kpi_excel.collect import safe_text

    for start in DANGEROUS + ("\x01",):
        assert safe_text(start + "1").startswith("'"), start
    assert safe_text("张三") == "张三" and safe_text(None) == ""
    assert safe_text("a\x00b\ud800c\uffff") == "a\ufffdb\ufffdc\ufffd"  # XML cannot carry these


# -- reading a file: its size first, capped ---------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 27_360, 65_536, 65_537, (1 << 20) + 3])
def test_read_regular_reads_the_whole_file(tmp_path: Path, size: int) -> None:
    from kpi_excel.read import read_regular

    p = tmp_path / "f.xlsx"
    data = os.urandom(size)
    p.write_bytes(data)
    assert read_regular(p) == data


def test_read_regular_caps_the_size(tmp_path: Path) -> None:
    from kpi_excel.read import read_regular

    p = tmp_path / "f.xlsx"
    p.write_bytes(b"x" * 1000)
    assert read_regular(p, Limits(max_file_bytes=1000)) == b"x" * 1000
    p.write_bytes(b"x" * 1001)
    with pytest.raises(UnreadableFile) as e:
        read_regular(p, Limits(max_file_bytes=1000))
    assert e.value.kind == "too_large"


@pytest.mark.parametrize("grown", [1, 70_000])
def test_read_regular_file_grown_after_its_size_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grown: int
) -> None:
    """A file that grows between the size check and the read: all of it is read, up
    to the cap, and a file grown past the cap is refused."""
    from kpi_excel import read as read_mod

    p = tmp_path / "f.xlsx"
    data = os.urandom(5000 + grown)
    p.write_bytes(data)
    real_fstat = os.fstat

    def stale(fd: int) -> os.stat_result:  # the size it had before it grew
        st = list(real_fstat(fd))
        st[6] = 5000  # st_size
        return os.stat_result(st)

    monkeypatch.setattr(read_mod.os, "fstat", stale)
    assert read_mod.read_regular(p, Limits(max_file_bytes=10**6)) == data
    with pytest.raises(UnreadableFile) as e:
        read_mod.read_regular(p, Limits(max_file_bytes=5000 + grown - 1))
    assert e.value.kind == "too_large"
