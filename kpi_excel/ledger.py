"""The ledger (台账): an SQLite history of every collected file, score and anomaly.

One database accumulates collections period after period, so the summary can show
each employee's trend. Collecting the same files again changes nothing: a file's
rows are keyed by the SHA-256 of its bytes and the period, and are replaced with
identical rows (only ``first_seen`` is kept from the first time).

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`; a version 1 ledger is upgraded
when opened):

``files``       one row per (sha256, period): what the file is and its verdict
``sources``     one row per (sha256, period, path): where each copy was found
``scores``      one row per (sha256, period, cell): every recomputed cell value
``anomalies``   one row per (sha256, period, seq): every problem found in the file

Numbers are stored as decimal text (exact, as computed) and, in ``number``, as REAL
for convenience in ad-hoc queries. Times are ISO 8601.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, getcontext
from pathlib import Path
from typing import NamedTuple

try:
    from kpi_excel import _speedups as _C
except ImportError:  # no compiler where it was installed: the Python loop runs
    _C = None  # type: ignore[assignment]

__all__ = [
    "SCHEMA_VERSION",
    "SourceRow",
    "ScoreRow",
    "AnomalyRow",
    "FileRow",
    "TrendRow",
    "Ledger",
    "default_path",
]

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    sha256           TEXT NOT NULL,
    period           TEXT NOT NULL,            -- '' when the file could not be identified
    status           TEXT NOT NULL,            -- accepted | warning | rejected
    reason           TEXT NOT NULL DEFAULT '', -- why rejected (first error), or ''
    employee_id      TEXT,
    name             TEXT,
    department       TEXT,
    position         TEXT,
    template_id      TEXT,
    template_version TEXT,
    total            TEXT,                     -- recomputed total (decimal text)
    total_in_file    TEXT,                     -- the total cached in the file
    grade            TEXT,
    pay              TEXT,
    counted          INTEGER NOT NULL DEFAULT 0, -- 1: the return that counts for employee+period
    first_seen       TEXT NOT NULL,
    PRIMARY KEY (sha256, period)
);
CREATE TABLE IF NOT EXISTS sources (
    sha256  TEXT NOT NULL,
    period  TEXT NOT NULL,
    path    TEXT NOT NULL,                     -- folder/file.xlsx or archive.zip!member.xlsx
    size    INTEGER NOT NULL,
    mtime   TEXT NOT NULL,                     -- the file's modification time
    status  TEXT NOT NULL,                     -- a superseded copy is rejected here
    reason  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (sha256, period, path)
);
CREATE TABLE IF NOT EXISTS scores (
    sha256    TEXT NOT NULL,
    period    TEXT NOT NULL,
    cell      TEXT NOT NULL,                   -- defined name: total, sub_x, score_x, ...
    kind      TEXT NOT NULL,                   -- sys | score | weight | weighted | subtotal | total | grade | coef | pay
    indicator TEXT,
    section   TEXT,
    value     TEXT,                            -- decimal text, or the text result
    number    REAL,
    PRIMARY KEY (sha256, period, cell)
) WITHOUT ROWID;                               -- (version 2) the rows are the key's index
CREATE TABLE IF NOT EXISTS anomalies (
    sha256   TEXT NOT NULL,
    period   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    path     TEXT NOT NULL,
    cell     TEXT NOT NULL DEFAULT '',
    address  TEXT NOT NULL DEFAULT '',
    kind     TEXT NOT NULL,
    severity TEXT NOT NULL,                    -- error | warning | info
    message  TEXT NOT NULL,
    PRIMARY KEY (sha256, period, seq)
);
CREATE INDEX IF NOT EXISTS files_by_employee ON files (employee_id, period);
"""


#: the scores table's statement (for the upgrade from version 1)
_SCORES_V2 = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS scores") :]
_SCORES_V2 = _SCORES_V2[: _SCORES_V2.index(";") + 1]


def default_path(summary: Path) -> Path:
    """The ledger beside a summary workbook: ``summary.xlsx`` -> ``summary.sqlite``."""
    return summary.with_suffix(".sqlite")


@dataclass
class SourceRow:
    path: str
    size: int
    mtime: float
    status: str
    reason: str = ""


