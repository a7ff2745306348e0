"""The MD run loop: schedule of ensembles, failure checks, outputs, checkpoints, summary.

Outputs (in ``output.directory``): ``thermo.csv`` (every ``thermo_every`` steps, one row per
replica), ``checks.csv`` (every check: temperature, largest force, force-outlier count,
closest pair, drift, status), ``traj_XXX.extxyz`` per replica (ASE-readable, every
``trajectory_every`` steps), ``failures.csv`` and ``last_good_XXX.extxyz`` for replicas that
failed, ``checkpoint.pt`` (exact restart, atomic write), ``resolved_config.yaml`` and
``summary.json``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from tqdm import tqdm

from legato.errors import LegatoError
from legato.fileio import atomic_torch_save, atomic_write_text, ensure_writable_dir, move_aside
from legato.md.config import MDConfig, validate_config
from legato.md.failure import (
    GUARD_REASONS,
    CheckResult,
    Failure,
    FailureDetector,
    nonfinite_replicas,
    runaway_replicas,
)
from legato.md.fingerprint import identity_differences, model_identity
from legato.md.forces import ForceField
from legato.md.integrators import Integrator, make_integrator, maxwell_boltzmann
from legato.md.outputs import (
    CHECK_FIELDS,
    CHECKPOINT,
    FAILURE_FIELDS,
    RESOLVED_CONFIG,
    THERMO_FIELDS,
    RunFiles,
)
from legato.md.state import DTYPE, MDState, state_from_atoms


def replica_seeds(seed: int, n: int) -> list[int]:
    """Independent, well-mixed 31-bit seeds for replicas 0..n−1 of a run with ``seed``."""
    return [int(np.random.SeedSequence([seed, r]).generate_state(1)[0] >> 1) for r in range(n)]


def type_names_of(potential: torch.nn.Module, atoms_list: Sequence[Atoms]) -> list[str]:
    names = getattr(potential, "type_names", None) or getattr(potential, "hparams", {}).get("type_names")
    if names:
        return list(names)
    return sorted({s for a in atoms_list for s in a.get_chemical_symbols()})


def model_force_sigma(potential: torch.nn.Module) -> float | None:
    """σ of the training force components if the model file recorded it (``extra``)."""
    extra = getattr(potential, "extra", None) or {}
    for key in ("force_std", "force_sigma"):
        if key in extra:
            return float(extra[key])
    stats = extra.get("stats") or extra.get("dataset_statistics") or {}
    if isinstance(stats, dict) and "force_std" in stats:
        return float(stats["force_std"])
    return None


def _stderr_line(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass
class MDResult:
    state: MDState  # surviving replicas at the end
    failures: list[Failure]
    summary: dict
    thermo: list[dict] = field(default_factory=list)  # kept only without an output directory
    checks: list[dict] = field(default_factory=list)


#: config fields that may differ between a checkpoint and the resuming run
_RESUMABLE_CHANGES = {"steps", "output", "device"}


class MDRunner:
    """Runs R replicas of ``atoms_list`` (cycled) with ``potential`` as the config says."""

    #: name on the progress bar (subclasses running other engines on this loop rename it)
    progress_label = "md"

    def __init__(
        self,
        potential: torch.nn.Module,
        atoms_list: Sequence[Atoms],
        config: MDConfig | dict,
        output_dir: str | Path | None = None,
        type_names: Sequence[str] | None = None,
        force_sigma_eV_A: float | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.log = log or _stderr_line
        self.config = config if isinstance(config, MDConfig) else validate_config(config)
        cfg = self.config
        if not atoms_list:
            raise LegatoError("no structures given for MD")
        self.potential = potential
        self.type_names = list(type_names or type_names_of(potential, atoms_list))
        self.structures = [
            a.repeat(cfg.supercell) if cfg.supercell != (1, 1, 1) else a.copy() for a in atoms_list
        ]
        self.dir = None if output_dir is None else Path(output_dir)
        self.files = RunFiles(self.dir)
        from legato.models.fast import fast_model

        self.ff = ForceField(
            fast_model(potential, cfg.compile), skin_A=cfg.neighbor.skin_A, device=cfg.device
        )
        self.model_identity = model_identity(potential, self.type_names, self.ff.r_max, self.ff.dtype)
        sigma = force_sigma_eV_A
        self.sigma_source = "argument"
        if sigma is None and cfg.checks.force_sigma_eV_A != "auto":
            sigma, self.sigma_source = float(cfg.checks.force_sigma_eV_A), "config"
        if sigma is None:
            sigma = model_force_sigma(potential)
            self.sigma_source = "model file"
        self.detector = FailureDetector(
            every=cfg.checks.every,
            temperature_window_K=cfg.temperature_window(),
            force_sigma_eV_A=sigma,  # None until step 0 is known (then from the initial forces)
            outlier_sigma=cfg.checks.outlier_sigma,
            max_force_outliers=cfg.checks.max_force_outliers,
            min_distance_A=cfg.checks.min_distance_A,
            max_drift_eV_per_atom=cfg.checks.max_drift_eV_per_atom,
            min_pair_distance_A=cfg.checks.min_pair_distance_A,
        )
        self.pair_limits = pair_limit_table(cfg.checks.min_pair_distance_A, self.type_names)
        self.failures: list[Failure] = []
        self.thermo: list[dict] = []
        self.checks: list[dict] = []
        self.stage = 0
        self.conserved_ref: torch.Tensor | None = None
        self.last_good: MDState | None = None
        self.state: MDState | None = None
        self.wall_before = 0.0  # wall time of earlier sessions (resume)

    # ------------------------------------------------------------------ set-up
    def initial_state(self) -> MDState:
        cfg = self.config
        atoms = [self.structures[r % len(self.structures)] for r in range(cfg.replicas)]
        state = state_from_atoms(atoms, self.type_names, seeds=self.replica_seeds())
        if cfg.initial_velocities == "structure":
            return state
        return maxwell_boltzmann(state, cfg.temperature_K, exact=cfg.exact_initial_temperature)

    def integrator(self, k: int) -> Integrator:
        cfg, st = self.config, self.config.schedule[k]
        return make_integrator(
            st.ensemble,
            cfg.timestep_fs,
            cfg.temperature_K if st.temperature_K is None else st.temperature_K,
            tau_fs=cfg.thermostat.tau_fs,
            chain_length=cfg.thermostat.chain_length,
            friction_per_fs=cfg.thermostat.friction_per_fs,
        )

    def _prepare_directory(self, resume: bool) -> bool:
        """Check (and create) the output folder; returns whether to resume.

        A folder left by a run stopped before its first checkpoint (it holds the resolved
        config but no checkpoint) cannot be resumed: it is moved aside and the run starts anew.
        """
        if self.dir is None:
            if resume:
                raise LegatoError("resume needs an output directory")
            return False
        ckpt = self.dir / CHECKPOINT
        if resume and not (self.dir / RESOLVED_CONFIG).exists() and not ckpt.exists():
            raise LegatoError(f"no checkpoint to resume from in {self.dir}")
        ensure_writable_dir(self.dir, "MD output folder")
        if ckpt.exists():
            if resume:
                return True
            raise LegatoError(
                f"output directory {self.dir} is not empty (it holds an MD run with a checkpoint); "
                "continue it with --resume or choose another directory"
            )
        if (self.dir / RESOLVED_CONFIG).exists():
            moved = move_aside(self.dir, "incomplete")
            self.log(f"{self.dir} holds an MD run stopped before its first checkpoint: moved it to {moved}")
            self.dir.mkdir()
            return False
        if any(self.dir.iterdir()):
            raise LegatoError(
                f"output directory {self.dir} is not empty and holds no MD run; choose another directory"
            )
        return False

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        if self.dir is None:
            return
        blob = {
            "format": "legato-md-checkpoint-v1",
            "config": self.config.model_dump(mode="json"),
            "state": self.state.state_dict(),
            "stage": self.stage,
            "conserved_ref": self.conserved_ref,
            "last_good": None if self.last_good is None else self.last_good.state_dict(),
            "failures": self.failures,
            "force_sigma": self.detector.force_sigma,
            "sigma_source": self.sigma_source,
            "file_sizes": self.files.sizes(),
            "wall_time_s": self.wall_before + (time.perf_counter() - self._t0),
            "type_names": self.type_names,
            "model": self.model_identity,
        }
        atomic_torch_save(blob, self.dir / CHECKPOINT)

    def load_checkpoint(self) -> None:
        blob = torch.load(self.dir / CHECKPOINT, map_location="cpu", weights_only=False)
        if blob.get("format") != "legato-md-checkpoint-v1":
            raise LegatoError(f"{self.dir / CHECKPOINT} is not a legato MD checkpoint")
        old, new = blob["config"], self.config.model_dump(mode="json")
        for key in sorted(set(old) | set(new)):
            if key not in _RESUMABLE_CHANGES and old.get(key) != new.get(key):
                raise LegatoError(f"config key '{key}' differs from the checkpoint's; cannot resume")
        self._check_model(blob.get("model"))
        self.state = MDState.from_state_dict(blob["state"])
        self.stage = blob["stage"]
        self.conserved_ref = blob["conserved_ref"]
        self.last_good = None if blob["last_good"] is None else MDState.from_state_dict(blob["last_good"])
        self.failures = list(blob["failures"])
        self.detector.force_sigma = blob["force_sigma"]
        self.sigma_source = blob["sigma_source"]
        self.wall_before = float(blob["wall_time_s"])
        self.files.truncate_to(blob["file_sizes"])

    def _check_model(self, stored: dict | None) -> None:
        """Refuse to continue a run with another model than the one it started with."""
        where = self.dir / CHECKPOINT
        if stored is None:  # written before checkpoints recorded their model
            self.log(
                f"warning: {where} records no model fingerprint; cannot check that the model is the same"
            )
            return
        diff = identity_differences(stored, self.model_identity)
        if diff:
            raise LegatoError(
                f"the model differs from the one {where} was run with ({', '.join(diff)}); "
                "resume with that model or start a new run"
            )

    # ------------------------------------------------------------------ recording
    def _record_thermo(self, integ: Integrator) -> None:
        s = self.state
        ke, h, temp = s.kinetic_energy(), integ.conserved(s), s.temperature_K()
        n = s.atoms_per_replica()
        rows = [
            {
                "step": s.step,
                "time_fs": s.step * self.config.timestep_fs,
                "stage": self.stage,
                "ensemble": integ.ensemble,
                "replica": int(rid),
                "n_atoms": int(n[r]),
                "temperature_K": float(temp[r]),
                "potential_eV": float(s.energy[r]),
                "kinetic_eV": float(ke[r]),
                "total_eV": float(s.energy[r] + ke[r]),
                "conserved_eV": float(h[r]),
            }
            for r, rid in enumerate(s.replica_ids.tolist())
        ]
        self.files.rows("thermo.csv", THERMO_FIELDS, rows)
        if self.dir is None:
            self.thermo.extend(rows)

    def _frame(self, state: MDState, r: int, info: dict | None = None) -> Atoms:
        atoms = state.to_atoms(r, self.type_names)
        sl = state.atom_slice(r)
        atoms.calc = SinglePointCalculator(
            atoms, energy=float(state.energy[r]), forces=state.forces[sl].numpy().copy()
        )
        atoms.info.update(
            {
                "step": state.step,
                "time_fs": state.step * self.config.timestep_fs,
                "replica": int(state.replica_ids[r]),
            }
        )
        atoms.info.update(info or {})
        return atoms

    def _record_frames(self) -> None:
        for r, rid in enumerate(self.state.replica_ids.tolist()):
            self.files.frame(f"traj_{rid:03d}.extxyz", self._frame(self.state, r))

    # ------------------------------------------------------------------ failure units
    #: batch replicas that fail and leave together (PIMD: the P beads of a ring polymer)
    group = 1

    def unit_state(self, state: MDState) -> MDState:
        """The batch as the failure detectors see it: one replica per unit."""
        return state

    def unit_ids(self, state: MDState) -> list[int]:
        """Ids of the units in ``state``, in batch order."""
        g = self.group
        return torch.div(state.replica_ids[::g], g, rounding_mode="floor").tolist()

    def unit_frame(self, state: MDState, r: int) -> Atoms:
        """The frame saved for unit ``r`` (batch position) as its last good state."""
        return self._frame(state, r)

    def _check(self, integ: Integrator, full: bool) -> None:
        """Run the detectors (``full``) or only the every-step non-finite guard; drop failures."""
        s, g = self.state, self.group
        view = self.unit_state(s)
        conserved = integ.conserved(s)
        alive = set(self.unit_ids(s))
        errors = {rid // g: msg for rid, msg in self.ff.errors.items() if rid // g in alive}
        if not full and not errors:
            drift = (conserved - self.conserved_ref).abs() / view.atoms_per_replica().to(DTYPE)
            if not bool((nonfinite_replicas(view) | runaway_replicas(view.temperature_K(), drift)).any()):
                return
        min_dist = self.ff.min_distance(s.n_replicas).view(-1, g).amin(1)
        pair = None
        if self.pair_limits is not None:
            pair = self.ff.pair_distance_ratio(s.species, s.n_replicas, self.pair_limits).view(-1, g).amin(1)
        res = self.detector.check(view, conserved, self.conserved_ref, min_dist, errors, pair)
        if not full:  # only the every-step guards count between checks
            res.reasons = [[x for x in rs if x in GUARD_REASONS] for rs in res.reasons]
        else:
            rows = res.rows()
            self.files.rows("checks.csv", CHECK_FIELDS, rows)
            if self.dir is None:
                self.checks.extend(rows)
        failed = res.failed
        if bool(failed.any()):
            self._fail(res, failed, errors)
        if full:
            self.last_good = self.state

    def _fail(self, res: CheckResult, failed: torch.Tensor, errors: dict[int, str]) -> None:
        g = self.group
        start = self.config.stage_bounds()[self.stage][0]
        new_failures = []
        for r in torch.nonzero(failed).flatten().tolist():
            rid = res.replica_ids[r]
            good_atoms, good_step = None, -1
            lg = self.last_good
            if lg is not None:
                ids = self.unit_ids(lg)
                if rid in ids:
                    good_atoms, good_step = self.unit_frame(lg, ids.index(rid)), lg.step
            f = Failure(
                replica=rid,
                step=res.step,
                reason=res.reasons[r][0],
                detail=self.detector.describe(res, r, errors),
                stage=self.stage,
                steps_in_stage=res.step - start,
                last_good_step=good_step,
                last_good=good_atoms,
            )
            new_failures.append(f)
            if good_atoms is not None:
                good_atoms.info.update({"failure_step": f.step, "reason": f.reason})
                self.files.frame(f"last_good_{rid:03d}.extxyz", good_atoms)
            for k in range(g):
                self.ff.errors.pop(rid * g + k, None)
        self.failures.extend(new_failures)
        self.files.rows("failures.csv", FAILURE_FIELDS, [f.row() for f in new_failures])
        keep = ~failed
        self.state = self.state.select(keep.repeat_interleave(g))
        self.conserved_ref = self.conserved_ref[keep]

    # ------------------------------------------------------------------ the loop
    def run(self, resume: bool = False) -> MDResult:
        cfg = self.config
        resume = self._prepare_directory(resume)
        self._t0 = time.perf_counter()
        if resume:
            self.load_checkpoint()
        else:
            self.state = self.initial_state()
            if self.dir is not None:
                atomic_write_text(
                    self.dir / RESOLVED_CONFIG, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
                )
        bounds = cfg.stage_bounds()
        first_step = self.state.step
        pbar = tqdm(
            total=cfg.steps,
            initial=first_step,
            desc=self.progress_label,
            unit="step",
            disable=not cfg.output.progress,
            dynamic_ncols=True,
        )
        try:
            for k in range(self.stage, len(bounds)):
                start, end = bounds[k]
                if end <= start or self.state.step >= end or self.state.n_replicas == 0:
                    continue
                integ = self.integrator(k)
                if self.state.step == start:  # a fresh stage (a resumed one keeps its variables)
                    self.stage = k
                    self.state = integ.init(self.state, self.ff)
                    self.conserved_ref = integ.conserved(self.state)
                    if start == 0:
                        self._start_of_run(integ)
                while self.state.step < end and self.state.n_replicas > 0:
                    self.state = integ.step(self.state, self.ff)
                    step = self.state.step
                    self._check(integ, full=self.detector.due(step))
                    if self.state.n_replicas and step % cfg.output.thermo_every == 0:
                        self._record_thermo(integ)
                    if (
                        self.state.n_replicas
                        and cfg.output.trajectory_every
                        and (step % cfg.output.trajectory_every == 0)
                    ):
                        self._record_frames()
                    if cfg.output.checkpoint_every and step % cfg.output.checkpoint_every == 0:
                        self.save_checkpoint()
                    pbar.update(1)
                    pbar.set_postfix(alive=self.n_alive(), refresh=False)
            self.save_checkpoint()
        finally:
            pbar.close()
            self.files.close()
        summary = self.summary(first_step)
        if self.dir is not None:
            atomic_write_text(self.dir / "summary.json", json.dumps(summary, indent=2))
            rows = summary["instances"]
            if rows:
                buf = io.StringIO()
                writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
                atomic_write_text(self.dir / "instances.csv", buf.getvalue())
        return MDResult(self.state, self.failures, summary, self.thermo, self.checks)

    def n_alive(self) -> int:
        """Units (replicas; PIMD: ring polymers) still running (shown on the progress bar)."""
        return self.state.n_replicas // self.group

    def _start_of_run(self, integ: Integrator) -> None:
        if self.detector.force_sigma is None:  # σ from the initial forces of all replicas
            self.detector.force_sigma = float(self.state.forces.std())
            self.sigma_source = "initial forces"
        self._check(integ, full=True)
        if self.state.n_replicas:
            self._record_thermo(integ)
            if self.config.output.trajectory_every:
                self._record_frames()

    def summary(self, first_step: int) -> dict:
        cfg, s = self.config, self.state
        wall = time.perf_counter() - self._t0
        steps = s.step - first_step
        n_atoms = [len(self.structures[r % len(self.structures)]) for r in range(cfg.replicas)]
        return {
            "replicas": cfg.replicas,
            "atoms_per_replica": n_atoms,
            "steps_requested": cfg.steps,
            "last_step": s.step,
            "alive": s.replica_ids.tolist(),
            "failed": [f.row() for f in self.failures],
            "stages": [
                {"ensemble": st.ensemble, "start": b[0], "end": b[1]}
                for st, b in zip(cfg.schedule, cfg.stage_bounds(), strict=True)
            ],
            "force_sigma_eV_A": self.detector.force_sigma,
            "force_sigma_source": self.sigma_source,
            "wall_time_s": self.wall_before + wall,
            "steps_per_s_this_session": steps / wall if wall > 0 else None,
            "model_calls": self.ff.n_calls,
            "neighbor_list_builds": self.ff.neighbors.n_builds,
            "instances": self.instances(),
        }

    def replica_seeds(self) -> list[int]:
        """The seed of each replica's random streams (velocities, Langevin noise)."""
        return replica_seeds(self.config.seed, self.config.replicas)

    def instances(self) -> list[dict]:
        """One row per replica: time to failure in its stage, or censored at the budget.

        ``t_failure_steps`` counts the steps of the stage the replica was in when it failed
        (for NVT → NVE, the NVE steps: the paper's t_failure); a replica alive at the end is
        censored at the steps it ran in its last stage.
        """
        cfg, s = self.config, self.state
        seeds = self.replica_seeds()
        bounds = cfg.stage_bounds()
        failed = {f.replica: f for f in self.failures}
        rows = []
        for rid in range(cfg.replicas):
            f = failed.get(rid)
            if f is not None:
                stage, steps, step, reason = f.stage, f.steps_in_stage, f.step, f.reason
            elif rid in s.replica_ids.tolist():
                stage, step, reason = self.stage, s.step, ""
                steps = s.step - bounds[stage][0]
            else:
                continue
            rows.append(
                {
                    "replica": rid,
                    "seed": seeds[rid],
                    "n_atoms": len(self.structures[rid % len(self.structures)]),
                    "stage": stage,
                    "ensemble": cfg.schedule[stage].ensemble,
                    "step": step,
                    "t_failure_steps": steps,
                    "t_failure_fs": steps * cfg.timestep_fs,
                    "censored": f is None,
                    "reason": reason,
                }
            )
        return rows


