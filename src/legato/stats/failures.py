"""Failure tables: one row per MD instance of a time-to-failure ensemble.

A row records which model ran, at which size ``n_atoms``, with which instance seed, when the
run failed (``t_failure_steps`` and ``t_failure_fs``), why, and whether it was *censored*,
i.e. reached the step budget alive (then the time is the budget, a lower bound on the
unobserved failure time). The CSV format is fixed by :data:`COLUMNS`; extra columns are kept
as strings, so ``write_failure_table(read_failure_table(p))`` reproduces ``p`` byte for byte.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from legato.errors import LegatoError
from legato.fileio import atomic_write_text

#: Required CSV columns, in the order they are written.
COLUMNS: tuple[str, ...] = (
    "model",
    "n_atoms",
    "seed",
    "t_failure_steps",
    "t_failure_fs",
    "reason",
    "censored",
)

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True)
class FailureRecord:
    """One instance of a time-to-failure ensemble.

    ``t_failure_steps`` counts MD steps from the start of the run up to the step at which the
    failure was detected (or the budget, if ``censored``); ``t_failure_fs`` is the same time
    in fs. ``extra`` holds any further CSV columns verbatim.
    """

    model: str
    n_atoms: int
    seed: int
    t_failure_steps: int
    t_failure_fs: float
    reason: str
    censored: bool
    extra: dict[str, str] = field(default_factory=dict, compare=True)

    def __post_init__(self) -> None:
        if not self.model:
            raise LegatoError("failure record: empty model label")
        if self.n_atoms <= 0:
            raise LegatoError(f"failure record: n_atoms must be positive, got {self.n_atoms}")
        if self.t_failure_steps < 0:
            raise LegatoError(f"failure record: t_failure_steps must be >= 0, got {self.t_failure_steps}")
        if not math.isfinite(self.t_failure_fs) or self.t_failure_fs < 0:
            raise LegatoError(
                f"failure record: t_failure_fs must be finite and >= 0, got {self.t_failure_fs}"
            )

    @property
    def key(self) -> tuple[str, int, int]:
        """Identity of the instance: (model, n_atoms, seed)."""
        return (self.model, self.n_atoms, self.seed)


class FailureTable:
    """An ordered collection of :class:`FailureRecord` with unique (model, n_atoms, seed)."""

    def __init__(self, records: Iterable[FailureRecord] = (), extra_columns: Sequence[str] = ()) -> None:
        self.records: list[FailureRecord] = []
        self.extra_columns: list[str] = list(extra_columns)
        self._keys: set[tuple[str, int, int]] = set()
        for rec in records:
            self.append(rec)

    # -- container protocol -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[FailureRecord]:
        return iter(self.records)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FailureTable):
            return NotImplemented
        return self.records == other.records and self.extra_columns == other.extra_columns

    def __repr__(self) -> str:
        return f"FailureTable({len(self)} records, models={self.models()})"

    def append(self, record: FailureRecord) -> None:
        """Add a record; a second record for the same (model, n_atoms, seed) is an error."""
        if record.key in self._keys:
            raise LegatoError(
                f"duplicate instance model={record.model!r} n_atoms={record.n_atoms} seed={record.seed}"
            )
        for name in record.extra:
            if name not in self.extra_columns:
                self.extra_columns.append(name)
        self._keys.add(record.key)
        self.records.append(record)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    # -- queries --------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Model labels in order of first appearance."""
        return list(dict.fromkeys(r.model for r in self.records))

    def sizes(self, model: str | None = None) -> list[int]:
        """Sorted distinct sizes (of one model, or of all)."""
        return sorted({r.n_atoms for r in self.records if model is None or r.model == model})

    def select(self, model: str | None = None, n_atoms: int | None = None) -> FailureTable:
        """The sub-table of one model and/or one size."""
        keep = [
            r
            for r in self.records
            if (model is None or r.model == model) and (n_atoms is None or r.n_atoms == n_atoms)
        ]
        return FailureTable(keep, self.extra_columns)

    def arrays(self, time: str = "steps") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n_atoms [n] int, t [n] float, censored [n] bool); ``time`` is "steps" or "fs"."""
        if time not in ("steps", "fs"):
            raise LegatoError(f"time unit must be 'steps' or 'fs', got {time!r}")
        n = np.array([r.n_atoms for r in self.records], dtype=np.int64)
        if time == "steps":
            t = np.array([r.t_failure_steps for r in self.records], dtype=np.float64)
        else:
            t = np.array([r.t_failure_fs for r in self.records], dtype=np.float64)
        c = np.array([r.censored for r in self.records], dtype=bool)
        return n, t, c


def merge_tables(tables: Iterable[FailureTable]) -> FailureTable:
    """Concatenate tables. Identical repeated rows are kept once; a conflicting repeat
    (same model, n_atoms and seed but different values) is an error."""
    out = FailureTable()
    seen: dict[tuple[str, int, int], FailureRecord] = {}
    for table in tables:
        for name in table.extra_columns:
            if name not in out.extra_columns:
                out.extra_columns.append(name)
        for rec in table:
            prev = seen.get(rec.key)
            if prev is None:
                seen[rec.key] = rec
                out.append(rec)
            elif prev != rec:
                raise LegatoError(
                    f"conflicting rows for model={rec.model!r} n_atoms={rec.n_atoms} "
                    f"seed={rec.seed} in merged tables"
                )
    return out


# -- CSV ------------------------------------------------------------------------------------
def _format_float(x: float) -> str:
    return repr(float(x))  # shortest string that round-trips


def format_failure_table(table: FailureTable) -> str:
    """The CSV text of a table (header + one line per record)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(COLUMNS) + table.extra_columns)
    for r in table:
        writer.writerow(
            [
                r.model,
                str(r.n_atoms),
                str(r.seed),
                str(r.t_failure_steps),
                _format_float(r.t_failure_fs),
                r.reason,
                "true" if r.censored else "false",
            ]
            + [r.extra.get(name, "") for name in table.extra_columns]
        )
    return buf.getvalue()


