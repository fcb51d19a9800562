"""kpi_excel._speedups (the fast reader's per-cell loops, and the spool's plain values,
in C) against the Python in kpi_excel.fastread and kpi_excel.spool they stand for: the same results, the same calls back in the
same order, the same caches filled, the same exceptions -- on generated inputs of every
shape and on real forms (tests/test_fastread.py runs its whole comparison with the
reference reader both with the C loops and without).
"""

from __future__ import annotations

import gc
import marshal
import os
import tracemalloc
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fastread import FILLED_CELLS, FILLED_VALUES

from kpi_excel import fastread as fr

C: Any = fr._C
needs_c = pytest.mark.skipif(C is None, reason="kpi_excel._speedups is not built here")


def test_built_where_required() -> None:
    """CI builds the module (a compiler is there): a build that silently failed would
    leave the Python loops running and the benchmark slower."""
    if os.environ.get("KPI_EXCEL_REQUIRE_SPEEDUPS") != "1":
        pytest.skip("KPI_EXCEL_REQUIRE_SPEEDUPS is not set")
    assert C is not None and fr.SPEEDUPS


class Stop(Exception):
    pass


def _run(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except Stop as e:
        return "raised", e.args


def _assert_flat(rounds: Any) -> None:
    """Memory stays flat over three more ``rounds()`` once warm: nothing leaks."""
    rounds()
    gc.collect()
    tracemalloc.start()
    try:
        rounds()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            rounds()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 64 * 1024


# -- cut_pieces ------------------------------------------------------------------------

fragments = st.lists(
    st.sampled_from([b'<c r="', b"<c", b'<c r="A1"', b"<", b'r="', b"x", b"\xe4\xb8\xad", b""]),
    max_size=14,
)


@needs_c
@settings(max_examples=500, deadline=None)
@given(now=fragments, before=fragments, prev_none=st.booleans())
def test_cut_pieces_is_split(now: list[bytes], before: list[bytes], prev_none: bool) -> None:
    """The same list as bytes.split, with every piece equal to the previous list's at
    the same place given as that very object (and no other reused)."""
    data, old = b"".join(now), b"".join(before)
    prev = None if prev_none else old.split(b'<c r="')
    got = C.cut_pieces(data, prev)
    assert got == data.split(b'<c r="')
    assert all(type(p) is bytes for p in got)
    for i, piece in enumerate(got):
        if prev is not None and i < len(prev) and prev[i] == piece:
            assert piece is prev[i]
        elif prev is not None and len(piece) > 1:  # (bytes of 0 or 1 byte are shared)
            assert all(piece is not q for q in prev)


@needs_c
def test_cut_pieces_examples() -> None:
    assert C.cut_pieces(b"", None) == [b""]
    assert C.cut_pieces(b'<c r="', None) == [b"", b""]
    assert C.cut_pieces(b'a<c r="b<c r="c', []) == [b"a", b"b", b"c"]
    assert C.cut_pieces(memoryview(b'a<c r="b'), None) == [b"a", b"b"]  # any buffer
    with pytest.raises(TypeError):
        C.cut_pieces(b"a", (b"a",))  # the previous pieces are a list
    # a piece of another type at a place is not reused, only compared
    assert C.cut_pieces(b'a<c r="b', [bytearray(b"a"), b"b"]) == [b"a", b"b"]


# -- scan_pieces -----------------------------------------------------------------------

#: a piece's reading: (order key, coordinate, cell or None, its row the last)
readings = st.tuples(
    st.integers(min_value=-3, max_value=40),
    st.sampled_from(["A1", "B2", "C3"]),
    st.sampled_from([None, "cell", ("t", 0)]),
    st.sampled_from([False, True, 0, 1, "", "x"]),
)


@needs_c
@settings(max_examples=400, deadline=None)
@given(plan=st.lists(st.tuples(readings, st.sampled_from(["known", "read", "raise"])), max_size=12))
def test_scan_pieces_same(plan: list[tuple[tuple, str]]) -> None:
    pieces = [b"first"] + [f"p{i}".encode() for i in range(len(plan))]
    known = {pieces[i + 1]: r for i, (r, how) in enumerate(plan) if how == "known"}
    plans = {pieces[i + 1]: (r, how) for i, (r, how) in enumerate(plan)}

    def reader(calls: list[bytes]) -> Any:
        def read(piece: bytes) -> Any:
            calls.append(piece)
            r, how = plans[piece]
            if how == "raise":
                raise Stop(piece)
            return r

        return read

    calls_c: list[bytes] = []
    calls_py: list[bytes] = []
    got_c = _run(C.scan_pieces, pieces, dict(known), reader(calls_c))
    got_py = _run(fr.scan_pieces, pieces, dict(known), reader(calls_py))
    assert got_c == got_py
    assert calls_c == calls_py
    if got_c[0] == "ok" and got_c[1] is not None:  # the very readings, not copies
        assert all(a is b for a, b in zip(got_c[1], got_py[1], strict=True))


@needs_c
def test_scan_pieces_examples() -> None:
    a, b, c = (
        (1 << 15 | 1, "A1", "x", False),
        (1 << 15 | 2, "B1", None, False),
        (
            2 << 15 | 1,
            "A2",
            "y",
            True,
        ),
    )
    for fn in (C.scan_pieces, fr.scan_pieces):
        assert fn([b""], {}, None) is None  # no cell piece: the last row never reached
        assert fn([b"", b"a", b"b", b"c"], {b"a": a, b"b": b, b"c": c}, None) == [a, c]
        assert fn([b"", b"a", b"a"], {b"a": a}, None) is None  # duplicated
        assert fn([b"", b"c", b"a"], {b"a": a, b"c": c}, None) is None  # out of order
        assert fn([b"", b"a"], {b"a": a}, None) is None  # the last row never reached


@needs_c
def test_scan_pieces_rejects_what_python_cannot_unpack() -> None:
    with pytest.raises((TypeError, ValueError)):
        fr.scan_pieces([b"", b"a"], {b"a": (1, "A1", None)}, None)
    with pytest.raises(TypeError):
        C.scan_pieces([b"", b"a"], {b"a": (1, "A1", None)}, None)
    with pytest.raises(TypeError):
        C.scan_pieces((b"", b"a"), {}, None)  # a list, as bytes.split gives


# -- sheet_records and xml_views ---------------------------------------------------------

records_plan = st.lists(
    st.tuples(
        st.sampled_from(["kept", "stale", "new", "raise"]),
        st.booleans(),  # row is None (odd)
        st.sampled_from(["", "A1=1"]),  # line
        st.sampled_from([None, 0, "", "v"]),  # value
        st.sampled_from([b"", b"A1=1", None]),  # line in UTF-8
    ),
    max_size=10,
)


def _records_case(plan: list[tuple]) -> tuple[list[tuple], dict[int, tuple], dict[int, tuple]]:
    entries = [(i, f"A{i}", "cell", False) for i in range(len(plan))]
    records = {
        id(p): (p, None if odd else ("row",), line, value, bool(line), enc)
        for p, (_how, odd, line, value, enc) in zip(entries, plan, strict=True)
    }
    kept: dict[int, tuple] = {}
    for p, (how, *_rest) in zip(entries, plan, strict=True):
        if how == "kept":
            kept[id(p)] = records[id(p)]
        elif how == "stale":  # kept for another object that had this id
            kept[id(p)] = (("other",), ("row",), "", None, False, b"")
    return entries, records, kept


@needs_c
@settings(max_examples=400, deadline=None)
@given(plan=records_plan)
def test_sheet_records_same(plan: list[tuple]) -> None:
    entries, records, kept = _records_case(plan)
    how = {id(p): h for p, (h, *_r) in zip(entries, plan, strict=True)}

    def maker(calls: list[str]) -> Any:
        def make(piece: tuple) -> tuple:
            calls.append(piece[1])
            if how[id(piece)] == "raise":
                raise Stop(piece[1])
            return records[id(piece)]

        return make

    calls_c: list[str] = []
    calls_py: list[str] = []
    kept_c, kept_py = dict(kept), dict(kept)
    got_c = _run(C.sheet_records, entries, kept_c, maker(calls_c))
    got_py = _run(fr.sheet_records, entries, kept_py, maker(calls_py))
    assert got_c == got_py
    assert calls_c == calls_py
    assert kept_c == kept_py


@needs_c
@settings(max_examples=300, deadline=None)
@given(plan=records_plan)
def test_xml_views_same(plan: list[tuple]) -> None:
    entries, _records, _kept = _records_case(plan)
    how = {id(p): h for p, (h, *_r) in zip(entries, plan, strict=True)}
    kept = {
        id(p): ((p if h == "kept" else ("other",)), ("view", p[1]))
        for p, (h, *_r) in zip(entries, plan, strict=True)
        if h in ("kept", "stale")
    }

    def maker(calls: list[str]) -> Any:
        def make(piece: tuple) -> tuple:
            calls.append(piece[1])
            if how[id(piece)] == "raise":
                raise Stop(piece[1])
            return ("made", piece[1])

        return make

    calls_c: list[str] = []
    calls_py: list[str] = []
    kept_c, kept_py = dict(kept), dict(kept)
    got_c = _run(C.xml_views, entries, kept_c, maker(calls_c))
    got_py = _run(fr.xml_views, entries, kept_py, maker(calls_py))
    assert got_c == got_py
    assert calls_c == calls_py
    assert kept_c == kept_py


@needs_c
def test_sheet_records_checks_the_record_shape() -> None:
    entries = [(1, "A1", "cell", True)]
    with pytest.raises(TypeError):
        C.sheet_records(entries, {}, lambda p: (p, ("row",), ""))


@needs_c
def test_no_leak() -> None:
    """The loops hold no reference too many: memory stays flat over many calls, on
    every path (found, made, odd, raised)."""
    piece = (1 << 15 | 1, "A1", "cell", True)
    reading = {b"a": piece}
    record = (piece, ("row",), "A1=1", 1, True, b"A1=1")

    def bad(_p: Any) -> Any:
        raise Stop

    def rounds() -> None:
        prev = C.cut_pieces(b'x<c r="a<c r="b', None)
        for _ in range(2000):
            C.cut_pieces(b'x<c r="a<c r="c', prev)
            C.scan_pieces([b"", b"a"], reading, None)
            C.scan_pieces([b"", b"a", b"a"], reading, None)
            _run(C.scan_pieces, [b"", b"b"], reading, bad)
            C.sheet_records([piece], {}, lambda p: record)
            C.sheet_records([piece], {}, lambda p: (p, None, "", None, False, b""))
            _run(C.sheet_records, [piece], {}, bad)
            C.xml_views([piece], {}, lambda p: ("v", None))
            _run(C.xml_views, [piece], {}, bad)

    _assert_flat(rounds)


# -- cell_tags_near (the gate's used area) ------------------------------------------------

tag_bits = st.lists(
    st.sampled_from(
        [b"<c", b"c", b":", b"<", b' r="', b"A", b"Z", b"a", b"1", b"9", b'"', b" ", b"\t",
         b"\n", b"\x0b", b"\x0c", b"/", b">", b"x", b"<c r=\"A1\"", b"\xe4"]
    ),
    max_size=16,
)  # fmt: skip


@needs_c
def test_cell_tags_near_on_real_sheets(tmp_path: Any) -> None:
    import zipfile

    from kpi_excel import read
    from kpi_excel.fastwrite import CompiledWorkbook
    from kpi_excel.generate import FormGenerator
    from kpi_excel.roster import example_employee

    gen = FormGenerator.from_ref("cs_manager_monthly_kpi", "2026-11")
    path = tmp_path / "f.xlsx"
    path.write_bytes(CompiledWorkbook(gen).to_bytes(example_employee(gen.form), {}))
    with zipfile.ZipFile(path) as z:
        sheets = [z.read(n) for n in z.namelist() if n.startswith("xl/worksheets/")]
    assert sheets
    for xml in sheets:
        assert C.cell_tags_near(xml) is read.cell_tags_near(xml) is True
        far = xml.replace(b'<c r="A1"', b'<c r="A1000"', 1) if b'<c r="A1"' in xml else xml
        assert C.cell_tags_near(far) is read.cell_tags_near(far)
        prefixed = xml.replace(b"<c ", b"<x:c ", 1)
        assert C.cell_tags_near(prefixed) is read.cell_tags_near(prefixed) is False


# -- surrogate_ref (the gate's character references) -------------------------------------

ref_bits = st.lists(
    st.sampled_from(
        [b"&#", b"&", b"#", b"x", b"X", b"0", b"d", b"D", b"8", b"9", b"a", b"F", b"f", b"g",
         b"5", b"52", b"529", b"5529", b"6", b"573", b"4", b"3", b"7", b";", b"&#xD800;",
         b"&#55296;", b"&#57343;", b"&#57344;", b"&#55295;", b"\xe4"]
    ),
    max_size=14,
)  # fmt: skip


@needs_c
@pytest.mark.parametrize(
    ("name", "bits"), [("cell_tags_near", tag_bits), ("surrogate_ref", ref_bits)]
)
@settings(max_examples=2000, deadline=None)
@given(data=st.data())
def test_byte_scans_same(name: str, bits: Any, data: st.DataObject) -> None:
    """The gate's byte scans in C answer as their expressions do, on generated text."""
    from kpi_excel import read

    xml = b"".join(data.draw(bits))
    assert getattr(C, name)(xml) is getattr(read, name)(xml)


@needs_c
def test_surrogate_ref_every_value() -> None:
    """Every reference from U+D000 to U+E0FF, in hex and decimal, with and without
    leading zeros: flagged exactly for U+D800-U+DFFF, as the expression does."""
    from kpi_excel import read

    for cp in range(0xD000, 0xE100):
        for ref in (f"&#x{cp:X};", f"&#x00{cp:x};", f"&#{cp};", f"&#00{cp};", f"&#{cp}"):
            xml = f"<v>{ref}</v>".encode()
            want = read.surrogate_ref(xml)
            assert C.surrogate_ref(xml) is want, ref
            assert want is (0xD800 <= cp <= 0xDFFF and ref.endswith(";"))


@needs_c
def test_a_kept_view_of_another_shape_is_made_again() -> None:
    """A cache entry that is not a view of the piece (another size) is never read as
    one: the C loops make the view again (the caches only ever hold views, but a
    wrong one must not be read past its end)."""
    piece = (1 << 15 | 1, "A1", "cell", True)
    record = (piece, ("row",), "A1=1", 1, True, b"A1=1")
    for bad in [(piece,), (piece, 1), (piece, None, "", None, False)]:
        kept = {id(piece): bad}
        got = C.sheet_records([piece], kept, lambda p: record)
        assert got == ([record], {"A1": 1}, ["A1=1"], [b"A1=1"])
        assert kept[id(piece)] is record
    for bad in [(piece,), (piece, 1, 2)]:
        kept = {id(piece): bad}
        assert C.xml_views([piece], kept, lambda p: "v") == {"A1": "v"}
        assert kept[id(piece)] == (piece, "v")


# -- plain values (kpi_excel.spool) ------------------------------------------------------


class Row(tuple):  # noqa: SLOT001 - a row type, as IndicatorLine and ScoreRow are
    pass


class Other(tuple):  # noqa: SLOT001
    pass


class Text(str):  # noqa: SLOT000
    pass


class Dec(Decimal):
    pass


decimals = st.decimals() | st.sampled_from(
    [Decimal("-0"), Decimal("sNaN"), Decimal("NaN123"), Decimal("-sNaN5"), Decimal("-Infinity"),
     Decimal("1E+999999"), Decimal("67.60"), Decimal("0E-7")]
)  # fmt: skip
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=4)
    | decimals
    | st.sampled_from([b"1", bytearray(b"2"), Text("t"), Dec("1.5"), 1j, frozenset(), Other(())])
)
keys = st.text(max_size=3) | st.integers() | st.decimals(allow_nan=False) | st.booleans()
values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.lists(kids, max_size=3).map(tuple)
        | st.dictionaries(keys, kids, max_size=3)
    ),
    max_leaves=12,
)


