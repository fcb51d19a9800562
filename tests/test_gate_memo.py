"""The gate's shortcuts (kpi_excel/read.py) answer exactly as the long way does.

* A worksheet the gate inflated and CRC-checked is given again by ``_read_member``
  only when ``zipfile`` would read the very same bytes: a local header that disagrees
  with the central directory fails as it did, whatever the gate kept.
* ``_used_area`` answers as the three-pass scan it shortens, on any cell markup.
* A member's digest found again by its exact bytes is the digest of those bytes.
* Prolog verdicts refuse what they refused, whether or not a member is keyed.

Each test compares against the reference (zipfile, or the former code restated
here), so a shortcut that answered differently would fail it.
"""

from __future__ import annotations

import hashlib
import io
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass

import pytest
from hostile import SHEET, XXE, Forms, make_forms, members, prolog, rezip
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi_excel import read
from kpi_excel.read import DEFAULT_LIMITS, UnreadableFile, gate, open_book

META = "xl/worksheets/sheet2.xml"


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> Forms:
    return make_forms(tmp_path_factory.mktemp("forms"))


# ------------------------------------------------------------------ a zip written by hand


@dataclass
class Entry:
    """One member as it is stored: the bytes after the local header are ``stored``."""

    name: str
    stored: bytes
    method: int
    crc: int
    size: int
    flags: int = 0  # central directory
    local_flags: int | None = None  # None: as the central directory
    local_name: bytes | None = None  # None: the name, encoded as the flags say
    extra: bytes = b""  # local header only


def deflated(name: str, content: bytes) -> Entry:
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    stored = co.compress(content) + co.flush()
    return Entry(name, stored, zipfile.ZIP_DEFLATED, zlib.crc32(content), len(content))


