"""Files of an MD run folder: the append-only tables and trajectories, and the column names.

The appended files' sizes are recorded in each checkpoint (after an fsync, so a checkpoint
never refers to data that a crash could lose); a resumed run truncates them to those sizes.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import IO

from ase import Atoms

#: the leading columns of a per-replica row (thermo.csv of legato md and legato pimd)
ROW_FIELDS = ["step", "time_fs", "stage", "ensemble", "replica", "n_atoms"]
THERMO_FIELDS = [
    *ROW_FIELDS,
    "temperature_K",
    "potential_eV",
    "kinetic_eV",
    "total_eV",
    "conserved_eV",
]
CHECK_FIELDS = [
    "step",
    "replica",
    "temperature_K",
    "max_force_eV_A",
    "n_force_outliers",
    "min_distance_A",
    "drift_eV_per_atom",
    "status",
]
FAILURE_FIELDS = [
    "replica",
    "step",
    "reason",
    "stage",
    "steps_in_stage",
    "last_good_step",
    "detail",
]
CHECKPOINT = "checkpoint.pt"
#: written first by a fresh run: a folder holding it but no checkpoint is an unfinished start
RESOLVED_CONFIG = "resolved_config.yaml"


class RunFiles:
    """Append-only outputs whose sizes are recorded in checkpoints (truncated on resume)."""

    def __init__(self, directory: Path | None):
        self.dir = directory
        self._handles: dict[str, IO[str]] = {}

    def _handle(self, name: str) -> IO[str]:
        if name not in self._handles:
            self._handles[name] = open(self.dir / name, "a", newline="")  # noqa: SIM115
        return self._handles[name]

    def rows(self, name: str, fields: list[str], rows: list[dict]) -> None:
        if self.dir is None or not rows:
            return
        fh = self._handle(name)
        writer = csv.DictWriter(fh, fieldnames=fields)
        if fh.tell() == 0:
            writer.writeheader()
        writer.writerows(rows)

    def frame(self, name: str, atoms: Atoms) -> None:
        if self.dir is None:
            return
        import ase.io

        ase.io.write(self._handle(name), atoms, format="extxyz")

    def sizes(self) -> dict[str, int]:
        """Sizes of the appended files, after flushing them to disk (fsync)."""
        self.flush(sync=True)
        if self.dir is None:
            return {}
        return {
            p.name: p.stat().st_size
            for p in self.dir.iterdir()
            if p.suffix in (".csv", ".extxyz") and p.is_file()
        }

    def flush(self, sync: bool = False) -> None:
        for fh in self._handles.values():
            fh.flush()
            if sync:
                os.fsync(fh.fileno())

    def close(self) -> None:
        for fh in self._handles.values():
            fh.close()
        self._handles.clear()

    def truncate_to(self, sizes: dict[str, int]) -> None:
        """Make the outputs exactly what they were at the checkpoint."""
        for p in self.dir.iterdir():
            if p.suffix not in (".csv", ".extxyz") or not p.is_file():
                continue
            if p.name not in sizes:
                p.unlink()  # written after the checkpoint; the resumed run writes it again
            elif p.stat().st_size > sizes[p.name]:
                with open(p, "r+b") as fh:
                    fh.truncate(sizes[p.name])
