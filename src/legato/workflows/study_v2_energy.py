"""Study v2's energy-conservation measure: per run, the drift and fluctuation of the conserved
quantity over the production stage and the hottest check (:mod:`legato.stats.energy`), read
from the MD batches' ``thermo.csv``; per arm and size their hierarchical means, and Legato's
fluctuation over each Adam arm's. Reads tables only."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from legato.errors import LegatoError
from legato.stats.energy import conserved_energy_summary
from legato.stats.hierarchical import hierarchical_mean, paired_on_shared, ratio_of_means
from legato.workflows.study_v2_config import ARMS

if TYPE_CHECKING:
    from legato.workflows.study_v2 import StudyV2

ENERGY_COLUMNS = (
    "model",
    "model_seed",
    "n_atoms",
    "instance_seed",
    "drift_meV_atom_ps",
    "fluct_meV_atom",
    "t_max_K",
    "t_mean_K",
    "duration_ps",
)
_BATCH = re.compile(r"N(\d+)_s(\d+)-(\d+)$")


def batch_summaries(thermo: Path) -> list[dict[str, Any]]:
    """Per replica of one MD batch (folder ``N<atoms>_s<first>-<last>``, replica i = instance
    ``first + i``): the production stage's :func:`conserved_energy_summary`; runs with fewer
    than 3 production samples (failed in NVT) are left out."""
    m = _BATCH.match(thermo.parent.name)
    if m is None:
        raise LegatoError(f"{thermo.parent}: not an MD batch folder (N<atoms>_s<first>-<last>)")
    n_atoms, first, last = map(int, m.groups())
    cols: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(thermo, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["stage"] == "1":
                c = cols[int(r["replica"])]
                for k in ("time_fs", "conserved_eV", "temperature_K"):
                    c[k].append(float(r[k]))
    if cols and max(cols) > last - first:
        raise LegatoError(f"{thermo}: replica {max(cols)} outside instances {first}-{last}")
    out = []
    for rep, c in sorted(cols.items()):
        if len(c["time_fs"]) >= 3:
            s = conserved_energy_summary(c["time_fs"], c["conserved_eV"], c["temperature_K"], n_atoms)
            out.append({"n_atoms": n_atoms, "instance_seed": first + rep, **s})
    return out


def energy_rows(study: StudyV2) -> list[dict[str, Any]]:
    """One row per run of every finished ensemble (columns :data:`ENERGY_COLUMNS`)."""
    rows = []
    for arm, seed in study.models():
        for reps in study.cfg.sizes_of(arm):
            if not study.ensemble_done(arm, seed, reps):
                continue
            for thermo in sorted((study.tfail_dir(arm, seed, reps) / "md").glob("*/N*_s*/thermo.csv")):
                rows += [{"model": arm, "model_seed": seed, **s} for s in batch_summaries(thermo)]
    return rows


def _mean(groups: list[np.ndarray], n_boot: int, seed: int, confidence: float) -> dict | str:
    try:
        return asdict(hierarchical_mean(groups, n_boot, seed, confidence))
    except LegatoError as exc:  # e.g. a value of exactly 0
        return str(exc)


def energy_stats(rows: list[dict], n_boot: int, confidence: float, seed: int = 0) -> dict[str, list]:
    """Per arm and size: hierarchical means (models, then runs) of the fluctuation, the
    absolute drift and the hottest check; Legato's mean fluctuation over each Adam arm's."""
    groups: dict[tuple[str, int], dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r["model"], r["n_atoms"])][r["model_seed"]].append(r)

    def arrays(key: tuple[str, int], f) -> list[np.ndarray]:
        return [np.array([f(r) for r in runs]) for runs in groups[key].values()]

    per_size, ratios = [], []
    for arm in ARMS:
        for n in sorted(k[1] for k in groups if k[0] == arm):
            key = (arm, n)
            per_size.append(
                {
                    "model": arm,
                    "n_atoms": n,
                    "runs": sum(len(v) for v in groups[key].values()),
                    **{
                        name: _mean(arrays(key, f), n_boot, seed, confidence)
                        for name, f in (
                            ("fluct_meV_atom", lambda r: r["fluct_meV_atom"]),
                            ("abs_drift_meV_atom_ps", lambda r: abs(r["drift_meV_atom_ps"])),
                            ("t_max_K", lambda r: r["t_max_K"]),
                        )
                    },
                }
            )
            if arm != "legato" and ("legato", n) in groups:
                fl = lambda r: r["fluct_meV_atom"]  # noqa: E731
                ratio = ratio_of_means(arrays(key, fl), arrays(("legato", n), fl), n_boot, seed, confidence)
                entry = {"a": arm, "b": "legato", "n_atoms": n, "fluct_ratio": asdict(ratio)}
                # paired on the starting boxes every model shares (same instance seed)
                a, b = (
                    [{r["instance_seed"]: r["fluct_meV_atom"] for r in runs} for runs in groups[k].values()]
                    for k in (key, ("legato", n))
                )
                paired = paired_on_shared(a, b, n_boot, seed, confidence)
                if paired is not None:
                    entry["paired"] = asdict(paired)
                ratios.append(entry)
    return {"per_size": per_size, "comparisons": ratios}
