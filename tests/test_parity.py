"""Zero mismatches between LibreOffice and the Python evaluator.

For every rule kind (``tests/data/all_rule_kinds.yaml``) and every built-in template,
random boundary-heavy inputs are written with the emitted formulas (and wrong cached
values, so nothing passes by accident), recalculated by LibreOffice headless with
``calculateAll()``, and compared cell by cell with :func:`kpi_excel.score.evaluate`.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import ROOT, builtin_template_paths
from parity import expected, random_values, same, write_parity_workbook

from kpi_excel import _lo
from kpi_excel.score import compile_form
from kpi_excel.spec.load import load_form

FORMS_PER_TEMPLATE = 24


def _sources() -> list[Path]:
    return [ROOT / "tests" / "data" / "all_rule_kinds.yaml", *builtin_template_paths()]


@pytest.mark.engine
def test_engine_parity(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    jobs, cases = [], []
    for src in _sources():
        cf = compile_form(load_form(src))
        count = FORMS_PER_TEMPLATE * (4 if src.name == "all_rule_kinds.yaml" else 1)
        for k in range(count):
            values = random_values(cf, rng, dirty=k % 2 == 0)
            path = tmp_path / "in" / f"{cf.form.id}_{k:03d}.xlsx"
            path.parent.mkdir(exist_ok=True)
            write_parity_workbook(cf, values, path)
            jobs.append(_lo.Job(src=path, fills={}, read=[c.name for c in cf.cells]))
            cases.append((cf, values, path))
    results = _lo.recalc(jobs, tmp_path / "out")
    assert len(results) == len(jobs), "LibreOffice returned fewer files than it was given"

    mismatches = []
    for (cf, values, path), res in zip(cases, results, strict=True):
        assert not getattr(res, "error", None), f"{path.name}: {res.error}"
        want = expected(cf, values)
        for name, py in want.items():
            lo = res.values.get(name)
            if not same(py, lo):
                inputs = {k: v for k, v in values.items() if v is not None}
                mismatches.append(f"{path.name} {name}: python={py!r} libreoffice={lo!r} inputs={inputs}")
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches[:30])
