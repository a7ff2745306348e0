"""Time-to-failure ensembles run through LAMMPS (``legato tfail --engine lammps``).

The same instances as :mod:`legato.workflows.tfail` (the same replicated, perturbed boxes
and the same Maxwell–Boltzmann velocities, both drawn from the instance seed), the same
stages (Nosé–Hoover NVT for ``nvt_steps``, then the production stage up to ``max_steps``:
NVE, or with ``production: nvt`` the same ``fix nvt`` kept on), and the same
output tables (``failures.csv``, ``outliers.csv``, ``protocol.json``, ``models.json``,
``runs.jsonl``). Each instance is one LAMMPS run on ``ranks`` MPI ranks; the checks of the
paper's public scripts run inside LAMMPS every ``check_every`` steps, and a ``fix halt``
condition ends the run at the first check that fails:

- ``temperature``: ``temp`` (3N − 3 degrees of freedom, as legato's) outside the window;
- ``min_distance``: some atom has a neighbour closer than ``min_distance_A``
  (``compute coord/atom``);
- ``force_outliers`` (only with ``max_force_outliers``): more atoms than that have a force
  component beyond ``outlier_sigma``·σ. The count is written at every check when σ is known.

Differences from the Python engine: LAMMPS's ``fix nvt`` is a Nosé–Hoover chain of its own
(same target and time constant, not the same integrator), so trajectories agree only
statistically; a LAMMPS error during the MD (lost atoms, ...) is recorded as reason
``lammps_error``; an instance interrupted mid-run is rerun from its start (resume works per
instance, not per step); the per-pair distance check ``min_pair_distance_A`` is not
available (refused). Instance folders: ``OUT/lammps/<label>/N<n>/s<seed>/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from legato.errors import LegatoError
from legato.fileio import atomic_write_text, ensure_writable_dir
from legato.lammps.io import read_thermo, write_data
from legato.lammps.runtime import run_lammps
from legato.stats.failures import FailureRecord, FailureTable, read_failure_table, write_failure_table
from legato.workflows.tfail import (
    EnsembleResult,
    TfailProtocol,
    _check_record,
    _describe,
    _slug,
    _write_outliers,
    derived_seed,
    eval_model,
    parse_sizes,
    read_outliers,
    replicate_box,
    replication_name,
    structure_fingerprint,
    training_force_sigma,
    validate_inputs,
)

_HALT = re.compile(r"Fix halt condition for fix-id halt met on step (\d+)")
COLUMNS = ("step", "temp", "pe", "etotal", "c_nclose", "c_nout", "c_fmax[1]", "c_fmax[2]", "c_fmax[3]")


def window(protocol: TfailProtocol) -> tuple[float, float] | None:
    w = protocol.temperature_window_K
    if w == "auto":
        t = protocol.temperature_K
        return (t / 2, 3 * t / 2)
    return None if w is None else (float(w[0]), float(w[1]))


def instance_input(
    protocol: TfailProtocol, model_file: str, type_names: list[str], sigma: float | None
) -> str:
    """LAMMPS input of one instance: the data file ``start.data`` (positions and velocities),
    NVT then NVE, the checks as thermo columns :data:`COLUMNS` and one ``fix halt``."""
    p = protocol
    tau_ps = (p.thermostat_tau_fs if p.thermostat_tau_fs is not None else 100 * p.timestep_fs) / 1000
    cut = p.min_distance_A if p.min_distance_A else 0.0
    threshold = p.outlier_sigma * sigma if sigma is not None else float("inf")
    lines = [
        "units metal",
        "atom_style atomic",
        "atom_modify map array",
        "boundary p p p",
        "read_data start.data",
        "pair_style legato",
        f"pair_coeff * * {model_file} {' '.join(type_names)}",
        f"neighbor {p.skin_A} bin",
        "neigh_modify every 1 delay 0 check yes",
        f"timestep {p.timestep_fs / 1000!r}",
        f"compute close all coord/atom cutoff {cut if cut > 0 else 1e-6!r}",
        "compute nclose all reduce max c_close",
        "variable afx atom abs(fx)",
        "variable afy atom abs(fy)",
        "variable afz atom abs(fz)",
        "compute fmax all reduce max v_afx v_afy v_afz",
        f'variable fout atom "(v_afx > {threshold!r}) || (v_afy > {threshold!r}) || (v_afz > {threshold!r})"'
        if sigma is not None
        else "variable fout atom 0",
        "compute nout all reduce sum v_fout",
        f"thermo_style custom {' '.join(COLUMNS)}",
        "thermo_modify format float %.10g norm no lost error",
        f"thermo {p.check_every}",
    ]
    conditions = []
    w = window(p)
    if w is not None:
        conditions += [f"(temp < {w[0]!r})", f"(temp > {w[1]!r})"]
    if cut > 0:
        conditions.append("(c_nclose > 0)")
    if p.max_force_outliers is not None and sigma is not None:
        conditions.append(f"(c_nout > {p.max_force_outliers})")
    if conditions:
        lines += [
            f'variable failed equal "{" || ".join(conditions)}"',
            f"fix halt all halt {p.check_every} v_failed > 0.5 error soft message yes",
        ]
    t = p.temperature_K
    nvt = f"fix integrate all nvt temp {t!r} {t!r} {tau_ps!r}"
    if p.nvt_steps:
        lines += [nvt, f"run {p.nvt_steps}"]
    if p.production == "nve":
        lines += ["unfix integrate"] if p.nvt_steps else []
        lines += ["fix integrate all nve"]
    elif not p.nvt_steps:
        lines += [nvt]
    lines += [f"run {p.max_steps}"]  # production nvt: the same fix nvt stays on
    return "\n".join(lines) + "\n"


def start_structure(
    base: Atoms, reps: tuple[int, int, int], seed: int, protocol: TfailProtocol, names
) -> Atoms:
    """The instance's box and velocities, drawn exactly as the Python engine draws them."""
    from legato.md.integrators import maxwell_boltzmann
    from legato.md.state import state_from_atoms

    n_atoms = len(base) * reps[0] * reps[1] * reps[2]
    atoms = replicate_box(base, reps, protocol.perturb_A, derived_seed(seed, n_atoms, 1))
    state = state_from_atoms([atoms], names, seeds=[derived_seed(seed, n_atoms, 2)])
    state = maxwell_boltzmann(state, protocol.temperature_K, exact=True)
    atoms.set_momenta(state.momenta.detach().cpu().numpy())
    return atoms


