"""Time-to-failure ensembles (paper §3.2, Fig. 2): one model, several sizes, seeded instances.

Protocol of one instance (:class:`legato.workflows.protocol.TfailProtocol`, ``docs/study.md``):
the base box replicated a×b×c times and every coordinate displaced by seeded Gaussian noise
(``perturb_A``); Maxwell–Boltzmann velocities at T (rescaled to exactly T); ``nvt_steps`` of
Nosé–Hoover NVT; then the production stage (NVE, or NVT with ``production: nvt``) until a
failure detector of :mod:`legato.md` fires or ``max_steps`` production steps have run. All
instances of a size run as one batch of :class:`legato.md.MDRunner`, so one model call serves
all of them; a replica's trajectory does not depend on which others share its batch.

t_failure is counted on the **production clock**: ``t_failure_steps`` = MD steps since the
start of production at the check that detected the failure (checks every ``check_every``
steps, as the public code's thermo output); ``t_failure_fs`` = that times the timestep;
``t_total_steps`` = the same step counted from step 0. A run alive after ``max_steps``
production steps is censored at ``max_steps``. A run that fails already during the first NVT
stage is recorded with ``t_failure_steps = 0`` and ``stage = nvt``; production rows have
``stage`` ``nve`` or ``nvt_production``.

Output folder ``OUT`` (resumable; rerunning skips every (model, N, seed) already in the
table and resumes an interrupted size from its MD checkpoint):

- ``failures.csv`` — the failure table (:mod:`legato.stats.failures`), extra columns
  ``replication, stage, t_total_steps, detail``;
- ``outliers.csv`` — per check: ``model, n_atoms, seed, run, step, nve_step, outliers,
  max_force_eV_A, temperature_K`` (force-outlier counts for Fig. 1; ``nve_step`` is the
  production clock, ``step - nvt_steps``);
- ``protocol.json`` (protocol and base box, must match on reruns), ``models.json``
  (label → weights fingerprint), ``runs.jsonl`` (one line per finished batch: wall time);
- ``md/<label>/N<n>_s<first>-<last>/`` — the ``legato md`` run folder of each batch.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from legato.errors import LegatoError
from legato.fileio import atomic_write_text, ensure_writable_dir, move_aside
from legato.md.fingerprint import model_fingerprint
from legato.md.lock import folder_lock
from legato.stats.failures import (
    FailureRecord,
    FailureTable,
    read_failure_table,
    write_failure_table,
)
from legato.workflows.protocol import TfailProtocol
from legato.workflows.staged import csv_text

Replication = tuple[int, int, int]
OUTLIER_COLUMNS = (
    "model",
    "n_atoms",
    "seed",
    "run",
    "step",
    "nve_step",
    "outliers",
    "max_force_eV_A",
    "temperature_K",
)
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(?:[x×*]\s*(\d+)\s*[x×*]\s*(\d+))?\s*$")


# ----------------------------------------------------------------------------- sizes, seeds
def parse_sizes(sizes: str | Sequence[int | str]) -> list[Replication]:
    """Replications from ``"1,2,3"`` or ``[1, "1x1x2", 3]``: k means k×k×k, ``axbxc`` as is."""
    items = sizes.split(",") if isinstance(sizes, str) else list(sizes)
    out: list[Replication] = []
    for item in items:
        m = _SIZE_RE.match(str(item))
        if m is None:
            raise LegatoError(f"bad size {item!r}: give a replication k (k×k×k) or AxBxC")
        a = int(m.group(1))
        reps = (a, a, a) if m.group(2) is None else (a, int(m.group(2)), int(m.group(3)))
        if min(reps) < 1:
            raise LegatoError(f"bad size {item!r}: replication factors must be >= 1")
        if reps in out:
            raise LegatoError(f"size {item!r} is given twice")
        out.append(reps)
    if not out:
        raise LegatoError("no sizes given")
    return out


def replication_name(reps: Replication) -> str:
    """``"2"`` for 2×2×2, ``"1x1x2"`` otherwise."""
    return str(reps[0]) if len(set(reps)) == 1 else "x".join(map(str, reps))


def derived_seed(*words: int) -> int:
    """A well-mixed 31-bit seed from integers (e.g. instance seed, N, purpose)."""
    return int(np.random.SeedSequence([int(w) for w in words]).generate_state(1)[0] >> 1)


def replicate_box(base: Atoms, reps: Replication, perturb_A: float, seed: int) -> Atoms:
    """``base`` repeated a×b×c times, every coordinate displaced by N(0, perturb_A²) from a
    generator seeded by ``seed``; labels, momenta and calculator dropped, masses kept."""
    if not base.pbc.all():
        raise LegatoError("time-to-failure runs need a periodic box (pbc on all three axes)")
    if perturb_A < 0 or not np.isfinite(perturb_A):
        raise LegatoError(f"perturbation must be a non-negative number of Å, got {perturb_A}")
    atoms = base.copy()
    atoms.calc = None
    for key in ("forces", "momenta"):
        atoms.arrays.pop(key, None)
    for key in ("energy", "stress", "free_energy"):
        atoms.info.pop(key, None)
    big = atoms.repeat(reps)
    rng = np.random.default_rng(seed)
    big.positions += rng.normal(scale=perturb_A, size=big.positions.shape)  # [n, 3]
    big.wrap()
    return big


def structure_fingerprint(atoms: Atoms) -> str:
    """SHA-256 over numbers, positions, cell, pbc and masses of a box."""
    h = hashlib.sha256()
    for arr in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, atoms.get_masses()):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def eval_model(model: torch.nn.Module | str | os.PathLike) -> torch.nn.Module:
    """A model, or a saved model's path loaded, in evaluation mode."""
    if isinstance(model, (str, os.PathLike)):
        from legato.models import load_model

        model = load_model(model)
    return model.eval()


