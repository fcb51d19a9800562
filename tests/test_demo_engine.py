"""The demo's returns filled through LibreOffice, as a user would, then collected.

The demo writes its returned forms with the Python engine's values. Here the same
answers are typed into the demo's blank forms by a real spreadsheet engine (UNO, by
defined name), recalculated and saved by it, and collected: every form must be
accepted with the same totals, and one employee's numbers are worked out by hand.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from conftest import ROOT

from kpi_excel import _lo
from kpi_excel.collect import collect
from kpi_excel.demo import _header_dates, answers_for, demo_command
from kpi_excel.generate import FormGenerator, form_filename
from kpi_excel.roster import load_roster

PERIOD = "2026-11"
ROSTER = ROOT / "samples" / "roster.xlsx"
# clean employees of every template in the demo
PEOPLE = {
    "cs_manager_monthly_kpi": ["E1001", "E1003"],
    "cs_dept_manager_monthly_score": ["E1010"],
    "customer_manager_kpi_scale": ["E1014"],
    "store_customer_work": ["E1023"],
    "decoration_customer_manager": ["E1035"],
}


def _typed(v: object) -> object:
    return float(v) if isinstance(v, Decimal) else v


@pytest.mark.engine
def test_demo_answers_typed_into_libreoffice(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    assert demo_command(demo, progress=False) == 0
    jobs, expected = [], {}
    for tid, ids in PEOPLE.items():
        gen = FormGenerator.from_ref(tid, PERIOD, company="华信客户服务有限公司")
        for emp in load_roster(ROSTER, gen.form):
            if emp.employee_id not in ids:
                continue
            answers = {**answers_for(gen, emp), **_header_dates(gen, emp)}
            name = form_filename(PERIOD, emp)
            jobs.append(
                _lo.Job(
                    demo / "forms" / name,
                    fills={k: _typed(v) for k, v in answers.items()},
                    read=["total"],
                )
            )
            expected[emp.employee_id] = name
    results = _lo.recalc(jobs, tmp_path / "lo")
    assert len(results) == len(jobs) == sum(len(v) for v in PEOPLE.values())
    for r in results:
        assert r.error is None, r.error

    coll = collect([tmp_path / "lo"], out=tmp_path / "s.xlsx", period=PERIOD)
    demo_totals = {
        f.employee_id: f.total for f in collect([demo / "returned"], write=False, period=PERIOD).files
    }
    by_id = {f.employee_id: f for f in coll.files}
    assert set(by_id) == set(expected)
    for eid, f in by_id.items():
        assert f.status == "accepted", (eid, [i.message for i in f.issues])
        assert f.total == f.total_in_file == demo_totals[eid], eid

    # E1001 by hand (targets from the roster: sales 80 万元, satisfaction 4.5, 5
    # trainings, 12 months; answers: 74.12 万元, 4.68, 3 late, 10 of 11 resolved, 5
    # trainings done, 11.86 months):
    #   sales      74.12/80 = 92.65%: 100 - 7.35 x 3.3 = 75.745 -> 75.75; x 65% = 49.24
    #   satisfied  4.68 - 4.5 = 0.18: 100 + 0.18 x 50 = 109;        x 5%  =  5.45
    #   timely     3 late: 100 - 15 = 85;                            x 5%  =  4.25
    #   resolved   10/11 = 90.91%: tier >=90% = 80;                  x 15% = 12.00
    #   training   5 of 5: 100;                                      x 5%  =  5.00
    #   years      11.86 - 12 = -0.14: 100 - 0.7 = 99.3;             x 5%  =  4.965 -> 4.97
    #   total 49.24 + 21.70 + 9.97 = 80.91 -> grade C (>=70), coefficient 0.8
    e1001 = by_id["E1001"]
    assert e1001.total == Decimal("80.91")
    assert e1001.grade == "C"
    scores = {s.cell: s.value for s in e1001.scores}
    assert scores["ws_sales_rate"] == Decimal("49.24")
    assert scores["ws_service_years"] == Decimal("4.97")
    assert scores["sub_service_mgmt"] == Decimal("21.70")
