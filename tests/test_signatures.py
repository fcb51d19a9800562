"""Signature and date cells under the form, checked by collect."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from kpi_excel.collect import collect
from kpi_excel.demo import answers_for, returned_form
from kpi_excel.generate import FormGenerator
from kpi_excel.roster import example_employee


def serial(day: dt.date) -> Decimal:
    return Decimal((day - dt.date(1899, 12, 30)).days)


def _form(tmp_path: Path, sigs: dict) -> list:
    gen = FormGenerator.from_ref("cs_manager_monthly_kpi", "2026-11")
    emp = example_employee(gen.form, name="张伟")
    answers = {**answers_for(gen, emp), **sigs}
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.xlsx").write_bytes(returned_form(gen, emp, answers))
    coll = collect([folder], out=tmp_path / "summary.xlsx", period="2026-11")
    (res,) = coll.files
    return [(i.kind, i.cell, i.message) for i in res.issues]


def test_signed_and_dated_form_has_no_signature_findings(tmp_path: Path):
    day = serial(dt.date(2026, 11, 25))
    issues = _form(tmp_path, {"sig_1": "张伟", "sig_1_date": day, "sig_2": "周建国", "sig_2_date": day})
    assert not [i for i in issues if i[1].startswith("sig_")], issues


def test_missing_and_mismatched_signatures_are_named(tmp_path: Path):
    issues = _form(tmp_path, {"sig_1": "李四", "sig_1_date": serial(dt.date(2026, 10, 2))})
    kinds = {(k, c) for k, c, _ in issues}
    assert ("signature_mismatch", "sig_1") in kinds
    assert ("date_range", "sig_1_date") in kinds       # before the period began
    assert ("signature_missing", "sig_2") in kinds
    msg = next(m for k, c, m in issues if k == "signature_mismatch")
    assert "李四" in msg and "张伟" in msg