def _outcome(fn: Any, *args: Any) -> tuple[str, str]:
    try:
        return "ok", repr(fn(*args))  # repr: types, signs, exponents, order
    except Exception as e:
        return "raised", type(e).__name__


def _nested(depth: int, leaf: Any) -> Any:
    for i in range(depth):
        leaf = [leaf] if i % 3 == 0 else (leaf,) if i % 3 == 1 else {"k": leaf}
    return leaf


@needs_c
@settings(max_examples=1500, deadline=None)
@given(rows=st.lists(st.lists(values, max_size=5), max_size=4), odd=st.sampled_from(
    [None, "row of another type", "not a list"]))  # fmt: skip
def test_plain_rows_same_and_read_back_as_they_were(rows: list[list[Any]], odd: str | None) -> None:
    """C and Python make the same plain values of rows, or both refuse them (a subclass,
    bytes, a complex number, a row of another type); what they make goes through
    marshal and comes back as the very rows: types, Decimal exponents and signs, -0.0,
    dict order."""
    from kpi_excel import spool as sp

    given_rows: Any = [Row(r) for r in rows]
    if odd == "row of another type":
        given_rows.append(Other(()))
    elif odd == "not a list":
        given_rows = tuple(given_rows)
    py = _outcome(sp.plain_rows, given_rows, Row, Decimal)
    assert _outcome(C.plain_rows, given_rows, Row, Decimal) == py
    if py[0] == "ok":
        plain = marshal.loads(marshal.dumps(C.plain_rows(given_rows, Row, Decimal)))
        back = C.rows_from_plain(plain, Row, Decimal)
        assert all(type(r) is Row for r in back)
        assert repr(back) == repr(given_rows)
        assert _outcome(sp.rows_from_plain, plain, Row, Decimal) == ("ok", repr(given_rows))