def format_summary(summary: dict) -> str:
    """A few lines for the terminal."""
    lines = [
        f"MD: {summary['replicas']} replicas, last step {summary['last_step']}/"
        f"{summary['steps_requested']}, {len(summary['alive'])} alive, "
        f"{len(summary['failed'])} failed",
    ]
    for f in summary["failed"]:
        lines.append(
            f"  replica {f['replica']}: failed at step {f['step']} "
            f"({f['steps_in_stage']} steps into stage {f['stage']}): {f['detail']}"
        )
    sps = summary["steps_per_s_this_session"]
    if sps:
        lines.append(
            f"  {sps:.2f} steps/s, {summary['model_calls']} model calls, "
            f"{summary['neighbor_list_builds']} neighbour-list builds"
        )
    return "\n".join(lines)


def run_md(
    atoms: Atoms | Sequence[Atoms],
    potential: torch.nn.Module,
    config: MDConfig | dict | None = None,
    output_dir: str | Path | None = None,
    resume: bool = False,
    **overrides,
) -> MDResult:
    """Run batched MD from Python. ``config`` fields may also be given as keywords
    (e.g. ``replicas=4, steps=2000``); ``structure`` is not needed here."""
    data = config.model_dump() if isinstance(config, MDConfig) else dict(config or {})
    data.update(overrides)
    data.setdefault("structure", "<ase.Atoms>")
    if data.get("model") is None and data.get("reference_potential") is None:
        data["model"] = "<torch.nn.Module>"
    if output_dir is None:
        data.setdefault("output", {})
        out = data["output"] if isinstance(data["output"], dict) else data["output"].model_dump()
        out.setdefault("progress", False)
        data["output"] = out
    cfg = validate_config(data)
    atoms_list = [atoms] if isinstance(atoms, Atoms) else list(atoms)
    runner = MDRunner(potential, atoms_list, cfg, output_dir=output_dir)
    return runner.run(resume=resume)


__all__ = ["MDResult", "MDRunner", "format_summary", "replica_seeds", "run_md"]


def pair_limit_table(pairs: dict[str, float] | None, type_names: list[str]) -> torch.Tensor | None:
    """[n_types, n_types] closest allowed distances (Å; 0: unlimited) from {"H-H": 1.0, ...}."""
    if not pairs:
        return None
    table = torch.zeros(len(type_names), len(type_names), dtype=torch.float64)
    for key, d in pairs.items():
        a, b = key.split("-")
        if a not in type_names or b not in type_names:
            raise LegatoError(f"checks.min_pair_distance_A: {key}: the model's species are {type_names}")
        i, j = type_names.index(a), type_names.index(b)
        table[i, j] = table[j, i] = d
    return table
