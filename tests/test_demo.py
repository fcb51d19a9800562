"""The README's main job: `kpi-excel demo` end to end on the bundled samples."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest
import yaml
from conftest import ROOT

from kpi_excel.demo import demo_command

# what each deliberate problem must look like on the 异常 sheet
EXPECTED_KIND = {
    "fullwidth": "text_normalised",
    "text_in_number": "text_normalised",
    "overwritten_formula": "formula_overwritten",
    "locked_edit": "locked_changed",
    "duplicate": "duplicate",
    "wrong_period": "wrong_period",
    "stale": "stale_value",
    "blank_required": "required",
    "unsigned": "signature_missing",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "kpi-demo"
    assert demo_command(out, progress=False) == 0
    return out


def rows(path: Path, sheet: str) -> list[dict]:
    ws = openpyxl.load_workbook(path, read_only=True)[sheet]
    it = ws.iter_rows(values_only=True)
    head = next(it)
    return [dict(zip(head, r, strict=False)) for r in it]


def test_every_deliberate_problem_is_named(demo: Path):
    conf = yaml.safe_load((ROOT / "samples" / "problems.yaml").read_text(encoding="utf-8"))
    anomalies = rows(demo / "summary.xlsx", "异常")
    missing = {r["工号"] for r in rows(demo / "summary.xlsx", "未交")}
    for p in conf["problems"]:
        if p["kind"] == "missing":
            assert p["employee"] in missing
            continue
        kinds = {a["类型"] for a in anomalies if a["工号"] == p["employee"]}
        assert EXPECTED_KIND[p["kind"]] in kinds, (p, kinds)


def test_every_file_is_accounted_for(demo: Path):
    returned = sorted(p for p in (demo / "returned").iterdir())
    listed = rows(demo / "summary.xlsx", "文件")
    assert len(listed) == len(returned)
    statuses = {Path(r["文件"]).name: r["状态"] for r in listed}
    assert set(statuses) == {p.name for p in returned}
    assert statuses["会议纪要.xlsx"] == "退回"
    assert statuses["Thumbs.db"].startswith("跳过")


def test_clean_returns_agree_with_their_own_cells(demo: Path):
    summary = rows(demo / "summary.xlsx", "汇总")
    assert len(summary) >= 30
    clean = [r for r in summary if r["状态"] == "通过"]
    assert len(clean) >= 20
    for r in clean:
        assert r["重算总分"] == r["表内总分"], r
        assert r["等级"]


def _dump(db: Path) -> dict[str, list[tuple]]:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        con.close()


def test_demo_runs_again_in_place(demo: Path):
    # the same folder again: same files, byte for byte, so the ledger changes nothing
    before = _dump(demo / "ledger.sqlite")
    hashes = {p.name: p.read_bytes() for p in (demo / "returned").iterdir()}
    assert demo_command(demo, progress=False) == 0
    assert {p.name: p.read_bytes() for p in (demo / "returned").iterdir()} == hashes
    assert _dump(demo / "ledger.sqlite") == before
