"""LibreOffice headless harness: recalculate, convert to PDF, run macros (private).

LibreOffice is the independent spreadsheet engine we use as an oracle: fill a form's
input cells as a person would, let a real engine recalculate every formula, read the
results back and compare them with what kpi-excel computed in Python.

The project's Python usually cannot ``import uno`` (Debian's python3-uno is built for
``/usr/bin/python3``), so the UNO work is done by ``_lo_worker.py`` run under a
Python that can, exchanging JSON files. This module owns the soffice processes: one
per batch of at most 200 files, each with its own fresh profile directory and pipe
name, started in its own process group and stopped by that pid/group only.

Measured costs (LibreOffice 7.4.7 from Debian 12, 2 cores; tiny 2-sheet workbooks):

* soffice start with a fresh profile until the UNO bridge answers: ~1.0-1.3 s;
  quitting it ~0.1 s. A whole 1-file ``recalc`` call: ~1.4-1.7 s.
* per file in a batch (load hidden + fill + calculateAll + store xlsx + read back):
  ~0.2 s for the first file (warm-up), then ~0.07-0.08 s. 50 files: ~5.5 s,
  200 files: ~16 s (one soffice).
* ``convert_pdf``: ~1.5 s for one file, ~3.5 s for 50.

So always batch: 200 forms in one call cost ~16 s, not 200 x 1.5 s.

LibreOffice behaviour worth knowing (checked by tests/test_lo_harness.py):

* xlsx files are NOT recalculated on load (OOXMLRecalcMode default "never"): stale
  cached ``<v>`` values are shown and printed (``--convert-to pdf`` renders them) until
  ``calculateAll()``; formula cells with no cached value (openpyxl output) are computed.
* ``setString`` never parses: "八十" and "80" stay text. Like Excel, ``="80"*1`` is 80
  and ``="八十"*1`` is #VALUE!.
* A formula returning "" reads back as "" (a text result), an empty cell as None,
  TRUE/FALSE as 1.0/0.0; errors are Excel-spelled ("#DIV/0!", "#NAME?", "#N/A").
* The UNO API ignores sheet protection: a fill into a locked cell is written. Saving
  keeps protection, unlocked styles and defined names.
* Headless LibreOffice swallows Basic runtime errors (``invoke()`` returns normally);
  see :func:`run_macro` for how they are trapped. An XlsxWriter ``insert_button`` is
  imported as a form CommandButton; its macro binding survives only if the file has
  a vbaProject.bin (it then reads ``VBAProject.Module1.<macro>``). Files that
  LibreOffice saved keep vbaProject.bin, but their buttons are rewritten (x14
  ``<controls>`` plus a zero-size drawing anchor) and LibreOffice itself no longer
  finds them on reopening: treat saved copies as oracle output, never as deliverables.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

__all__ = [
    "BATCH_LIMIT",
    "Job",
    "LibreOfficeError",
    "Result",
    "available",
    "button_macros",
    "convert_pdf",
    "find_soffice",
    "find_uno_python",
    "recalc",
    "run_macro",
]

#: Most files handed to one soffice process (``--convert-to`` is known to stop silently,
#: still exiting 0, after ~250 files).
BATCH_LIMIT = 200

_WORKER = Path(__file__).with_name("_lo_worker.py")
_CONNECT_TIMEOUT = 30.0
_EXCEL_EPOCH = _dt.datetime(1899, 12, 30)

# Seeded into every fresh profile: no lock files next to the documents we open (they
# may be read-only or shared with other runs), and keep Excel's cached values on load
# (the default; we recalculate explicitly with calculateAll()).
_PROFILE_XCU = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry"
 xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="UseDocumentOOoLockFile" oor:op="fuse"><value>false</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="UseDocumentSystemFileLocking" oor:op="fuse"><value>false</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="UseLocking" oor:op="fuse"><value>false</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="FirstRun" oor:op="fuse"><value>false</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="ShowTipOfTheDay" oor:op="fuse"><value>false</value></prop></item>
<item oor:path="/org.openoffice.Office.Recovery/AutoSave"><prop oor:name="Enabled" oor:op="fuse"><value>false</value></prop></item>
<item oor:path="/org.openoffice.Office.Recovery/RecoveryInfo"><prop oor:name="Enabled" oor:op="fuse"><value>false</value></prop></item>
</oor:items>
"""


class LibreOfficeError(RuntimeError):
    """LibreOffice could not be found, started, reached, or did not do its job."""


