"""A workflow of named stages in one output folder, resumable stage by stage.

The folder holds the resolved config (``study_config.yaml``, written once; a resumed run must
bring the same config, apart from runtime keys such as the number of workers) and
``stages.json`` (each finished stage's result and wall time). Used by the study
(:mod:`legato.workflows.study`) and study v2 (:mod:`legato.workflows.study_v2`).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from legato.errors import LegatoError
from legato.fileio import atomic_write_text, ensure_writable_dir

CONFIG_NAME = "study_config.yaml"


def json_default(x: Any) -> Any:
    """JSON encoding of numpy scalars and arrays and of paths."""
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(type(x).__name__)


def csv_text(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts as CSV text (header first); ``columns`` default to the first row's keys."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns if columns is not None else rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, default=json_default) + "\n", overwrite=True)


class StagedWorkflow:
    """Bookkeeping of a staged workflow in folder ``out``; subclasses define ``stage_<name>``."""

    #: stage name -> what it does (announced when it starts)
    TITLES: dict[str, str] = {}

    def __init__(
        self,
        config_text: str,
        out: str | Path,
        resume: bool,
        log: Callable[[str], None],
        runtime_keys: Sequence[str] = (),
    ) -> None:
        self.out, self.log = Path(out), log
        self.state_path = self.out / "stages.json"
        self.state: dict[str, Any] = (
            json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        )
        saved = self.out / CONFIG_NAME
        if saved.exists():
            if not resume:
                raise LegatoError(
                    f"{self.out} already holds a study; continue it with --resume or choose another --out"
                )
            old, new = self.normalized(yaml.safe_load(saved.read_text())), yaml.safe_load(config_text)
            diff = sorted(
                k for k in set(old) | set(new) if k not in runtime_keys and old.get(k) != new.get(k)
            )
            fixed = [k for k in diff if not self.changeable(k, old.get(k), new.get(k))]
            if fixed:
                raise LegatoError(
                    f"the config differs from the one of the study in {self.out} "
                    f"(sections: {', '.join(fixed)}); use another --out"
                )
            if diff:  # only sections whose stages have not started: record the new values
                atomic_write_text(saved, config_text, overwrite=True)
                log(f"config sections {', '.join(diff)} changed before their stages started; saved")
        elif self.out.exists() and any(self.out.iterdir()):
            raise LegatoError(f"{self.out} exists and is not a study folder; choose another --out")
        ensure_writable_dir(self.out, "study folder")
        if not saved.exists():
            atomic_write_text(saved, config_text, overwrite=False)

    def normalized(self, saved: dict[str, Any]) -> dict[str, Any]:
        """The saved config as the current schema writes it (a subclass fills in sections a
        newer version added with their defaults, so that they do not count as changes)."""
        return saved

    def changeable(self, section: str, old: Any, new: Any) -> bool:
        """May a resumed run change this config section (from ``old`` to ``new``)? Default:
        no; a subclass allows sections that only stages not yet started use."""
        return False

    def done(self, stage: str) -> bool:
        return stage in self.state

    def result(self, stage: str) -> Any:
        return self.state[stage]["result"]

    def _finish(self, stage: str, result: Any, t0: float) -> None:
        self.state[stage] = {"result": result, "wall_s": time.perf_counter() - t0}
        write_json(self.state_path, self.state)

    def enabled(self, stage: str) -> bool:
        """False for a stage the config switches off (recorded as done, not announced)."""
        return True

    def run_stage(self, stage: str, key: str | None = None, call: Callable[[], Any] | None = None) -> None:
        """Run one stage unless done (recorded under ``key``, default the stage name)."""
        key = key or stage
        if not self.enabled(stage):
            if not self.done(key):
                self._finish(key, {}, time.perf_counter())
            return
        if self.done(key):
            self.log(f"[{stage}] done before, skipped")
            return
        self.log(f"[{stage}] {self.TITLES.get(stage, stage)} ...")
        t0 = time.perf_counter()
        res = (call or getattr(self, f"stage_{stage}"))()
        self._finish(key, res, t0)
        self.log(f"[{stage}] finished in {time.perf_counter() - t0:.0f} s")