plain_values = st.recursive(
    st.none()
    | st.integers()
    | st.text(max_size=3)
    | st.sampled_from([b"1.5", b"-0", b"sNaN", b"x", b"\xe4", b"", b"1E+3", Text("t")]),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.lists(kids, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=2) | st.sampled_from([b"2", b"3.0"]), kids, max_size=2)
    ),
    max_leaves=10,
)


@needs_c
@settings(max_examples=800, deadline=None)
@given(plain=st.lists(st.lists(plain_values, max_size=4) | plain_values, max_size=4))
def test_rows_from_plain_same_on_any_values(plain: list[Any]) -> None:
    """On values no encoder made (text that is not a number, non-ASCII bytes, a row
    that is not a sequence), C and Python give the same rows or fail alike."""
    from kpi_excel import spool as sp

    assert _outcome(C.rows_from_plain, plain, Row, Decimal) == _outcome(
        sp.rows_from_plain, plain, Row, Decimal
    )


@needs_c
@pytest.mark.parametrize("depth", [13, 14, 15, 16, 17, 40, 5000])
def test_plain_values_nest_as_deep_either_way(depth: int) -> None:
    """Both refuse values nested past 16 levels, at the same level, each way (and
    nothing recurses without bound on a deep value)."""
    from kpi_excel import spool as sp

    rows = [Row((_nested(depth, Decimal("1.5")),))]
    assert _outcome(C.plain_rows, rows, Row, Decimal) == _outcome(sp.plain_rows, rows, Row, Decimal)
    plain = [(_nested(depth, b"2.5"),)]
    assert _outcome(C.rows_from_plain, plain, Row, Decimal) == _outcome(
        sp.rows_from_plain, plain, Row, Decimal
    )
    assert _outcome(C.rows_from_plain, plain, int, Decimal)[0] == "raised"