@dataclass
class Job:
    """One workbook to open, fill, recalculate, save and read back.

    ``fills`` maps workbook-level defined names to what a person would type:
    int/float/Decimal -> number, str -> text (never parsed: "八十" and "80" stay text),
    None -> clear the cell, bool -> 1/0, date/datetime -> Excel serial number.
    ``read`` lists defined names whose values to read after recalculation.
    ``macros`` opens the file with macro execution allowed (default: never run macros).
    ``out_name`` saves under another file name than ``src``'s (e.g. several fills of
    one template in one batch).
    """

    src: Path
    fills: dict[str, object] = field(default_factory=dict)
    read: list[str] = field(default_factory=list)
    macros: bool = False
    out_name: str | None = None


@dataclass
class Result:
    """What came back for one :class:`Job`.

    ``values[name]`` is a float (number), str (text; a formula giving "" reads as ""),
    None (empty cell) or, for a formula error, the Excel spelling such as "#DIV/0!",
    which is then also in ``errors[name]``. A fill or read that failed (unknown name)
    is in ``errors`` too, as "fill failed: ..." / "read failed: ...". ``error`` is set when the whole file failed (could not be
    loaded or saved, or LibreOffice crashed on it); ``out`` is None then.
    """

    src: Path
    out: Path | None
    values: dict[str, float | str | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """The file was loaded, recalculated and saved (see ``errors`` per name)."""
        return self.error is None


# ---------------------------------------------------------------- discovery


def _which_all(candidates: Iterable[str | os.PathLike[str] | None]) -> list[str]:
    seen: list[str] = []
    for c in candidates:
        if not c:
            continue
        p = shutil.which(str(c)) if os.sep not in str(c) else str(c)
        if p and os.path.isfile(p) and os.access(p, os.X_OK) and p not in seen:
            seen.append(p)
    return seen


@lru_cache(maxsize=1)
def find_soffice() -> str | None:
    """Path of the soffice launcher (``$KPI_EXCEL_SOFFICE`` wins), or None."""
    found = _which_all(
        [
            os.environ.get("KPI_EXCEL_SOFFICE"),
            "soffice",
            "libreoffice",
            "/usr/lib/libreoffice/program/soffice",
            "/opt/libreoffice/program/soffice",
            "/Applications/LibreOffice.app/Contents/MacOS/soffice",
        ]
    )
    return found[0] if found else None


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV"):
        env.pop(k, None)
    return env


def _imports_uno(python: str) -> bool:
    try:
        r = subprocess.run(
            [python, "-I", "-c", "import uno"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            env=_clean_env(),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


@lru_cache(maxsize=1)
def find_uno_python() -> str | None:
    """A Python that can ``import uno`` (``$KPI_EXCEL_UNO_PYTHON`` wins), or None."""
    soffice = find_soffice()
    program_dir = Path(os.path.realpath(soffice)).parent if soffice else None
    candidates = [
        os.environ.get("KPI_EXCEL_UNO_PYTHON"),
        "/usr/bin/python3",
        program_dir / "python" if program_dir else None,  # LibreOffice's bundled one
        "/usr/local/bin/python3",
        sys.executable,
        "python3",
    ]
    for python in _which_all(candidates):
        if _imports_uno(python):
            return python
    return None


def available() -> bool:
    """True when soffice and a uno-capable Python are both there."""
    return find_soffice() is not None and find_uno_python() is not None


def _require() -> tuple[str, str]:
    soffice, python = find_soffice(), find_uno_python()
    if soffice is None:
        raise LibreOfficeError("soffice not found (install libreoffice-calc-nogui)")
    if python is None:
        raise LibreOfficeError("no Python that can `import uno` (install python3-uno)")
    return soffice, python


# ---------------------------------------------------------------- processes


def _new_profile() -> Path:
    profile = Path(tempfile.mkdtemp(prefix="kpi_lo_profile_"))
    (profile / "user").mkdir()
    (profile / "user" / "registrymodifications.xcu").write_text(_PROFILE_XCU, encoding="utf-8")
    (profile / "tmp").mkdir()
    return profile


def _soffice_env(profile: Path) -> dict[str, str]:
    """soffice's environment: its temp files (lu*.tmp) go inside the profile dir, so
    they go with it even when soffice had to be killed."""
    env = _clean_env()
    env["TMPDIR"] = str(profile / "tmp")
    return env


def _remove_profile(profile: Path, pipe: str | None = None) -> None:
    """Delete a profile dir and the socket files a killed soffice leaves in /tmp.

    soffice makes ``OSL_PIPE_<uid>_SingleOfficeIPC_<md5>`` per profile (md5 of the
    profile URL as UTF-16LE, bytes printed in unpadded hex) and one per ``--accept``
    pipe; it removes them on a clean exit only. Both names are ours alone.
    """
    shutil.rmtree(profile, ignore_errors=True)
    digest = hashlib.md5(profile.as_uri().encode("utf-16-le")).digest()  # noqa: S324
    names = ["SingleOfficeIPC_" + "".join(format(b, "x") for b in digest)]
    if pipe:
        names.append(pipe)
    uid = os.getuid() if hasattr(os, "getuid") else 0
    for tmp in {tempfile.gettempdir(), "/tmp"}:
        for name in names:
            with contextlib.suppress(OSError):
                Path(tmp, f"OSL_PIPE_{uid}_{name}").unlink(missing_ok=True)


def _stop(proc: subprocess.Popen, grace: float) -> None:
    """Wait up to ``grace`` s for proc to exit, then kill its process group.

    The group is the one ``start_new_session`` made for this proc (oosplash and its
    soffice.bin child), so nothing of anyone else's is touched. We only signal it while
    the leader is unreaped, so the group id cannot have been reused.
    """
    try:
        proc.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class _Office:
    """One soffice listening on a private pipe, with a fresh profile."""

    def __init__(self, soffice: str) -> None:
        self.soffice = soffice
        self.profile = _new_profile()
        self.pipe = f"kpi_lo_{os.getpid()}_{uuid.uuid4().hex[:12]}"
        self.log_path = self.profile / "soffice.log"
        self.proc: subprocess.Popen | None = None
        #: seconds to wait for soffice to quit on its own before killing it
        self.grace = 10.0

    def __enter__(self) -> _Office:
        try:
            log = open(self.log_path, "wb")  # noqa: SIM115 - closed in __exit__
            self._log = log
            self.proc = subprocess.Popen(
                [
                    self.soffice,
                    f"-env:UserInstallation={self.profile.as_uri()}",
                    "--headless",
                    "--invisible",
                    "--nologo",
                    "--norestore",
                    "--nodefault",
                    "--nolockcheck",
                    f"--accept=pipe,name={self.pipe};urp;StarOffice.ComponentContext",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=_soffice_env(self.profile),
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.proc is not None:
            # normally the worker asked soffice to terminate(): give it a moment, then
            # kill; on an exception here (e.g. KeyboardInterrupt) kill at once
            _stop(self.proc, grace=self.grace if exc_type is None else 0.0)
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()
        _remove_profile(self.profile, self.pipe)


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def _run_worker(
    python: str, office: _Office, op: str, jobs: list[dict], per_file_timeout: float
) -> tuple[list[dict], int, str]:
    """Run the worker on ``jobs`` against ``office``: (results so far, exit code, stderr).

    The worker is killed (exit code -1) when no job finishes for ``per_file_timeout``
    seconds (plus the connect time for the first one).
    """
    with tempfile.TemporaryDirectory(prefix="kpi_lo_req_") as tmp:
        req_path = Path(tmp) / "request.json"
        res_path = Path(tmp) / "results.jsonl"
        err_path = Path(tmp) / "stderr.txt"
        res_path.touch()
        req = {
            "op": op,
            "pipe": office.pipe,
            "connect_timeout": _CONNECT_TIMEOUT,
            "results": str(res_path),
            "terminate": True,
            "jobs": jobs,
        }
        req_path.write_text(json.dumps(req, ensure_ascii=False), encoding="utf-8")
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [python, "-I", str(_WORKER), str(req_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                env=_clean_env(),
            )
            try:
                # the worker says "connected after ...s" on stderr once soffice answers
                deadline = time.monotonic() + _CONNECT_TIMEOUT + 15.0
                connected, seen = False, 0
                while proc.poll() is None:
                    time.sleep(0.05)
                    if not connected and b"connected after" in err_path.read_bytes():
                        connected = True
                        deadline = time.monotonic() + per_file_timeout
                    now_seen = _count_lines(res_path)
                    if now_seen != seen:
                        seen = now_seen
                        deadline = time.monotonic() + per_file_timeout
                    elif time.monotonic() > deadline:
                        proc.kill()
                        proc.wait()
                        break
            finally:
                if proc.poll() is None:  # e.g. KeyboardInterrupt
                    proc.kill()
                    proc.wait()
        timed_out = proc.returncode is not None and proc.returncode < 0
        code = -1 if timed_out else proc.returncode
        stderr = err_path.read_text(encoding="utf-8", errors="replace")
        if timed_out:
            stderr += f"\nno progress for {per_file_timeout:.0f}s: worker killed"
        results = []
        for line in res_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                results.append(json.loads(line))
        return results, code, stderr


def _run_batches(
    op: str, jobs: list[dict], per_file_timeout: float, on_lost: Callable[[dict, str], dict]
) -> list[dict]:
    """Run ``jobs`` through the worker, at most BATCH_LIMIT per soffice process.

    If soffice dies or hangs on a file, that file gets ``on_lost(job, why)`` as its
    result and the rest go on in a new soffice process.
    """
    soffice, python = _require()
    out: list[dict] = []
    pending = list(jobs)
    while pending:
        batch = pending[:BATCH_LIMIT]
        with _Office(soffice) as office:
            results, code, stderr = _run_worker(python, office, op, batch, per_file_timeout)
            log = office.log_tail()
            if code != 0:  # soffice was not asked to quit, or is hung: kill it now
                office.grace = 0.0
        if code == 3 or (code not in (0, 4, -1) and not results):
            raise LibreOfficeError(
                f"LibreOffice worker failed (exit {code}): {stderr.strip()[-2000:]}\n"
                f"soffice log: {log.strip()}"
            )
        out.extend(results)
        done = len(results)
        if done < len(batch):
            if code == 0:
                raise LibreOfficeError(
                    f"worker returned {done} results for {len(batch)} files: {stderr[-2000:]}"
                )
            # soffice crashed or hung on batch[done]: give it up, go on with the rest
            why = f"LibreOffice crashed or hung on this file (worker exit {code}): {stderr.strip()[-500:]}"
            out.append(on_lost(batch[done], why))
            done += 1
        pending = batch[done:] + pending[len(batch) :]
    return out


# ---------------------------------------------------------------- recalc


def _cell_value(value: object) -> float | str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if isinstance(value, _dt.datetime):
        return (value - _EXCEL_EPOCH).total_seconds() / 86400.0
    if isinstance(value, _dt.date):
        return float((value - _EXCEL_EPOCH.date()).days)
    raise TypeError(f"cannot type a {type(value).__name__} into a cell: {value!r}")


def _unique_outs(
    srcs: Sequence[Path], out_dir: Path, suffix: str | None = None, names: Sequence[str | None] = ()
) -> list[Path]:
    names = list(names) or [None] * len(srcs)
    outs = [
        out_dir / (name or (p.name if suffix is None else p.with_suffix(suffix).name))
        for p, name in zip(srcs, names, strict=True)
    ]
    seen: dict[Path, Path] = {}
    for src, out in zip(srcs, outs, strict=True):
        if out in seen:
            raise ValueError(f"{seen[out]} and {src} would both be written to {out}")
        seen[out] = src
    return outs


def recalc(jobs: Sequence[Job], out_dir: Path, *, per_file_timeout: float = 120.0) -> list[Result]:
    """Fill, fully recalculate, save (as xlsx, same file name, in ``out_dir``) and read
    back every job; one soffice process per batch of at most 200 files.

    A file that fails (cannot be loaded, crashes LibreOffice) comes back with
    ``Result.error`` set; the others go on. Results are in the order of ``jobs``.
    """
    jobs = list(jobs)
    if not jobs:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    srcs = [Path(j.src).resolve() for j in jobs]
    outs = _unique_outs(srcs, out_dir.resolve(), names=[j.out_name for j in jobs])
    payload = [
        {
            "id": i,
            "src": str(src),
            "out": str(out),
            "fills": {name: _cell_value(v) for name, v in (j.fills or {}).items()},
            "read": list(j.read or []),
            "macros": bool(j.macros),
        }
        for i, (j, src, out) in enumerate(zip(jobs, srcs, outs, strict=True))
    ]

    def lost(job: dict, why: str) -> dict:
        return {"id": job["id"], "src": job["src"], "out": None, "fatal": why}

    raw = _run_batches("recalc", payload, per_file_timeout, lost)
    if len(raw) != len(jobs):
        raise LibreOfficeError(f"recalc: {len(raw)} results for {len(jobs)} jobs")
    by_id = {r.get("id"): r for r in raw}
    if sorted(by_id, key=str) != sorted(range(len(jobs)), key=str):
        raise LibreOfficeError(f"recalc: results do not match the {len(jobs)} jobs")
    results = []
    for i, job in enumerate(jobs):
        r = by_id[i]
        results.append(
            Result(
                src=Path(job.src),
                out=Path(r["out"]) if r.get("out") else None,
                values=dict(r.get("values") or {}),
                errors=dict(r.get("errors") or {}),
                error=r.get("fatal"),
                seconds=float(r.get("seconds") or 0.0),
            )
        )
    return results


# ---------------------------------------------------------------- pdf


def convert_pdf(paths: Sequence[Path], out_dir: Path, *, timeout: float = 600.0) -> list[Path]:
    """Convert each file to ``out_dir/<stem>.pdf`` with ``soffice --convert-to pdf``.

    At most 200 files per soffice call, each call with a fresh profile. Every expected
    PDF is checked afterwards (soffice exits 0 even when it silently stopped early);
    missing ones raise :class:`LibreOfficeError`. Note: xlsx files are rendered with the
    values cached in the file (LibreOffice does not recalculate xlsx on load by default).
    """
    soffice, _python = _require()
    paths = [Path(p).resolve() for p in paths]
    if not paths:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pdfs = _unique_outs(paths, out_dir.resolve(), ".pdf")
    for pdf in pdfs:  # so that "it exists" below means "this call made it"
        pdf.unlink(missing_ok=True)
    logs = []
    for start in range(0, len(paths), BATCH_LIMIT):
        chunk = paths[start : start + BATCH_LIMIT]
        profile = _new_profile()
        try:
            proc = subprocess.Popen(
                [
                    soffice,
                    f"-env:UserInstallation={profile.as_uri()}",
                    "--headless",
                    "--invisible",
                    "--nologo",
                    "--norestore",
                    "--nolockcheck",
                    "--convert-to",
                    "pdf",
                    "--outdir",
                    str(out_dir.resolve()),
                    *map(str, chunk),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=_soffice_env(profile),
            )
            try:
                output, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _stop(proc, grace=0)
                output, _ = proc.communicate()
            logs.append(output.decode("utf-8", "replace"))
        finally:
            _remove_profile(profile)
    missing = [
        str(p)
        for p, pdf in zip(paths, pdfs, strict=True)
        if not pdf.is_file() or pdf.stat().st_size == 0
    ]
    if missing:
        raise LibreOfficeError(
            f"soffice made no PDF for {len(missing)} of {len(paths)} files: "
            + ", ".join(missing[:20])
            + ("..." if len(missing) > 20 else "")
            + f"\nsoffice said: {''.join(logs)[-2000:]}"
        )
    return pdfs


# ---------------------------------------------------------------- macros


def run_macro(
    src: Path, macro_url: str, out_dir: Path, *, recalc_after: bool = True, timeout: float = 180.0
) -> dict:
    """Open ``src`` with macros enabled, run the Basic macro at ``macro_url``, save.

    ``macro_url`` is a script URL such as
    ``vnd.sun.star.script:Standard.Module1.Main?language=Basic&location=document``
    (VBA modules imported from an xlsm live in the ``VBAProject`` library). Returns
    ``{"ok": bool, "error": str | None, "out": Path | None, "checked": bool}``; the
    document is saved to ``out_dir/<same name>`` (xlsm keeps its VBA) even when the
    macro failed.

    Headless LibreOffice swallows Basic runtime errors (``invoke()`` returns normally),
    so a document Basic macro is called through a temporary wrapper module (added to
    the macro's library, removed again before saving) that traps the error with
    ``On Error``; ``checked`` says whether that worked. With ``checked`` False, ``ok``
    only means "no UNO exception".
    """
    src = Path(src).resolve()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir.resolve() / src.name
    job = {"src": str(src), "out": str(out), "macro_url": macro_url, "recalc": recalc_after}

    def lost(job: dict, why: str) -> dict:
        return {"src": job["src"], "ok": False, "error": why, "out": None}

    (r,) = _run_batches("run_macro", [job], timeout, lost)
    return {
        "ok": bool(r.get("ok")),
        "error": r.get("error") or r.get("fatal"),
        "out": Path(r["out"]) if r.get("out") else None,
        "checked": bool(r.get("checked")),
    }


def button_macros(src: Path, *, timeout: float = 120.0) -> list[dict]:
    """Form controls on every sheet with the macro bound to each (best effort).

    Each dict: ``sheet``, ``form``, ``index``, ``name``, ``label``, ``is_button``,
    ``macro`` (a script URL usable with :func:`run_macro`, or None) and ``events``
    (every bound script event: listener, method, type, code).
    """
    src = Path(src).resolve()

    def lost(job: dict, why: str) -> dict:
        return {"src": job["src"], "buttons": [], "error": why}

    (r,) = _run_batches("button_macros", [{"src": str(src), "macros": True}], timeout, lost)
    if r.get("error") or r.get("fatal"):
        raise LibreOfficeError(
            f"could not list buttons of {src}: {r.get('error') or r.get('fatal')}"
        )
    return list(r.get("buttons") or [])


if __name__ == "__main__":  # pragma: no cover - manual check
    print(json.dumps({"soffice": find_soffice(), "uno_python": find_uno_python()}))
    t = time.monotonic()
    print(available(), f"{time.monotonic() - t:.2f}s")