def write_zip(entries: list[Entry]) -> bytes:
    """A zip of exactly these headers and bytes (zipfile will not write odd ones)."""
    out, central = bytearray(), bytearray()
    for e in entries:
        name = e.name.encode("utf-8")
        local_flags = e.flags if e.local_flags is None else e.local_flags
        local_name = name if e.local_name is None else e.local_name
        offset = len(out)
        out += struct.pack(
            "<4s5H3I2H",
            b"PK\x03\x04",
            20,
            local_flags,
            e.method,
            0,
            0x21,
            e.crc,
            len(e.stored),
            e.size,
            len(local_name),
            len(e.extra),
        )
        out += local_name + e.extra + e.stored
        central += struct.pack(
            "<4s6H3I5H2I",
            b"PK\x01\x02",
            20,
            20,
            e.flags,
            e.method,
            0,
            0x21,
            e.crc,
            len(e.stored),
            e.size,
            len(name),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += name
    at = len(out)
    out += central
    out += struct.pack(
        "<4s4H2IH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), at, 0
    )
    return bytes(out)


def form_entries(data: bytes) -> list[Entry]:
    return [deflated(name, body) for name, body in members(data).items()]


def with_entry(data: bytes, name: str, change: dict[str, object]) -> bytes:
    entries = form_entries(data)
    for e in entries:
        if e.name == name:
            for k, v in change.items():
                setattr(e, k, v)
    return write_zip(entries)


def outcome(fn, *args) -> tuple[str, object]:  # noqa: ANN001 - any reader
    try:
        return "bytes", fn(*args)
    except Exception as e:  # the kind and words of any failure
        return type(e).__name__, str(e)


def reference_read(data: bytes, name: str) -> tuple[str, object]:
    """What ``_read_member`` gave before any content was kept: zipfile reads."""
    zf = zipfile.ZipFile(io.BytesIO(data))
    return outcome(read._read_member_now, zf, zf.getinfo(name), name, DEFAULT_LIMITS)


def fast_read(data: bytes, name: str) -> tuple[tuple[str, object], bool]:
    """``_read_member`` after the gate, and whether it gave the kept content."""
    book = open_book(data, "test")
    kept = read._checked_content(book.zf, book.zf.getinfo(name)) is not None
    return outcome(read._read_member, book.zf, name, DEFAULT_LIMITS), kept


# ------------------------------------------------------------------ kept worksheets


def test_kept_worksheets_are_what_zipfile_reads(forms: Forms) -> None:
    stored = rezip(forms.good, method={SHEET: zipfile.ZIP_STORED, META: zipfile.ZIP_STORED})
    for data in (*forms.goods.values(), stored, write_zip(form_entries(forms.good))):
        for name in (SHEET, META):
            got, kept = fast_read(data, name)
            assert kept
            assert got == reference_read(data, name)
            assert got == ("bytes", zipfile.ZipFile(io.BytesIO(data)).read(name))


def test_odd_but_readable_streams_are_read_alike(forms: Forms) -> None:
    body = members(forms.good)[SHEET]
    whole = deflated(SHEET, body).stored
    # a truncated deflate stream whose declared CRC and size are those of what it gives
    cut = whole[: len(whole) // 2]
    part = zlib.decompressobj(-15).decompress(cut)
    cases = {
        "bytes after the stream's end": {"stored": whole + b"\x00trailing bytes"},
        "a local extra field": {"extra": b"\xfe\xca\x04\x00abcd"},
        "UTF-8 flag on both headers": {"flags": 0x800},
        "a truncated stream": {"stored": cut, "crc": zlib.crc32(part), "size": len(part)},
    }
    for why, change in cases.items():
        data = with_entry(forms.good, SHEET, change)
        got, kept = fast_read(data, SHEET)
        assert kept, why
        assert got == reference_read(data, SHEET), why
        assert got[0] == "bytes", why


def test_a_local_header_that_disagrees_is_not_hidden(forms: Forms) -> None:
    """zipfile's open() checks the local header against the directory; the content
    the gate kept is given only when those checks pass, so each of these fails as
    it did before anything was kept."""
    name = SHEET.encode()
    cases = {
        "another name in the local header": {"local_name": name.replace(b"sheet1", b"sheeT1")},
        "a local name that is not UTF-8": {
            "local_name": name.replace(b"sheet1", b"sheet\xff"),
            "local_flags": 0x800,
        },
        "the UTF-8 flag only in the local header": {
            "name": "xl/worksheets/sheet1.xml",
            "local_name": "xl/worksheets/sheet1.xml".encode("cp437"),
            "local_flags": 0x800,
            "flags": 0,
        },
        "compressed patched data (flag bit 5)": {"flags": 0x20},
        "strong encryption (flag bit 6)": {"flags": 0x40},
    }
    refused = 0
    for why, change in cases.items():
        data = with_entry(forms.good, SHEET, change)
        try:
            gate(data)
        except UnreadableFile:  # pragma: no cover - the gate does not look at these
            pytest.fail(why)
        got, kept = fast_read(data, SHEET)
        assert got == reference_read(data, SHEET), why
        if got[0] != "bytes":
            refused += 1
            assert not kept, why
    assert refused == 4  # all but the UTF-8 flag on an ASCII name, which reads alike


def test_a_name_decoded_as_zipfile_decodes_it(forms: Forms) -> None:
    """A worksheet with a non-ASCII part name: with the UTF-8 flag in both headers it
    reads alike; without it in the local header zipfile decodes that name as cp437,
    which differs from the directory's, and refuses the part."""
    renamed = "xl/worksheets/表一.xml"
    parts = members(forms.good)
    entries = []
    for name, body in parts.items():
        if name.endswith((".xml", ".rels")):
            body = body.replace(b"worksheets/sheet1.xml", renamed[3:].encode())
        entries.append(deflated(renamed if name == SHEET else name, body))
        if name == SHEET:
            entries[-1].flags = 0x800
    data = write_zip(entries)
    got, kept = fast_read(data, renamed)
    assert kept and got == reference_read(data, renamed) == ("bytes", parts[SHEET])
    entries[[e.name for e in entries].index(renamed)].local_flags = 0
    data = write_zip(entries)
    got, kept = fast_read(data, renamed)
    assert not kept and got == reference_read(data, renamed)
    assert got[0] == "UnreadableFile" and "differ" in str(got[1])


def test_only_the_checked_zip_gives_kept_content(forms: Forms) -> None:
    book = open_book(forms.good, "test")
    other = zipfile.ZipFile(io.BytesIO(forms.good))  # not through the gate
    assert read._checked_content(other, other.getinfo(SHEET)) is None
    # an info object of another zip with the same name is not the one checked
    assert read._checked_content(book.zf, other.getinfo(SHEET)) is None
    book.zf.close()
    got = outcome(read._read_member, book.zf, SHEET, DEFAULT_LIMITS)
    assert got[0] == "UnreadableFile" and "closed" in str(got[1])


# ------------------------------------------------------------------ the used area


def reference_used_area(xml: bytes) -> tuple[int, int] | str:
    """``read._used_area`` as it was before its quick answer (three passes)."""
    if xml[:2] in (b"\xff\xfe", b"\xfe\xff") or xml[:1] == b"\x00" or xml[1:2] == b"\x00":
        xml = xml.decode("utf-16", "ignore").encode("utf-8")
    if read._CELL_ODD.search(xml) is None:
        far = [read._split_ref(ref) for ref, closed in read._CELL_FAR.findall(xml) if not closed]
        if not far:
            return 999, 26
        return max(999, *(r for r, _c in far)), max(26, *(c for _r, c in far))
    tags = read._TAG.findall(xml)
    if len(tags) != len(read._TAG_START.findall(xml)):
        return "单元格的 XML 写法异常"
    row = col = last_row = last_col = 0
    for tag, attrs, closed in tags:
        m = read._ATTR_R.search(attrs)
        ref = (m.group(1) if m.group(1) is not None else m.group(2)) if m else None
        if tag == b"row":
            if ref is None:
                row += 1
            elif ref.isdigit() and len(ref) <= 7:
                row = int(ref)
            else:
                return f"行号“{ref[:20].decode('latin-1')}”无效"
            col = 0
            continue
        if ref is None:
            col += 1
            at_row = max(row, 1)
        elif read._REF_B.match(ref):
            at_row, col = read._split_ref(ref)
        else:
            return f"单元格引用“{ref[:20].decode('latin-1')}”无效"
        if not closed:
            last_row, last_col = max(last_row, at_row), max(last_col, col)
    return last_row, last_col


_PIECES = [
    b'<c r="A1">',
    b'<c r="B7" s="3" t="s">',
    b'<c r="Z999"/>',
    b'<c r="Z999">',
    b'<c r="AA1">',
    b'<c r="AA1"',
    b'<c r="A1000" ',
    b'<c r="AA1" s="1"/>',
    b'<c r="AB12" s="1" />',
    b'<c r="A1000">',
    b'<c r="A1000"/>',
    b'<c r="C10000" t="n">',
    b'<c r="XFD1048576">',
    b'<c r="XFD1048576" s="2"/>',
    b'<c r="a1">',
    b'<c r="A1"',
    b'<c  r="A1">',
    b'<c\tr="A1">',
    b'<c s="1" r="B2">',
    b"<c r='B2'>",
    b"<c>",
    b"<c/>",
    b"<c >",
    b'<x:c r="B3">',
    b"<x:c r='AB3'>",
    b"<x:c/>",
    b'<row r="7">',
    b'<row r="1048576" spans="1:2">',
    b"<row>",
    b"</row>",
    b"<v>1</v>",
    b"</c>",
    b"<cols>",
    b'<col min="1" max="3"/>',
    b":c ",
    b":c>",
    b"&#10;",
    b"&#xD800;",
    b">",
    b"/",
    b"/>",
    b'"',
    b" ",
    b"<",
]


def test_the_used_area_answers_as_the_three_pass_scan(forms: Forms) -> None:
    rng = random.Random(6)
    docs = [members(forms.good)[SHEET], members(forms.good)[META]]
    for _ in range(20_000):
        docs.append(b"".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 12))))
    quick = 0
    for doc in docs:
        for xml in (doc, doc.decode("latin-1").encode("utf-16")):
            want = reference_used_area(xml)
            assert read._used_area(xml) == want, xml
            quick += want == (999, 26)
    assert quick > 1000  # the quick answer was put to the test