def _outcome(rows: dict[str, np.ndarray], halt_step: int | None, protocol: TfailProtocol, sigma) -> tuple:
    """(stage, step, reason, detail) of a finished instance; reason "budget" if alive."""
    if halt_step is None:
        return protocol.production_stage, protocol.nvt_steps + protocol.max_steps, "budget", ""
    k = int(np.nonzero(rows["step"] == halt_step)[0][-1])
    temp, nclose, nout = rows["temp"][k], rows["c_nclose"][k], rows["c_nout"][k]
    reasons, details = [], []
    if protocol.min_distance_A and nclose > 0:
        reasons.append("min_distance")
        details.append(f"an atom has a neighbour closer than {protocol.min_distance_A} Å")
    if protocol.max_force_outliers is not None and sigma is not None and nout > protocol.max_force_outliers:
        reasons.append("force_outliers")
        details.append(f"{int(nout)} atoms with a force beyond {protocol.outlier_sigma}σ")
    w = window(protocol)
    if w is not None and not w[0] <= temp <= w[1]:
        reasons.append("temperature")
        details.append(f"T = {temp:.1f} K outside [{w[0]}, {w[1]}] K")
    return protocol.clock(halt_step)[0], halt_step, ",".join(reasons) or "halt", "; ".join(details)


def run_instance(
    atoms: Atoms,
    model_file: Path,
    type_names: list[str],
    protocol: TfailProtocol,
    folder: Path,
    sigma: float | None,
    ranks: int,
    threads: int,
) -> tuple[str, int, str, str, dict[str, np.ndarray]]:
    """Run one instance in ``folder``: (stage, step, reason, detail, thermo columns)."""
    write_data(atoms, folder / "start.data", type_names, velocities=True)
    atomic_write_text(folder / "in.lmp", instance_input(protocol, str(model_file), type_names, sigma))
    error = None
    try:
        run_lammps("in.lmp", ranks=ranks, threads=threads, cwd=folder)
    except LegatoError as exc:
        error = str(exc)
    log = folder / "log.lammps"
    tables = read_thermo(log) if log.exists() else []
    rows = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]} if tables else {}
    if rows:  # a step ending one run starts the next: keep its first row
        _, first = np.unique(rows["step"], return_index=True)
        rows = {k: v[np.sort(first)] for k, v in rows.items()}
    if error is not None:
        if not rows or rows["step"].max() <= 0:
            raise LegatoError(error)  # the set-up failed: not an MD failure of the instance
        step = int(rows["step"][-1])
        return protocol.clock(step)[0], step, "lammps_error", error, rows
    halts = _HALT.findall(log.read_text(errors="replace"))
    stage, step, reason, detail = _outcome(rows, int(halts[0]) if halts else None, protocol, sigma)
    return stage, step, reason, detail, rows


