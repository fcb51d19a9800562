"""A zip's central directory read in C (``read.open_zip``, through
``kpi_excel._speedups.zip_directory``) gives exactly what ``zipfile`` gives.

The C reader takes only plainly written zips and answers None for anything else, which
zipfile then reads itself. Each test compares the two readers' whole outcome: the
error raised, or the directory (every attribute of every ZipInfo, in order, the
name index, the start of the directory, the comment) and every member's content. The
files are real forms, zips with every unusual feature zipfile reads, and forms damaged
at random in their directory and end record; and the tests check that the C reader
did read the plain ones, so a reader that always gave up would fail them.
"""

from __future__ import annotations

import io
import random
import struct
import warnings
import zipfile
from collections.abc import Callable

import pytest
from hostile import CORPUS, Forms, make_forms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpi_excel import read

pytestmark = pytest.mark.skipif(
    read._zip_directory is None, reason="the C part is not built (or another zipfile)"
)


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> Forms:
    return make_forms(tmp_path_factory.mktemp("forms"))


def _reference(data: bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(data))


def _outcome(make: Callable[[bytes], zipfile.ZipFile], data: bytes) -> tuple[object, ...]:
    """Everything a reader gives for ``data``: the error, or the directory and contents."""
    try:
        zf = make(data)
    except Exception as e:  # noqa: BLE001 - the very error is compared
        return ("raised", type(e), str(e))
    infos = zf.infolist()
    # every slot, as objects and types (1 == True, but not for zipfile)
    fields = [
        tuple((type(getattr(i, s)), getattr(i, s)) for s in read._ZIPINFO_SLOTS) for i in infos
    ]
    index = {
        n: next(k for k, i in enumerate(infos) if i is info) for n, info in zf.NameToInfo.items()
    }
    contents = []
    for i in infos:
        try:
            contents.append(("read", zf.read(i)))
        except Exception as e:  # noqa: BLE001
            contents.append(("raised", type(e), str(e)))
    return ("ok", zf.start_dir, zf._comment, fields, index, contents)


class _Counted:
    """``read._zip_directory`` with a count of the files it read (not None)."""

    def __init__(self) -> None:
        self.real = read._zip_directory
        self.read = 0

    def __call__(self, data: bytes, zipinfo: type) -> object:
        got = self.real(data, zipinfo)
        self.read += got is not None
        return got


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> _Counted:
    c = _Counted()
    monkeypatch.setattr(read, "_zip_directory", c)
    return c


def _same(data: bytes) -> tuple[object, ...]:
    got, want = _outcome(read.open_zip, data), _outcome(_reference, data)
    assert got == want
    return got


def test_forms_read_in_c_as_zipfile_reads_them(forms: Forms, counted: _Counted) -> None:
    files = [p.read_bytes() for p in forms.blank.values()] + list(forms.goods.values())
    for data in files:
        assert _same(data)[0] == "ok"
    assert counted.read == len(files)  # every form took the C reader


def test_hostile_files_as_zipfile_reads_them(forms: Forms, counted: _Counted) -> None:
    """The hostile corpus (bombs, encrypted members, other formats, damage): each reads,
    or fails, exactly as zipfile has it."""
    for case in CORPUS:
        _same(case.build(forms.good))
    assert counted.read > 0


def _zip(build: Callable[[zipfile.ZipFile], None], comment: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names, on purpose
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            build(zf)
            zf.comment = comment
    return buf.getvalue()


def _info(name: str, **attrs: object) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, (2026, 11, 27, 9, 30, 14))
    for k, v in attrs.items():
        setattr(info, k, v)
    return info


def _plain(zf: zipfile.ZipFile) -> None:
    zf.writestr("[Content_Types].xml", b"<Types/>")
    zf.writestr(_info("xl/a.xml", comment=b"a member's comment"), b"<a/>")
    zf.writestr("xl/", b"")  # a folder
    zf.writestr(_info("xl/b.bin", compress_type=zipfile.ZIP_STORED), bytes(range(256)))


def _zip64_end(build: Callable[[zipfile.ZipFile], None]) -> bytes:
    """A zip with Zip64 end records (zipfile writes them past 65,535 members: here past 1)."""
    saved = zipfile.ZIP_FILECOUNT_LIMIT
    zipfile.ZIP_FILECOUNT_LIMIT = 1
    try:
        data = _zip(build)
    finally:
        zipfile.ZIP_FILECOUNT_LIMIT = saved
    assert b"PK\x06\x07" in data[-42:]
    return data