@needs_c
def test_plain_values_no_leak() -> None:
    """Encoding and decoding hold no reference too many, on every path."""
    good = [Row(("a", Decimal("1.50"), [("x", "y", Decimal("-0"))], {"k": None}, 2.5, True))]
    bad = [Row(("a", [1, Text("t")]))]
    undecodable = [("a", [b"1", b"\xe4"])]

    def rounds() -> None:
        for _ in range(2000):
            plain = C.plain_rows(good, Row, Decimal)
            C.rows_from_plain(plain, Row, Decimal)
            _outcome(C.plain_rows, bad, Row, Decimal)
            _outcome(C.rows_from_plain, undecodable, Row, Decimal)
            _outcome(C.plain_rows, [_nested(20, 1)], Row, Decimal)

    _assert_flat(rounds)


@needs_c
def test_score_rows_checks_its_arguments_and_no_leak() -> None:
    """ledger.ScoreRow.rows's C loop refuses what is not a list of 4-tuples or a row
    type, passes errors of its callbacks on, and holds no reference too many."""
    from kpi_excel.ledger import ScoreRow, _decimal_pair, _pair

    heads = [("a", "score", None, None), ("b", "sys", "x", "s"), ("c", "total", None, None)]
    values = {"a": Decimal("87.50"), "b": Decimal("sNaN"), "c": "A"}

    def bad(_v: Any) -> Any:
        raise Stop

    def rounds() -> None:
        for _ in range(2000):
            C.score_rows(ScoreRow, heads[::2], values, 28, Decimal, _decimal_pair, _pair)
            _run(C.score_rows, ScoreRow, heads, values, 28, Decimal, bad, _pair)
            _outcome(C.score_rows, ScoreRow, heads, values, 28, Decimal, _decimal_pair, bad)
            _outcome(C.score_rows, ScoreRow, heads, values, 28, Decimal, lambda v: (1,), _pair)
            _outcome(C.score_rows, ScoreRow, [("a",)], values, 28, Decimal, bad, _pair)
            _outcome(C.score_rows, int, heads, values, 28, Decimal, bad, _pair)

    assert _run(C.score_rows, ScoreRow, heads, values, 28, Decimal, bad, _pair)[0] == "raised"
    assert _outcome(C.score_rows, int, heads, values, 28, Decimal, bad, _pair)[1] == "TypeError"
    assert _outcome(C.score_rows, ScoreRow, [("a",)], values, 28, Decimal, bad, _pair)[1] == (
        "TypeError"
    )
    _assert_flat(rounds)