class ScoreRow(NamedTuple):
    """One computed cell of one form (a tuple: tens of them per form travel and are
    stored, so they are as light as can be).

    ``text`` and ``number`` are the value as the ledger stores it; :meth:`of` works
    them out where the form is checked (in a worker process), so the process writing
    the ledger only writes. Left as None for a value, they are worked out on writing.
    """

    cell: str
    kind: str
    indicator: str | None
    section: str | None
    value: object
    text: str | None = None
    number: float | None = None

    @classmethod
    def of(
        cls, cell: str, kind: str, indicator: str | None, section: str | None, value: object
    ) -> ScoreRow:
        # (tuple.__new__: the named tuple's own __new__ is a Python function)
        row = (cell, kind, indicator, section, value, _text(value), _real(value))
        return tuple.__new__(cls, row)

    @classmethod
    def rows(
        cls, heads: Iterable[tuple[str, str, str | None, str | None]], values: Mapping[str, object]
    ) -> list[ScoreRow]:
        """:meth:`of` for each (cell, kind, indicator, section), its value
        ``values.get(cell)`` (a form's tens of rows in one call; Decimals, the usual
        value, worked out inline as :func:`_text` and :func:`_real` do). The loop runs
        in C where the C part is built (``_speedups.score_rows``), else in Python
        (:meth:`_rows`, its reference)."""
        c = getcontext()
        # a finite Decimal's text without an exponent, of no more digits than the
        # context keeps: normalize() rounds nothing, and its text and number follow
        # from that text (Decimal's float is float of its text)
        most = c.prec if c.Emin <= -(c.prec + 6) and c.Emax >= c.prec else 0
        if _C is not None and type(heads) is list and type(values) is dict:
            return _C.score_rows(cls, heads, values, most, Decimal, _decimal_pair, _pair)  # type: ignore[no-any-return]
        return cls._rows(heads, values, most)

    @classmethod
    def _rows(
        cls,
        heads: Iterable[tuple[str, str, str | None, str | None]],
        values: Mapping[str, object],
        most: int,
    ) -> list[ScoreRow]:
        new, get = tuple.__new__, values.get
        out: list[ScoreRow] = []
        for head in heads:
            v = get(head[0])
            if type(v) is Decimal:
                t = str(v)
                if len(t) <= most and v.is_finite() and "E" not in t:
                    text = t.rstrip("0").rstrip(".") if "." in t else t
                    out.append(new(cls, (*head, v, text, float(t))))
                else:
                    out.append(new(cls, (*head, v, *_decimal_pair(v))))
            else:
                out.append(new(cls, (*head, v, *_pair(v))))
        return out

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return ScoreRow, tuple(self)  # pickled as the plain tuple: ~2x faster

    def params(self) -> tuple[object, ...]:
        """(cell, kind, indicator, section, text, number) as the scores table holds them."""
        if self[5] is None and self[4] is not None:  # text is None only for no value
            return (*self[:4], _text(self[4]), _real(self[4]))
        return (*self[:4], self[5], self[6])


@dataclass
class AnomalyRow:
    path: str
    cell: str
    address: str
    kind: str
    severity: str
    message: str


@dataclass
class FileRow:
    sha256: str
    period: str
    status: str
    reason: str = ""
    employee_id: str | None = None
    name: str | None = None
    department: str | None = None
    position: str | None = None
    template_id: str | None = None
    template_version: str | None = None
    total: Decimal | None = None
    total_in_file: object = None
    grade: str | None = None
    pay: Decimal | None = None
    counted: bool = False
    sources: list[SourceRow] = field(default_factory=list)
    scores: list[ScoreRow] = field(default_factory=list)
    anomalies: list[AnomalyRow] = field(default_factory=list)


@dataclass(frozen=True)
class TrendRow:
    period: str
    employee_id: str
    name: str
    department: str
    total: Decimal


def _decimal_pair(v: Decimal) -> tuple[str, float]:
    """(text, number) of a Decimal as :func:`_text` and :func:`_real` make them."""
    return format(v.normalize(), "f"), float(v)


def _pair(v: object) -> tuple[str | None, float | None]:
    return _text(v), _real(v)


def _text(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, Decimal):
        return format(v.normalize(), "f")
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _real(v: object) -> float | None:
    if type(v) is Decimal:
        return float(v)  # type: ignore[arg-type]
    if isinstance(v, bool):
        return None
    if isinstance(v, Decimal | int | float):
        return float(v)
    return None


def _file_params(r: FileRow, seen: str) -> tuple[object, ...]:
    return (
        r.sha256,
        r.period,
        r.status,
        r.reason,
        r.employee_id,
        r.name,
        r.department,
        r.position,
        r.template_id,
        r.template_version,
        _text(r.total),
        _text(r.total_in_file),
        r.grade,
        _text(r.pay),
        int(r.counted),
        seen,
    )