def _set_u16(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<H", value) + data[at + 2 :]


def _renamed(data: bytes, old: bytes, new: bytes) -> bytes:
    """``data`` with a member's name bytes replaced in place (zipfile writes only
    names it can encode as it likes)."""
    assert len(old) == len(new) and data.count(old) == 2  # local header and directory
    return data.replace(old, new)


def _directory_at(data: bytes) -> int:
    return struct.unpack_from("<I", data, len(data) - 6)[0]


UNUSUAL: dict[str, Callable[[], bytes]] = {
    "plain": lambda: _zip(_plain),
    "empty": lambda: _zip(lambda zf: None),
    "archive comment": lambda: _zip(_plain, b"an archive comment"),
    "extra field": lambda: _zip(lambda zf: zf.writestr(_info("x.xml", extra=b"\x0a\x00\x04\x00abcd"), b"<x/>")),
    "zip64 in the local header": lambda: _zip(lambda zf: zf.open("big.xml", "w", force_zip64=True).close()),
    "zip64 end records": lambda: _zip64_end(_plain),
    # the directory's last bytes (a member's comment) look like a Zip64 locator that
    # says the archive spans disks: zipfile reads it, and refuses the file
    "locator in a comment": lambda: _zip(
        lambda zf: zf.writestr(_info("a.xml", comment=b"PK\x06\x07" + struct.pack("<IQI", 1, 0, 2)), b"<a/>")
    ),
    "UTF-8 name": lambda: _zip(lambda zf: zf.writestr("xl/表.xml", b"<x/>")),
    "cp437 name": lambda: _renamed(_zip(lambda zf: zf.writestr("cafX.xml", b"<x/>")), b"cafX", b"caf\x82"),
    "NUL in name": lambda: _renamed(_zip(lambda zf: zf.writestr("aXb.xml", b"<x/>")), b"aXb", b"a\x00b"),
    "backslash": lambda: _zip(lambda zf: zf.writestr("xl\\a.xml", b"<x/>")),
    "control character": lambda: _zip(lambda zf: zf.writestr("a\x01.xml", b"<x/>")),
    "duplicate names": lambda: _zip(lambda zf: [zf.writestr("a.xml", b"1"), zf.writestr("a.xml", b"22")]),  # type: ignore[func-returns-value]
    "data before": lambda: b"MZ stub " + _zip(_plain),
    "data after": lambda: _zip(_plain) + b"\x00" * 5,
    "newer version": lambda: (lambda d: d[: _directory_at(d) + 6] + b"\x40" + d[_directory_at(d) + 7 :])(_zip(_plain)),
    "entries this disk differ": lambda: _set_u16(_zip(_plain), len(_zip(_plain)) - 14, 3),
    "count too high": lambda: (lambda d: _set_u16(_set_u16(d, len(d) - 14, 9), len(d) - 12, 9))(_zip(_plain)),
    "disk number": lambda: _set_u16(_zip(_plain), len(_zip(_plain)) - 18, 1),
    "tiny": lambda: b"PK\x05\x06" + bytes(18),
}  # fmt: skip


@pytest.mark.parametrize("name", list(UNUSUAL))
def test_unusual_zips_as_zipfile_reads_them(name: str, counted: _Counted) -> None:
    data = UNUSUAL[name]()
    _same(data)
    # the plain ones and those whose oddity is outside what the C reader checks are
    # read in C; every other one by zipfile
    c_reads = name in (
        "plain",
        "control character",
        "backslash",
        "duplicate names",
        "zip64 in the local header",
    )
    assert counted.read == int(c_reads), name


def _damaged(data: bytes, rng: random.Random, edits: int) -> bytes:
    """``data`` with bytes overwritten, cut or inserted near its end (the directory and
    the end record), where the C reader reads."""
    out = bytearray(data)
    start = max(0, _directory_at(data) - 64)
    for _ in range(edits):
        op = rng.random()
        at = rng.randrange(start, len(out)) if len(out) > start else 0
        if op < 0.6:
            out[at] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op < 0.75:
            del out[at : at + rng.randrange(1, 8)]
        elif op < 0.9:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        else:
            at = rng.randrange(len(out) - 22, len(out)) if len(out) > 22 else 0
            out[at] ^= 1 << rng.randrange(8)
    return bytes(out)


def test_damaged_forms_as_zipfile_reads_them(forms: Forms, counted: _Counted) -> None:
    rng = random.Random(20261127)
    for k in range(600):
        _same(_damaged(forms.good, rng, 1 + k % 4))
    assert counted.read > 0  # some damage leaves a plain zip (a CRC, a size, a date)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(
        st.one_of(
            st.text(st.characters(min_codepoint=1, max_codepoint=0x7F), min_size=1, max_size=12),
            st.text(st.characters(min_codepoint=1, max_codepoint=0x17F), min_size=1, max_size=12),
        ),
        min_size=0,
        max_size=6,
    ),
    comment=st.binary(max_size=8),
    seed=st.integers(0, 2**32 - 1),
    edits=st.integers(0, 3),
)
def test_any_small_zip_as_zipfile_reads_it(
    names: list[str], comment: bytes, seed: int, edits: int
) -> None:
    def build(zf: zipfile.ZipFile) -> None:
        for k, name in enumerate(names):
            zf.writestr(_info(name, comment=comment), name.encode() * k)

    data = _zip(build)
    if edits:
        data = _damaged(data, random.Random(seed), edits)
    _same(data)
