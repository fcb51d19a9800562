"""One error hierarchy, rooted in :class:`KpiExcelError`.

Messages are written for the person who has to act on them (HR staff, in Chinese),
and say where the problem is (file, YAML path and line, or sheet cell) and what to do.
"""

from __future__ import annotations

__all__ = [
    "KpiExcelError",
    "SpecError",
    "RuleError",
    "RosterError",
    "FormError",
    "Problem",
]

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One located problem: where it is and what is wrong (and what to do)."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class KpiExcelError(Exception):
    """Base of every error kpi-excel raises on purpose (bad input, not a bug)."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        self.problems = list(problems or [])
        super().__init__(message)

    def report(self) -> str:
        """The full message: the summary line, then one line per problem."""
        lines = [str(self)]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class SpecError(KpiExcelError):
    """A form template (YAML spec) is invalid."""


class RuleError(KpiExcelError):
    """A scoring rule or custom expression cannot be understood."""


class RosterError(KpiExcelError):
    """A roster or targets file has problems; nothing was written."""


class FormError(KpiExcelError):
    """A returned workbook cannot be read as a kpi-excel form."""