# -- read_filled (a cell piece read from its form without the value) -----------------

filled_bits = st.lists(
    st.sampled_from(
        [b'A1"', b' s="2"', b' t="s"', b' t="str"', b' t="inlineStr"', b' t="e"', b">",
         b"<v>", b"</v>", b"<t>", b"</t>", b'<t xml:space="preserve">', b"<is>", b"</is>",
         b"<r>", b"</r>", b"<f>B1</f>", b"</c>", b"<c/>", b"</row>", b"1", b"12.5", b"x",
         b"\xe4\xb8\xad", b"\xff", b"&amp;", b"&#49;", b"\r", b"<", b"_x0041_", b"x005F_",
         b"xmlns=", b"http://schemas.openxmlformats.org/spreadsheetml/2006/main", b""]
    ),
    max_size=14,
)  # fmt: skip


def _filled_both(piece: bytes) -> tuple[Any, Any]:
    """The C reading and the Python reference's, each from empty caches."""
    got = []
    for use_c in (True, False):
        fr._PIECES.clear()
        fr._PIECES_NEW.clear()
        try:
            fr.SPEEDUPS = use_c
            one = C.read_filled(piece, fr._FILLED_ENV) if use_c else fr._read_filled(piece)
            # again, with the piece without its text now kept
            two = C.read_filled(piece, fr._FILLED_ENV) if use_c else fr._read_filled(piece)
        finally:
            fr.SPEEDUPS = True
        got.append((one, two, None if one is None else type(one[2])))
    return got[0], got[1]


