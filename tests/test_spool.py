"""The spool file that keeps a collection's bulky parts out of memory."""

from __future__ import annotations

import pickle
import random
from decimal import Decimal

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