# ------------------------------------------------------------------ digests


def reference_digest(data: bytes, info: zipfile.ZipInfo) -> bytes | None:
    """``read._member_digest`` as it was: hashed every time."""
    off = info.header_offset
    if off < 0 or off + 30 > len(data):
        return None
    n, m = struct.unpack_from("<HH", data, off + 26)
    end = off + 30 + n + m + info.compress_size
    if end > len(data):
        return None
    room = getattr(info, "_end_offset", None)
    h = hashlib.blake2b(digest_size=32)
    fields = (
        info.orig_filename,
        info.filename,
        info.CRC,
        info.file_size,
        info.compress_size,
        info.compress_type,
        info.flag_bits,
        None if room is None else room - off,
    )
    h.update(repr(fields).encode("utf-8", "surrogatepass"))
    h.update(memoryview(data)[off:end])
    return h.digest()


def test_digests_found_again_are_the_digests_of_the_bytes(forms: Forms) -> None:
    body = random.Random(1).randbytes(3000)
    forged = bytes([body[0] ^ 1]) + body[1:]  # same length, directory and CRC claim
    files = [*forms.goods.values()]
    for content in (body, forged, body):
        entries = form_entries(forms.good)
        entries.append(
            Entry("xl/media/a.bin", content, zipfile.ZIP_STORED, zlib.crc32(body), len(body))
        )
        files.append(write_zip(entries))
    seen = set()
    for _round in range(2):  # the second round finds every digest kept
        for data in files:
            zf = zipfile.ZipFile(io.BytesIO(data))
            for info in zf.infolist():
                got = read._member_digest(data, info)
                assert got == reference_digest(data, info), info.filename
                if info.filename == "xl/media/a.bin":
                    seen.add(got)
    assert len(seen) == 2  # the forged bytes have their own digest