def _order_free(rows: list[FileRow]) -> bool:
    """Whether writing ``rows`` kind by kind gives what writing them one after another
    gives: each (sha256, period) once (a later row would replace an earlier one's
    anomalies), and no employee and period with a counted row and any other row (a
    counted row un-counts the others, which a later row would write again)."""
    keys = {(r.sha256, r.period) for r in rows}
    if len(keys) != len(rows):
        return False
    counted = {(r.employee_id, r.period) for r in rows if r.counted and r.employee_id and r.period}
    if not counted:
        return True
    people = [(r.employee_id, r.period) for r in rows if (r.employee_id, r.period) in counted]
    return len(people) == len(counted)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).replace(microsecond=0).isoformat()


class Ledger:
    """The SQLite ledger. Use as a context manager; every :meth:`record` is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path))
        # pages of 16 KB for a new ledger (an existing one keeps its own: SQLite sets
        # the size when the first table is made): a collection commits its whole
        # ledger at once, and larger pages write it in a quarter of the writes (2,000
        # forms: the commit ~20 -> ~11 ms), for the same work inserting
        self.conn.execute("PRAGMA page_size = 16384")
        self._staged: set[tuple[str, str]] = set()  # (sha256, period) of staged scores
        self.conn.execute("PRAGMA foreign_keys = ON")
        # a collection writes its scores at places spread over the whole table (keyed
        # by the files' SHA-256): a page cache of 64 MB (taken only as pages are used)
        # keeps them in memory instead of reading them back (10,000 forms: ~40% less
        # time writing scores)
        self.conn.execute("PRAGMA cache_size = -65536")
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, SCHEMA_VERSION):
            self.conn.close()
            from kpi_excel.errors import KpiExcelError

            raise KpiExcelError(
                f"台账 {path} 的格式版本为 {version}，本工具只认识 1 到 {SCHEMA_VERSION}；"
                "请换一个台账文件（--db）"
            )
        if version == 1:
            try:
                self._upgrade_from_1()
            except sqlite3.Error as e:
                self.conn.close()
                from kpi_excel.errors import KpiExcelError

                raise KpiExcelError(
                    f"台账 {path} 从格式版本 1 升级到 {SCHEMA_VERSION} 时出错（{e}），台账未改动；"
                    "请检查磁盘空间和文件权限后重试，或换一个台账文件（--db）"
                ) from None
        with self.conn:
            self.conn.executescript(_SCHEMA)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _upgrade_from_1(self) -> None:
        """Version 1 kept the scores in a table with a rowid beside the key's index
        (each row stored twice, the file's 64-character digest in both): version 2's
        table is the index alone (~40% smaller, quicker to write). The rows are copied
        as they are, in one transaction: a failure leaves version 1 untouched."""
        c = self.conn
        c.execute("BEGIN")
        try:
            c.execute(_SCORES_V2.replace("IF NOT EXISTS scores", "scores_v2"))
            c.execute("INSERT INTO scores_v2 SELECT * FROM scores")
            c.execute("DROP TABLE scores")
            c.execute("ALTER TABLE scores_v2 RENAME TO scores")
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def stage_rows(self, sha256: str, period: str, rows: Sequence[tuple[object, ...]]) -> None:
        """Write one file's rows of the scores table (``(sha256, period,
        *ScoreRow.params())``) ahead of :meth:`record`, as files are checked.

        They are written in the transaction :meth:`record` then commits: nothing is
        seen in the ledger before the collection is recorded whole, and a collection
        that stops half-way leaves the ledger as it was (closing rolls back). A file's
        scores depend on its bytes only, so copies of a file stage them once.
        """
        key = (sha256, period)
        if key in self._staged:
            return
        self._staged.add(key)
        self._write_rows(key, rows)

    @property
    def staged(self) -> frozenset[tuple[str, str]]:
        """(sha256, period) of the files whose scores are staged for the next record."""
        return frozenset(self._staged)

    def _write_scores(self, key: tuple[str, str], scores: Iterable[ScoreRow]) -> None:
        self._write_rows(key, [(*key, *s.params()) for s in scores])

    def _write_rows(self, key: tuple[str, str], rows: Sequence[tuple[object, ...]]) -> None:
        """Replace a file's rows of the scores table."""
        c = self.conn
        c.execute("DELETE FROM scores WHERE sha256 = ? AND period = ?", key)
        c.executemany("INSERT INTO scores VALUES (?,?,?,?,?,?,?,?)", rows)

    _UPSERT_FILE = """INSERT INTO files (sha256, period, status, reason, employee_id, name,
                           department, position, template_id, template_version, total,
                           total_in_file, grade, pay, counted, first_seen)
                       VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                       ON CONFLICT (sha256, period) DO UPDATE SET
                           status=excluded.status, reason=excluded.reason,
                           employee_id=excluded.employee_id, name=excluded.name,
                           department=excluded.department, position=excluded.position,
                           template_id=excluded.template_id,
                           template_version=excluded.template_version,
                           total=excluded.total, total_in_file=excluded.total_in_file,
                           grade=excluded.grade, pay=excluded.pay, counted=excluded.counted"""
    # a newer return collected later replaces the one counted before
    _UNCOUNT = "UPDATE files SET counted = 0 WHERE period = ? AND employee_id = ? AND sha256 <> ?"
    _UPSERT_SOURCE = """INSERT INTO sources (sha256, period, path, size, mtime, status, reason)
                           VALUES (?,?,?,?,?,?,?)
                           ON CONFLICT (sha256, period, path) DO UPDATE SET
                               size=excluded.size, mtime=excluded.mtime,
                               status=excluded.status, reason=excluded.reason"""
    _DROP_ANOMALIES = "DELETE FROM anomalies WHERE sha256 = ? AND period = ?"
    _ADD_ANOMALY = "INSERT INTO anomalies VALUES (?,?,?,?,?,?,?,?,?)"

    def record(self, rows: Iterable[FileRow], now: dt.datetime | None = None) -> None:
        """Write (or rewrite identically) the rows of one collection (and commit the
        scores staged for it).

        Each kind of row is written in one batch when the order of the rows cannot
        matter: every (sha256, period) once, and no employee and period with a counted
        row and another row. Otherwise row by row, in order (:meth:`_record_in_order`,
        the reference): then a later row can undo what an earlier one did."""
        seen = (now or dt.datetime.now()).replace(microsecond=0).isoformat()
        rows = list(rows)
        c = self.conn
        with c:
            if _order_free(rows):
                self._record_batched(rows, seen)
            else:
                self._record_in_order(rows, seen)
        self._staged.clear()

    def _record_batched(self, rows: list[FileRow], seen: str) -> None:
        c = self.conn
        c.executemany(self._UPSERT_FILE, [_file_params(r, seen) for r in rows])
        c.executemany(
            self._UNCOUNT,
            [
                (r.period, r.employee_id, r.sha256)
                for r in rows
                if r.counted and r.employee_id and r.period
            ],
        )
        c.executemany(
            self._UPSERT_SOURCE,
            [
                (r.sha256, r.period, s.path, s.size, _iso(s.mtime), s.status, s.reason)
                for r in rows
                for s in r.sources
            ],
        )
        for r in rows:
            key = (r.sha256, r.period)
            if key not in self._staged:
                self._write_scores(key, r.scores)
        c.executemany(self._DROP_ANOMALIES, [(r.sha256, r.period) for r in rows])
        c.executemany(
            self._ADD_ANOMALY,
            [
                (r.sha256, r.period, i, a.path, a.cell, a.address, a.kind, a.severity, a.message)
                for r in rows
                for i, a in enumerate(r.anomalies, 1)
            ],
        )

    def _record_in_order(self, rows: list[FileRow], seen: str) -> None:
        c = self.conn
        for r in rows:
            key = (r.sha256, r.period)
            c.execute(self._UPSERT_FILE, _file_params(r, seen))
            if r.counted and r.employee_id and r.period:
                c.execute(self._UNCOUNT, (r.period, r.employee_id, r.sha256))
            for s in r.sources:
                c.execute(
                    self._UPSERT_SOURCE,
                    (*key, s.path, s.size, _iso(s.mtime), s.status, s.reason),
                )
            if key not in self._staged:
                self._write_scores(key, r.scores)
            c.execute(self._DROP_ANOMALIES, key)
            c.executemany(
                self._ADD_ANOMALY,
                [
                    (*key, i, a.path, a.cell, a.address, a.kind, a.severity, a.message)
                    for i, a in enumerate(r.anomalies, 1)
                ],
            )

    def counts(self) -> dict[str, int]:
        """Rows per table (used to show a collection is idempotent)."""
        return {
            t: self.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608 - fixed names
            for t in ("files", "sources", "scores", "anomalies")
        }

    def periods(self) -> list[str]:
        rows = self.conn.execute(
            "SELECT DISTINCT period FROM files WHERE counted = 1 AND period <> '' ORDER BY period"
        )
        return [r[0] for r in rows]

    def trend(self, periods: Sequence[str] | None = None) -> list[TrendRow]:
        """Each counted return's total, by period (accepted and accepted-with-warnings only)."""
        rows = self.conn.execute(
            """SELECT period, employee_id, COALESCE(name, ''), COALESCE(department, ''), total
               FROM files
               WHERE counted = 1 AND status IN ('accepted', 'warning') AND total IS NOT NULL
               ORDER BY period, department, employee_id"""
        ).fetchall()
        out = [TrendRow(p, e, n, d, Decimal(t)) for p, e, n, d, t in rows]
        if periods is not None:
            keep = set(periods)
            out = [r for r in out if r.period in keep]
        return out