def write_failure_table(table: FailureTable, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a table as CSV (atomically; refuses to replace a file unless ``overwrite``)."""
    return atomic_write_text(path, format_failure_table(table), overwrite=overwrite)


def _parse_int(value: str, name: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise LegatoError(f"{where}: column {name!r} must be an integer, got {value!r}") from None


def parse_failure_table(text: str, source: str = "<text>") -> FailureTable:
    """Parse CSV text written by :func:`format_failure_table` (or by hand, same columns)."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise LegatoError(f"{source}: empty file, expected a failure table with header")
    header = rows[0]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise LegatoError(f"{source}: not a failure table, missing column(s) {', '.join(missing)}")
    if len(set(header)) != len(header):
        raise LegatoError(f"{source}: repeated column names in header")
    extra_columns = [c for c in header if c not in COLUMNS]
    idx = {name: i for i, name in enumerate(header)}
    table = FailureTable(extra_columns=extra_columns)
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        where = f"{source}, line {lineno}"
        if len(row) != len(header):
            raise LegatoError(f"{where}: {len(row)} fields, header has {len(header)}")
        get = {name: row[i] for name, i in idx.items()}
        flag = get["censored"].strip().lower()
        if flag in _TRUE:
            censored = True
        elif flag in _FALSE:
            censored = False
        else:
            raise LegatoError(f"{where}: column 'censored' must be true/false, got {flag!r}")
        try:
            t_fs = float(get["t_failure_fs"])
        except ValueError:
            raise LegatoError(
                f"{where}: column 't_failure_fs' must be a number, got {get['t_failure_fs']!r}"
            ) from None
        try:
            rec = FailureRecord(
                model=get["model"],
                n_atoms=_parse_int(get["n_atoms"], "n_atoms", where),
                seed=_parse_int(get["seed"], "seed", where),
                t_failure_steps=_parse_int(get["t_failure_steps"], "t_failure_steps", where),
                t_failure_fs=t_fs,
                reason=get["reason"],
                censored=censored,
                extra={name: get[name] for name in extra_columns},
            )
            table.append(rec)
        except LegatoError as exc:
            raise LegatoError(f"{where}: {exc}") from None
    return table


def read_failure_table(path: str | os.PathLike) -> FailureTable:
    """Read a failure-table CSV; any problem is a one-line :class:`LegatoError`."""
    path = Path(path)
    if not path.is_file():
        raise LegatoError(f"failure table {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LegatoError(f"{path}: not a text (UTF-8) CSV file") from None
    return parse_failure_table(text, source=str(path))