def run_ensemble_lammps(
    model: torch.nn.Module | str | os.PathLike,
    structure: Atoms,
    sizes: str | Sequence[int | str],
    instances: int,
    protocol: TfailProtocol,
    out: str | os.PathLike,
    label: str,
    seed: int = 0,
    ranks: int = 1,
    threads: int = 1,
    force_sigma_eV_A: float | None = None,
    log=print,
) -> EnsembleResult:
    """Time-to-failure ensemble of one model through LAMMPS (module docstring); resumable
    per instance."""
    from legato.lammps.runtime import available
    from legato.md.fingerprint import model_fingerprint
    from legato.md.lock import folder_lock
    from legato.models import export_torchscript

    if protocol.min_pair_distance_A:
        raise LegatoError(
            "--engine lammps does not check min_pair_distance_A (per element pair); "
            "use --engine python or leave it unset"
        )
    reason = available()
    if reason is not None:
        raise LegatoError(reason)
    if instances < 1:
        raise LegatoError("need at least one instance per size")
    if ranks < 1 or threads < 1:
        raise LegatoError(f"ranks and threads must be >= 1, got {ranks} and {threads}")
    if not label or label != label.strip():
        raise LegatoError("the model label must be non-empty without outer spaces")
    reps_list = parse_sizes(sizes)
    model = eval_model(model)
    out = Path(out)
    validate_inputs(model, structure, reps_list, instances, protocol, seed, force_sigma_eV_A, 0)
    sigma = force_sigma_eV_A if force_sigma_eV_A is not None else training_force_sigma(model)
    if protocol.max_force_outliers is not None and sigma is None:
        raise LegatoError("force outliers as a failure need the training force σ (--force-sigma-eV-A)")
    names = list(model.type_names)
    wanted = [seed + i for i in range(instances)]
    batches: list[dict] = []
    ensure_writable_dir(out, "tfail output folder")
    with folder_lock(out):
        record = {
            **protocol.to_dict(),
            "engine": "lammps",
            "base_fingerprint": structure_fingerprint(structure),
            "base_n_atoms": len(structure),
        }
        _check_record(out / "protocol.json", "protocol", record, "the MD protocol, engine or base box")
        fingerprint = model_fingerprint(model)
        _check_record(
            out / "models.json", label, {"fingerprint": fingerprint}, f"the model labelled {label!r}"
        )
        home = out / "lammps" / _slug(label)
        model_file = home / "model.pth"
        if not model_file.is_file():
            home.mkdir(parents=True, exist_ok=True)
            export_torchscript(model, model_file)
        table_path = out / "failures.csv"
        for reps in reps_list:
            n_atoms = len(structure) * reps[0] * reps[1] * reps[2]
            table = read_failure_table(table_path) if table_path.exists() else FailureTable()
            todo = [s for s in wanted if (label, n_atoms, s) not in table]
            log(f"[{label}] N={n_atoms} ({replication_name(reps)}): {len(todo)} instance(s) to run in LAMMPS")
            for s in todo:
                folder = home / f"N{n_atoms}" / f"s{s}"
                if folder.exists():  # interrupted earlier: rerun the instance from its start
                    shutil.rmtree(folder)
                folder.mkdir(parents=True)
                t0 = time.perf_counter()
                atoms = start_structure(structure, reps, s, protocol, names)
                stage, step, why, detail, rows = run_instance(
                    atoms, model_file.resolve(), names, protocol, folder, sigma, ranks, threads
                )
                wall = time.perf_counter() - t0
                t = protocol.clock(step)[1]  # production clock; 0 in the first NVT stage
                rec = FailureRecord(
                    model=label,
                    n_atoms=n_atoms,
                    seed=s,
                    t_failure_steps=int(t),
                    t_failure_fs=float(t * protocol.timestep_fs),
                    reason=why,
                    censored=why == "budget",
                    extra={
                        "replication": replication_name(reps),
                        "stage": stage,
                        "t_total_steps": str(step),
                        "detail": detail,
                    },
                )
                outliers = [
                    {
                        "model": label,
                        "n_atoms": n_atoms,
                        "seed": s,
                        "run": f"N{n_atoms}_s{s}",
                        "step": int(st),
                        "nve_step": int(st) - protocol.nvt_steps,
                        "outliers": int(rows["c_nout"][k]) if sigma is not None else "",
                        "max_force_eV_A": max(rows[f"c_fmax[{d}]"][k] for d in (1, 2, 3)),
                        "temperature_K": rows["temp"][k],
                    }
                    for k, st in enumerate(rows.get("step", []))
                ]
                keep = [
                    r
                    for r in read_outliers(out / "outliers.csv")
                    if not (r["model"] == label and int(r["n_atoms"]) == n_atoms and int(r["seed"]) == s)
                ]
                _write_outliers(out / "outliers.csv", keep + outliers)
                table = read_failure_table(table_path) if table_path.exists() else FailureTable()
                table.append(rec)
                write_failure_table(table, table_path, overwrite=True)
                info = {
                    "label": label,
                    "engine": "lammps",
                    "n_atoms": n_atoms,
                    "replication": replication_name(reps),
                    "seeds": [s],
                    "ranks": ranks,
                    "threads": threads,
                    "wall_s_this_call": wall,
                    "last_step": step,
                }
                with open(out / "runs.jsonl", "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(info) + "\n")
                batches.append(info)
            done = read_failure_table(table_path) if table_path.exists() else FailureTable()
            here = [r for r in done if r.n_atoms == n_atoms and r.model == label]
            log(f"[{label}] N={n_atoms}: {_describe(here)}")
        table = read_failure_table(table_path) if table_path.exists() else FailureTable()
    sizes_n = {len(structure) * a * b * c for a, b, c in reps_list}
    mine = [r for r in table if r.model == label and r.seed in set(wanted) and r.n_atoms in sizes_n]
    return EnsembleResult(FailureTable(mine, table.extra_columns), batches, out)