# ------------------------------------------------------------------ prolog verdicts


@pytest.mark.parametrize("size", ["small", "large"])
def test_a_doctype_is_refused_every_time_keyed_or_not(forms: Forms, size: str) -> None:
    pad = random.Random(2).randbytes(12_000).hex() if size == "large" else ""

    def theme(b: bytes, doctype: str) -> bytes:
        return prolog(b, doctype).replace(b"</a:theme>", f"<!--{pad}--></a:theme>".encode())

    good = rezip(forms.good, {"xl/theme/theme1.xml": lambda b: theme(b, "")})
    bad = rezip(forms.good, {"xl/theme/theme1.xml": lambda b: theme(b, XXE)})
    info = zipfile.ZipFile(io.BytesIO(bad)).getinfo("xl/theme/theme1.xml")
    assert (info.compress_size > read._PROLOG_KEY_MAX) == (size == "large")
    for _ in range(3):
        gate(good)
        with pytest.raises(UnreadableFile) as e:
            gate(bad)
        assert e.value.kind == "bad_xml" and "DOCTYPE" in str(e.value)


# ------------------------------------------------------------------ prolog of a whole part

_PROLOG_PARTS = st.sampled_from(
    [
        b"",
        b" ",
        b"\r\n\t",
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n',
        b'<?xml version="1.0" encoding="ebcdic"?>',
        b"<?xml-stylesheet href='a'?>",
        b"<!--",
        b"-->",
        b"<!-- note -->",
        b"<!DOCTYPE x>",
        b"<!",
        b"text",
        b"<worksheet/>",
        b"\xef\xbb\xbf",
        b"\xff\xfe<\x00?\x00",
        b"\x00\x00\x00<",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(_PROLOG_PARTS, max_size=6),
    pad=st.sampled_from([0, 1, 1000, 1010, 1017, 1018, 1019, 1024, 5000, 16384, 20000]),
    pad_at=st.integers(0, 6),
    tail=st.sampled_from([b"", b"<worksheet></worksheet>", b"\x00\x01binary"]),
    damage=st.sampled_from(["none", "truncate", "flip", "declared_smaller", "declared_larger"]),
    max_xml_part=st.sampled_from([1024, 2000, 20000, DEFAULT_LIMITS.max_xml_part]),
    name=st.sampled_from(["xl/worksheets/sheet1.xml", "xl/media/a.bin"]),
    length=st.none() | st.sampled_from([1021, 1022, 1023, 1024, 1025, 1026, 1027, 16384, 16385]),
)
def test_a_prolog_read_from_the_whole_part_answers_as_inflating_heads(
    parts: list[bytes],
    pad: int,
    pad_at: int,
    tail: bytes,
    damage: str,
    max_xml_part: int,
    name: str,
    length: int | None,
) -> None:
    """``_check_prolog_now`` with a ``whole`` to fill reads each head from the part
    inflated once: its verdict is the verdict of inflating head after head, on any
    prolog (comments that cross 1,024 and 16,384 bytes, or end exactly there), any
    damage to the stream, any declared size; what it keeps is what inflating the
    whole part gives, and the worksheet check on it answers as on inflating again."""
    parts = list(parts)
    parts.insert(min(pad_at, len(parts)), b"<!--" + b"x" * pad + b"-->")
    content = b"".join(parts) + tail
    if length is not None:  # a part of about the length where a head ends
        content = (content + b"<!--" + b"y" * length)[:length]
    e = deflated(name, content)
    if damage == "truncate":
        e.stored = e.stored[: max(0, len(e.stored) - 3)]
    elif damage == "flip" and e.stored:
        i = len(e.stored) // 2
        e.stored = e.stored[:i] + bytes([e.stored[i] ^ 0x55]) + e.stored[i + 1 :]
    elif damage == "declared_smaller":
        e.size = max(0, e.size - 10)
    elif damage == "declared_larger":
        e.size += 10
    data = write_zip([e])
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    limits = read.Limits(max_xml_part=max_xml_part)
    whole = read._Whole()
    assert outcome(read._check_prolog_now, data, info, limits, whole) == outcome(
        read._check_prolog_now, data, info, limits
    )
    if name in whole.parts:
        assert whole.parts[name][0] is info
        assert whole.parts[name][1] == read._inflate(data, info, info.file_size + 1)[0]
    assert outcome(read._check_real_size, data, info, whole) == outcome(
        read._check_real_size, data, info
    )
    assert outcome(read._check_area, data, info, "表", limits, whole) == outcome(
        read._check_area, data, info, "表", limits
    )


@pytest.mark.parametrize("length", [1023, 1024, 1025, 1027, 16383, 16384, 16385, 16387])
@pytest.mark.parametrize("max_xml_part", [1024, 16384, DEFAULT_LIMITS.max_xml_part])
@pytest.mark.parametrize(
    "start", [b"<!--", b" " * 20000, b"<?xml version='1.0'?><!-- ", b"<?xml ", b"<a/>"]
)
def test_a_prolog_cut_where_a_head_ends_answers_alike(
    length: int, max_xml_part: int, start: bytes
) -> None:
    """Parts that end just before, at and just after where a head ends (1,024 and
    16,384 bytes), with a prolog still open there: complete or not decides."""
    content = (start + b"z" * length)[:length]
    data = write_zip([deflated(SHEET, content)])
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(SHEET)
    limits = read.Limits(max_xml_part=max_xml_part)
    whole = read._Whole()
    assert outcome(read._check_prolog_now, data, info, limits, whole) == outcome(
        read._check_prolog_now, data, info, limits
    )
    assert whole.parts[SHEET][1] == content


def test_parts_are_inflated_whole_within_a_budget_a_file() -> None:
    """Beyond its budget of bytes a file, the gate checks prologs by their heads again:
    a file of many parts never read costs no more than that; the verdicts and the
    worksheet check are the same either way."""
    parts = [deflated(f"xl/extra/p{i}.xml", b"<a>" + b"x" * 900_000 + b"</a>") for i in range(12)]
    data = write_zip(parts)
    zf = zipfile.ZipFile(io.BytesIO(data))
    whole = read._Whole()
    for info in zf.infolist():
        assert outcome(read._check_prolog_now, data, info, DEFAULT_LIMITS, whole) == outcome(
            read._check_prolog_now, data, info, DEFAULT_LIMITS
        )
    kept = sum(len(c) for _i, c in whole.parts.values())
    assert 0 < kept <= read._WHOLE_BUDGET < 12 * 900_000
    assert len(whole.parts) < 12


def test_a_file_checked_whole_first_is_not_inflated_again(
    forms: Forms, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file large enough that the gate checks every member's real size first keeps
    what that inflated for the prologs and the worksheet checks: nothing is inflated
    whole a second time, and the worksheets read are the same."""
    small = read.Limits(max_uncompressed=1 << 20)  # the members are checked one by one
    calls: list[str] = []
    real = read._inflate_whole

    def counted(data: bytes, info: zipfile.ZipInfo) -> bytes | None:
        calls.append(info.filename)
        return real(data, info)

    monkeypatch.setattr(read, "_inflate_whole", counted)
    monkeypatch.setattr(read, "_PROLOG_OK", set())  # no prolog verdict known yet
    want = gate(forms.good)
    assert calls  # the usual way inflates the parts whole for their prologs
    calls.clear()
    read._PROLOG_OK.clear()
    got = gate(forms.good, small)
    assert calls == []
    for s in want.sheets:
        a, b = want.zf.getinfo(s.part), got.zf.getinfo(s.part)
        assert read._checked_content(got.zf, b) == read._checked_content(want.zf, a) is not None
