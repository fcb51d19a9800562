"""The command line contract: verbs, output shapes, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, builtin_template_paths

from kpi_excel.cli import main

VERBS = ["templates", "describe", "lint", "generate", "collect", "recalc", "demo"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kpi_excel", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_templates_lists_all_eleven_forms(capsys):
    assert main(["templates"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(builtin_template_paths()) == 11
    ids = [line.split("\t")[0] for line in lines]
    titles = [line.split("\t")[1] for line in lines]
    assert "cs_manager_monthly_kpi" in ids
    assert "客服经理岗位月度绩效考核表KPI" in titles
    assert "客服部经理考核评分表(月度)" in titles


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb):
    res = run(verb, "--help")
    assert res.returncode == 0, res.stderr
    assert "usage:" in res.stdout


def test_describe_json_names_every_input_cell(capsys):
    assert main(["describe", "cs_manager_monthly_kpi", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["id"] == "cs_manager_monthly_kpi"
    sales = data["sections"][0]["indicators"][0]
    assert sales["name"] == "销售收入计划完成率"
    assert sales["weight"] == 0.65
    assert sales["rule"]["kind"] == "linear"
    names = {i["name"] for i in sales["inputs"]}
    assert names == {"in_sales_rate_target", "in_sales_rate_actual", "in_sales_rate_hr"}
    assert sales["formula"].startswith("=IF(AND(ISNUMBER(in_sales_rate_actual)")
    assert any(c["name"] == "total" for c in data["computed"])


def test_describe_text(capsys):
    assert main(["describe", "cs_dept_manager"]) == 0
    out = capsys.readouterr().out
    assert "主动性" in out and "in_" in out


def test_lint_exit_codes(capsys):
    assert main(["lint", *map(str, builtin_template_paths())]) == 0
    gap = ROOT / "tests" / "data" / "cs_dept_manager_monthly_score_seed_gap.yaml"
    assert main(["lint", str(gap)]) == 1
    assert "80 到 85" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2():
    res = run("describe", "no_such_template")
    assert res.returncode == 2
    assert "找不到模板" in res.stderr
    assert "Traceback" not in res.stderr


def test_broken_template_never_tracebacks(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: Bad Id\ntitle: x\n", encoding="utf-8")
    res = run("lint", str(bad))
    assert res.returncode == 1
    assert "Traceback" not in res.stdout + res.stderr
    assert "bad.yaml" in res.stdout