@needs_c
@settings(max_examples=3000, deadline=None)
@given(bits=filled_bits)
def test_read_filled_same(bits: list[bytes]) -> None:
    piece = b"".join(bits)
    c, python = _filled_both(piece)
    assert c == python


@needs_c
def test_read_filled_examples() -> None:
    """The grid of the reader's own test (every kind of cell, value and text, valid
    and broken UTF-8): C and Python agree, and most pieces are read (not None)."""
    read = 0
    for cell in FILLED_CELLS:
        for value in FILLED_VALUES:
            text = cell.format(value, value)
            for piece in (text.encode(), text.encode().replace(b"x", b"\xff")):
                c, python = _filled_both(piece)
                assert c == python, piece
                read += c[0] is not None
    assert read > 60


@needs_c
def test_read_filled_passes_on_errors() -> None:
    """An odd piece without its text gives None; any other error is raised, as the
    reference raises it; a malformed environment is refused."""
    piece = b'A1"><v>5</v></c>'

    def odd(_p: bytes) -> Any:
        raise fr._Odd

    def stop(_p: bytes) -> Any:
        raise Stop

    assert C.read_filled(piece, ({}, odd, fr._Odd, fr._ESCAPED.search, fr._Raw)) is None
    with pytest.raises(Stop):
        C.read_filled(piece, ({}, stop, fr._Odd, fr._ESCAPED.search, fr._Raw))
    with pytest.raises(TypeError):
        C.read_filled(piece, ({}, odd))
    with pytest.raises(TypeError):
        C.read_filled("text", fr._FILLED_ENV)
    with pytest.raises(TypeError):  # a reading that is not (key, coordinate, raw, ends)
        C.read_filled(piece, ({}, lambda p: (1, 2), fr._Odd, fr._ESCAPED.search, fr._Raw))

    def rounds() -> None:
        for _ in range(2000):
            C.read_filled(piece, ({}, odd, fr._Odd, fr._ESCAPED.search, fr._Raw))
            _run(C.read_filled, piece, ({}, stop, fr._Odd, fr._ESCAPED.search, fr._Raw))
            fr._PIECES.clear()
            C.read_filled(piece, fr._FILLED_ENV)
            C.read_filled(b'A1" t="inlineStr"><is><t>a</t></is></c>', fr._FILLED_ENV)

    _assert_flat(rounds)