def training_force_sigma(model: torch.nn.Module) -> float | None:
    """σ of the training force components: from the model file's ``extra`` or, for a model
    saved by ``legato train``, from ``stats.json`` in its run folder; None if unknown."""
    from legato.md.runner import model_force_sigma

    sigma = model_force_sigma(model)
    if sigma is not None:
        return sigma
    run_dir = (getattr(model, "extra", None) or {}).get("run_dir")
    stats = Path(run_dir) / "stats.json" if run_dir else None
    if stats is not None and stats.is_file():
        value = json.loads(stats.read_text()).get("force_std_eV_A")
        return None if value is None else float(value)
    return None


# ----------------------------------------------------------------------------- bookkeeping
def _json_atomic(path: Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n", overwrite=True)


def _check_record(path: Path, key: str, value: dict, what: str) -> None:
    """Store ``value`` under ``key`` in a JSON file, or verify it equals the stored one."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    if key in data and data[key] != value:
        diff = sorted(k for k in set(data[key]) | set(value) if data[key].get(k) != value.get(k))
        raise LegatoError(
            f"{path}: {what} differs from the earlier run ({', '.join(diff)}); use another output folder"
        )
    if key not in data:
        data[key] = value
        _json_atomic(path, data)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).strip("_") or "model"


def read_outliers(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _write_outliers(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, csv_text(rows, OUTLIER_COLUMNS), overwrite=True)


# ----------------------------------------------------------------------------- one batch
def _runner_class():
    from legato.md.runner import MDRunner

    class InstanceRunner(MDRunner):
        """MDRunner whose replicas draw their velocities (and any noise) from streams seeded
        by the instance seeds, so an instance's trajectory depends only on its own seed.
        Replica ids stay 0..R-1 (batch positions)."""

        def __init__(self, *args, velocity_seeds: list[int], **kw):
            super().__init__(*args, **kw)
            self._vseeds = velocity_seeds

        def replica_seeds(self) -> list[int]:  # initial_state and instances() use these
            return list(self._vseeds)

    return InstanceRunner


def run_batch(
    model: torch.nn.Module,
    base: Atoms,
    reps: Replication,
    seeds: Sequence[int],
    protocol: TfailProtocol,
    label: str,
    run_dir: Path,
    force_sigma_eV_A: float | None = None,
    checkpoint_every: int = 500,
    progress: bool = True,
    log=print,
    starts: dict[int, Atoms] | None = None,
) -> tuple[list[FailureRecord], list[dict], dict]:
    """Run (or resume) one batch: the instances ``seeds`` of one size. Returns failure
    records, outlier rows and the MD summary.

    Without ``starts`` an instance's box is ``base`` replicated and perturbed (seeded by the
    instance seed); with ``starts`` (instance seed -> box of this size, e.g. from
    :mod:`legato.workflows.starts`) it is that box as given."""
    seeds = [int(s) for s in seeds]
    n_atoms = len(base) * reps[0] * reps[1] * reps[2]
    meta = {
        "label": label,
        "replication": list(reps),
        "n_atoms": n_atoms,
        "seeds": seeds,
        "base": structure_fingerprint(base),
        "protocol": protocol.to_dict(),
    }
    if starts is None:
        structures = [
            replicate_box(base, reps, protocol.perturb_A, derived_seed(s, n_atoms, 1)) for s in seeds
        ]
    else:
        structures = [starts[s] for s in seeds]
        meta["starts"] = [structure_fingerprint(a) for a in structures]
    meta_path = run_dir.with_name(run_dir.name + ".json")
    resume = (run_dir / "checkpoint.pt").is_file()
    if resume:
        old = json.loads(meta_path.read_text()) if meta_path.is_file() else None
        if old != meta:
            raise LegatoError(f"{run_dir} holds a different batch; move it away to rerun")
    elif run_dir.exists():  # started but killed before its first checkpoint: keep it aside
        moved = move_aside(run_dir, "incomplete")
        log(f"{run_dir} was stopped before its first checkpoint: moved it to {moved}")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    _json_atomic(meta_path, meta)
    runner = _runner_class()(
        model,
        structures,
        protocol.md_config(len(seeds), checkpoint_every, progress),
        output_dir=run_dir,
        force_sigma_eV_A=force_sigma_eV_A,
        velocity_seeds=[derived_seed(s, n_atoms, 2) for s in seeds],
        log=log,
    )
    result = runner.run(resume=resume)
    nvt = protocol.nvt_steps
    common = {"replication": replication_name(reps)}
    by_seed: dict[int, FailureRecord] = {}

    def record(seed: int, step: int, reason: str, detail: str) -> FailureRecord:
        stage, t = protocol.clock(step)  # production clock; 0 for a failure in the first NVT stage
        return FailureRecord(
            model=label,
            n_atoms=n_atoms,
            seed=seed,
            t_failure_steps=int(t),
            t_failure_fs=float(t * protocol.timestep_fs),
            reason=reason,
            censored=reason == "budget",
            extra={**common, "stage": stage, "t_total_steps": str(step), "detail": detail},
        )

    for f in result.failures:
        by_seed[seeds[f.replica]] = record(seeds[f.replica], f.step, f.reason, f.detail)
    last = result.state.step
    for rid in result.state.replica_ids.tolist():
        if last - nvt < protocol.max_steps:
            raise LegatoError(
                f"{run_dir}: instance {seeds[rid]} stopped alive at step {last} "
                f"before the budget of {protocol.max_steps} production steps"
            )
        by_seed[seeds[rid]] = record(seeds[rid], last, "budget", "")
    missing = set(seeds) - set(by_seed)
    if missing:
        raise LegatoError(f"{run_dir}: no outcome for instance(s) {sorted(missing)}")
    outliers = []
    for row in read_outliers(run_dir / "checks.csv"):
        seed, step = seeds[int(row["replica"])], int(row["step"])
        outliers.append(
            {
                "model": label,
                "n_atoms": n_atoms,
                "seed": seed,
                "run": f"N{n_atoms}_s{seed}",
                "step": step,
                "nve_step": step - nvt,
                "outliers": row["n_force_outliers"],
                "max_force_eV_A": row["max_force_eV_A"],
                "temperature_K": row["temperature_K"],
            }
        )
    return [by_seed[s] for s in seeds], outliers, result.summary


# ----------------------------------------------------------------------------- ensembles
@dataclass
class EnsembleResult:
    table: FailureTable  # rows of this label (all sizes requested)
    batches: list[dict]  # one entry per batch run in this call
    out: Path


def _describe(records: Sequence[FailureRecord]) -> str:
    fails = [r for r in records if not r.censored]
    reasons = Counter(r.reason for r in fails)
    t = np.array([r.t_failure_steps for r in records], dtype=float)
    why = ", ".join(f"{k} {v}" for k, v in reasons.most_common()) or "-"
    return (
        f"{len(fails)} failed ({why}), {len(records) - len(fails)} censored, "
        f"mean t {t.mean():.0f} production steps"
    )


def validate_inputs(
    model: torch.nn.Module,
    structure: Atoms,
    reps_list: Sequence[Replication],
    instances: int,
    protocol: TfailProtocol,
    seed: int,
    force_sigma_eV_A: float | None,
    checkpoint_every: int,
) -> None:
    """Everything that can be checked before a file is written (a refused call leaves nothing
    behind, so the corrected call is not refused for a protocol that differs)."""
    from legato.md.config import validate_config
    from legato.md.forces import potential_r_max
    from legato.md.runner import pair_limit_table, type_names_of
    from legato.md.state import state_from_atoms

    if seed < 0:
        raise LegatoError(f"the first instance seed must be >= 0, got {seed}")
    if force_sigma_eV_A is not None and not (math.isfinite(force_sigma_eV_A) and force_sigma_eV_A > 0):
        raise LegatoError(
            f"the training force sigma must be a positive number of eV/Å, got {force_sigma_eV_A}"
        )
    if checkpoint_every < 0:
        raise LegatoError(f"the checkpoint interval must be >= 0 steps, got {checkpoint_every}")
    validate_config(protocol.md_config(instances, checkpoint_every, progress=False))
    try:
        potential_r_max(model)
    except ValueError as exc:
        raise LegatoError(f"the model cannot run MD: {exc}") from None
    box = replicate_box(structure, (1, 1, 1), protocol.perturb_A, 0)  # periodic, finite perturbation
    names = type_names_of(model, [box])
    state_from_atoms([box], names)  # atoms, masses, cell, species known
    pair_limit_table(protocol.min_pair_distance_A, names)  # its pairs are species of the model
    if len(reps_list) == 0:
        raise LegatoError("no sizes given")


def check_starts(
    starts: dict[int, dict[int, Atoms]], base: Atoms, reps_list: Sequence[Replication], seeds: Sequence[int]
) -> None:
    """Every size and instance has a periodic starting box of the right atoms."""
    species = sorted(base.get_chemical_symbols())
    for reps in reps_list:
        k = reps[0] * reps[1] * reps[2]
        n_atoms = len(base) * k
        boxes = starts.get(n_atoms)
        if boxes is None:
            raise LegatoError(f"no starting boxes of {n_atoms} atoms (size {replication_name(reps)})")
        missing = [s for s in seeds if s not in boxes]
        if missing:
            raise LegatoError(f"no starting box of {n_atoms} atoms for instance(s) {missing}")
        for s in seeds:
            box = boxes[s]
            if not box.pbc.all():
                raise LegatoError(f"the starting box of instance {s} ({n_atoms} atoms) is not periodic")
            if len(box) != n_atoms or sorted(box.get_chemical_symbols()) != sorted(species * k):
                raise LegatoError(
                    f"the starting box of instance {s} ({len(box)} atoms) does not hold the atoms of "
                    f"{k} base boxes ({n_atoms})"
                )


def run_ensemble(
    model: torch.nn.Module | str | os.PathLike,
    structure: Atoms,
    sizes: str | Sequence[int | str],
    instances: int,
    protocol: TfailProtocol,
    out: str | os.PathLike,
    label: str,
    seed: int = 0,
    force_sigma_eV_A: float | None = None,
    checkpoint_every: int = 500,
    progress: bool = True,
    log=print,
    starts: dict[int, dict[int, Atoms]] | None = None,
) -> EnsembleResult:
    """Time-to-failure ensemble of one model (see the module docstring); resumable.

    ``starts`` (optional): n_atoms -> instance seed -> starting box, for every size and
    instance (independent boxes instead of replicas of ``structure``; see :func:`run_batch`)."""
    if instances < 1:
        raise LegatoError("need at least one instance per size")
    if not label or label != label.strip():
        raise LegatoError("the model label must be non-empty without outer spaces")
    reps_list = parse_sizes(sizes)
    model = eval_model(model)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LegatoError(f"--out {out} is not a directory")
    validate_inputs(
        model, structure, reps_list, instances, protocol, seed, force_sigma_eV_A, checkpoint_every
    )
    sigma = force_sigma_eV_A if force_sigma_eV_A is not None else training_force_sigma(model)
    wanted = [seed + i for i in range(instances)]
    if starts is not None:
        check_starts(starts, structure, reps_list, wanted)
    batches: list[dict] = []
    ensure_writable_dir(out, "tfail output folder")
    with folder_lock(out):
        _check_record(
            out / "protocol.json",
            "protocol",
            {
                **protocol.to_dict(),
                "base_fingerprint": structure_fingerprint(structure),
                "base_n_atoms": len(structure),
            },
            "the MD protocol or base box",
        )
        _check_record(
            out / "models.json",
            label,
            {"fingerprint": model_fingerprint(model)},
            f"the model labelled {label!r}",
        )
        table_path = out / "failures.csv"
        for reps in reps_list:
            n_atoms = len(structure) * reps[0] * reps[1] * reps[2]
            table = read_failure_table(table_path) if table_path.exists() else FailureTable()
            todo = [s for s in wanted if (label, n_atoms, s) not in table]
            if not todo:
                log(
                    f"[{label}] N={n_atoms} ({replication_name(reps)}): "
                    f"{instances} instances in the table, skipped"
                )
                continue
            run_dir = out / "md" / _slug(label) / f"N{n_atoms}_s{todo[0]}-{todo[-1]}"
            log(
                f"[{label}] N={n_atoms} ({replication_name(reps)}): running {len(todo)} "
                f"instance(s) in one batch -> {run_dir}"
            )
            t0 = time.perf_counter()
            records, outliers, summary = run_batch(
                model,
                structure,
                reps,
                todo,
                protocol,
                label,
                run_dir,
                sigma,
                checkpoint_every,
                progress,
                log,
                None if starts is None else starts[n_atoms],
            )
            wall = time.perf_counter() - t0
            table = read_failure_table(table_path) if table_path.exists() else FailureTable()
            for rec in records:
                table.append(rec)
            keep = [
                r
                for r in read_outliers(out / "outliers.csv")
                if not (r["model"] == label and int(r["n_atoms"]) == n_atoms and int(r["seed"]) in set(todo))
            ]
            _write_outliers(out / "outliers.csv", keep + outliers)
            write_failure_table(table, table_path, overwrite=True)
            info = {
                "label": label,
                "n_atoms": n_atoms,
                "replication": replication_name(reps),
                "seeds": todo,
                "wall_s_this_call": wall,
                "md_wall_s": summary.get("wall_time_s"),
                "last_step": summary["last_step"],
                "model_calls": summary["model_calls"],
                "force_sigma_eV_A": summary.get("force_sigma_eV_A"),
                "force_sigma_source": summary.get("force_sigma_source"),
            }
            with open(out / "runs.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(info) + "\n")
            batches.append(info)
            log(f"[{label}] N={n_atoms}: {_describe(records)}; {wall:.0f} s")
        table = read_failure_table(table_path) if table_path.exists() else FailureTable()
    mine = FailureTable(
        [
            r
            for r in table
            if r.model == label
            and r.seed in set(wanted)
            and r.n_atoms in {len(structure) * a * b * c for a, b, c in reps_list}
        ],
        table.extra_columns,
    )
    return EnsembleResult(mine, batches, out)
