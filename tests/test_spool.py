"""The spool file that keeps a collection's bulky parts out of memory."""

from __future__ import annotations

import pickle
import random
from decimal import Decimal
from typing import Any

import pytest

from kpi_excel import spool as sp


@pytest.mark.parametrize("pread", [True, False], ids=["pread", "seek-read"])
def test_reads_interleaved_with_writes(monkeypatch: pytest.MonkeyPatch, pread: bool) -> None:
    """Parts read back while others are still being written come back whole and in
    place, whether the system reads at an offset or through the buffered file."""
    if pread and not sp._PREAD:
        pytest.skip("no positional reads on this system")
    monkeypatch.setattr(sp, "_PREAD", pread)
    rng = random.Random(7)
    spool = sp._Spool()
    kept: list[tuple[int, int, object]] = []
    for i in range(2000):
        obj = [Decimal(rng.randint(0, 10**6)) / 100 for _ in range(rng.randint(0, 80))] + [i]
        data = pickle.dumps(obj)
        kept.append((spool.put(data), len(data), obj))
        if rng.random() < 0.3:
            at, size, want = rng.choice(kept)
            assert spool.get(at, size) == want
    for at, size, want in kept:
        assert spool.get(at, size) == want


class _Result:
    def __init__(self) -> None:
        self.lines = [("a", Decimal("1.5"))]
        self.scores: list[object] = []
        self.as_typed = {"total": Decimal("99.5")}
        self.coords = {"total": "K12"}
        self.status = "accepted"


def test_pack_keeps_parts_apart_and_empties_them() -> None:
    r = sp.pack(_Result())
    assert (r.lines, r.scores, r.as_typed, r.coords) == ([], [], {}, {})
    assert sp.pack(r) is r  # packing twice keeps the first packing
    again = pickle.loads(pickle.dumps(r))
    seen: list[object] = []
    (got,) = sp.spool_results([again], seen.append)
    assert seen == [got]
    assert list(got.lines) == [("a", Decimal("1.5"))] and len(got.lines) == 1
    assert got.scores == []  # an empty part stays a plain empty list
    assert dict(got.as_typed) == {"total": Decimal("99.5")} and got.coords["total"] == "K12"
    assert "_packed" not in got.__dict__


def test_parts_packed_elsewhere_read_back() -> None:
    """A result packed in a worker (and pickled across) is spooled as its bytes and
    its parts read back equal."""
    r = _Result()
    r.scores = [("total", Decimal("88.50")), ("grade", "B")]
    (got,) = sp.spool_results([pickle.loads(pickle.dumps(sp.pack(r)))])
    assert list(got.scores) == [("total", Decimal("88.50")), ("grade", "B")]
    (empty,) = sp.spool_results([_Result()])
    assert empty.scores == []


def test_collect_imports_what_checking_needs_and_not_the_writer() -> None:
    """Forked workers inherit what the collect module imported: checking a form needs
    nothing more, and never the workbook writer."""
    import subprocess
    import sys

    code = (
        "import sys, kpi_excel.collect as c\n"
        "need = ['kpi_excel.fastread', 'kpi_excel.spool', 'kpi_excel.spec.load', 'kpi_excel.spec.text']\n"
        "never = ['xlsxwriter', 'kpi_excel.fastwrite', 'kpi_excel.render', 'openpyxl']\n"
        "print([m for m in need if m not in sys.modules], [m for m in never if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[] []"


def _lines_and_scores() -> tuple[list[object], list[object]]:
    from kpi_excel.collect import IndicatorLine
    from kpi_excel.ledger import ScoreRow

    lines = [
        IndicatorLine("sales", "销售额", "s1", "业绩", Decimal("110.0"), Decimal("99.20"),
                      [("act_sales", "实际", Decimal("99.20"))], Decimal("67.60"),
                      {"HR复核": None, "主管": Decimal("-0")}, Decimal("67.60"),
                      Decimal("0.65"), Decimal("43.94"), Decimal("100"), ""),
        IndicatorLine("na", "不适用项", "s1", "业绩", None, "是", [], "不适用", {}, None,
                      Decimal("0.05"), None, Decimal("1E+2"), "按档"),
    ]  # fmt: skip
    scores = [
        ScoreRow.of("total", "total", None, None, Decimal("88.50")),
        ScoreRow.of("grade", "grade", None, None, "A"),
        ScoreRow("raw", "score", "x", "s", Decimal("1.50")),
        ScoreRow.of("flag", "sys", "x", "s", True),
    ]
    return lines, scores


def _spooled(lines: list[object], scores: list[object]) -> tuple[Any, Any]:
    r = _Result()
    r.lines, r.scores = list(lines), list(scores)
    packed = pickle.loads(pickle.dumps(sp.pack(r)))
    data = packed.__dict__["_packed"]
    (got,) = sp.spool_results([packed])
    return got, data


def test_lines_and_scores_read_back_as_they_were() -> None:
    """The 明细 lines and the scores travel as plain values when the C part is built
    (else pickled) and read back as the very rows: their types, Decimal exponents and
    signs, None, text, booleans."""
    lines, scores = _lines_and_scores()
    got, (data, sizes, _counts) = _spooled(lines, scores)
    assert repr(list(got.lines)) == repr(lines) and repr(list(got.scores)) == repr(scores)
    assert [type(x) for x in got.lines] == [type(x) for x in lines]
    assert [type(x) for x in got.scores] == [type(x) for x in scores]
    firsts = {data[:1], data[sizes[0] : sizes[0] + 1]}
    assert firsts == ({b"R"} if sp._C is not None else {b"\x80"})


class Text(str):
    __slots__ = ()


def test_a_row_holding_anything_else_is_pickled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A row with a value plain values do not keep (here a str subclass, and bytes,
    which would read back as a Decimal) is pickled, and so is every part where the C
    part is not built: each reads back equal."""
    lines, scores = _lines_and_scores()
    odd = [*scores, type(scores[0])("odd", "sys", None, None, Text("x")), scores[0]._replace(
        value=b"1.5")]  # fmt: skip
    got, (data, sizes, _c) = _spooled(lines, odd)
    assert data[sizes[0] : sizes[0] + 1] == b"\x80"
    assert repr(list(got.scores)) == repr(odd)
    monkeypatch.setattr(sp, "_C", None)
    got, (data, sizes, _c) = _spooled(lines, scores)
    assert data[:1] == b"\x80" and data[sizes[0] : sizes[0] + 1] == b"\x80"
    assert repr(list(got.lines)) == repr(lines) and repr(list(got.scores)) == repr(scores)
