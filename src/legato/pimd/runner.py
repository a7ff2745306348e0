"""The PIMD run loop: :class:`legato.md.runner.MDRunner` on a batch of ring polymers.

The loop, checkpoints (exact restart), output-folder rules and the failure detectors are
those of ``legato md``; here the batch holds R ring polymers × P beads (see
:mod:`legato.pimd.normal_modes`), the detectors see each polymer as one replica (all its
beads, physical temperature), and a failed polymer leaves the batch with all its beads.

Outputs (in ``output.directory``): ``thermo.csv`` (per polymer: temperature, bead-averaged
potential, spring energy, centroid-virial and primitive kinetic energy, conserved quantity),
``estimators.csv`` (per polymer and species: kinetic energies per atom, radius of gyration),
``centroid_XXX.extxyz`` (centroid positions and momenta m·v̄ per polymer, ASE-readable),
``beads_XXX.extxyz`` (all beads, if ``beads_every``), ``checks.csv``, ``failures.csv``,
``checkpoint.pt``, ``resolved_config.yaml``, ``summary.json`` (block-averaged estimators).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from legato.errors import LegatoError
from legato.md.runner import MDResult, MDRunner
from legato.md.state import MDState, state_from_atoms
from legato.pimd.config import PIMDConfig, validate_pimd_config
from legato.pimd.estimators import (
    POLYMER_FIELDS,
    SPECIES_FIELDS,
    SUMMARY_POLYMER,
    SUMMARY_SPECIES,
    polymer_rows,
    species_rows,
    summarise,
)
from legato.pimd.integrator import RingPolymerIntegrator, polymer_momenta
from legato.pimd.normal_modes import polymer_view, ring_layout


class PIMDRunner(MDRunner):
    """Runs ``replicas`` ring polymers of ``beads`` beads of ``atoms_list`` (cycled)."""

    progress_label = "pimd"

    def __init__(
        self,
        potential: torch.nn.Module,
        atoms_list: Sequence[Atoms],
        config: PIMDConfig | dict,
        output_dir: str | Path | None = None,
        type_names: Sequence[str] | None = None,
        force_sigma_eV_A: float | None = None,
        log: Callable[[str], None] | None = None,
    ):
        cfg = config if isinstance(config, PIMDConfig) else validate_pimd_config(config)
        super().__init__(potential, atoms_list, cfg, output_dir, type_names, force_sigma_eV_A, log)
        self.n_beads = cfg.beads
        self.group = cfg.beads  # a failed polymer leaves with all its beads
        self.species_table: list[dict] = []  # estimators.csv rows, kept only without an output folder
        _set_masses(self.structures, cfg.masses_amu or {})

    # ------------------------------------------------------------------ set-up
    def initial_state(self) -> MDState:
        cfg, p = self.config, self.n_beads
        seeds = self.replica_seeds()  # one per polymer
        atoms = [self.structures[r // p % len(self.structures)] for r in range(cfg.replicas * p)]
        state = state_from_atoms(
            atoms,
            self.type_names,
            seeds=[seeds[r // p] for r in range(len(atoms))],
            replica_ids=list(range(len(atoms))),
        )
        return polymer_momenta(state, p, cfg.temperature_K, exact=cfg.exact_initial_temperature)

    def integrator(self, k: int) -> RingPolymerIntegrator:
        cfg = self.config
        th = cfg.thermostat
        return RingPolymerIntegrator(
            self.n_beads,
            cfg.timestep_fs,
            cfg.temperature_K,
            ensemble=cfg.schedule[k].ensemble,
            centroid=th.centroid,
            tau_centroid_fs=th.tau_centroid_fs,
            pile_lambda=th.pile_lambda,
            propagator=cfg.propagator,
        )

    # ------------------------------------------------------------------ recording
    def _record_thermo(self, integ: RingPolymerIntegrator) -> None:
        s = self.state
        time_fs = s.step * self.config.timestep_fs
        rows = polymer_rows(s, integ, time_fs, self.stage)
        sp_rows = species_rows(s, integ, self.type_names, time_fs)
        self.files.rows("thermo.csv", POLYMER_FIELDS, rows)
        self.files.rows("estimators.csv", SPECIES_FIELDS, sp_rows)
        if self.dir is None:
            self.thermo.extend(rows)
            self.species_table.extend(sp_rows)

    def centroid_frame(self, state: MDState, r: int, info: dict | None = None) -> Atoms:
        """Polymer at batch position ``r``: centroid positions, momenta Σp_k/P, mean energy
        and forces of the beads."""
        p = self.n_beads
        lay = ring_layout(state, p)
        sel = lay.polymer == r
        view = lay.bead_view[:, sel]  # [P, a]
        atoms = state.to_atoms(r * p, self.type_names)
        atoms.positions = state.positions[view].mean(0).numpy()
        atoms.set_momenta(state.momenta[view].mean(0).numpy())
        atoms.calc = SinglePointCalculator(
            atoms,
            energy=float(state.energy[r * p : (r + 1) * p].mean()),
            forces=state.forces[view].mean(0).numpy(),
        )
        atoms.info.update(self._info(state, r))
        atoms.info.update(info or {})
        return atoms

    def beads_frame(self, state: MDState, r: int) -> Atoms:
        """All P beads of polymer ``r`` as one structure (bead-major; array ``bead``)."""
        p = self.n_beads
        frames = [state.to_atoms(r * p + k, self.type_names) for k in range(p)]
        atoms = frames[0].copy()
        for f in frames[1:]:
            atoms += f
        atoms.set_array("bead", np.repeat(np.arange(p), len(frames[0])))
        atoms.info.update(self._info(state, r))
        return atoms

    def _info(self, state: MDState, r: int) -> dict:
        p = self.n_beads
        return {
            "step": state.step,
            "time_fs": state.step * self.config.timestep_fs,
            "replica": int(state.replica_ids[r * p]) // p,
            "n_beads": p,
        }

    def _record_frames(self) -> None:
        s, p = self.state, self.n_beads
        every = self.config.output.beads_every
        for r, rid in enumerate((s.replica_ids[::p] // p).tolist()):
            self.files.frame(f"centroid_{rid:03d}.extxyz", self.centroid_frame(s, r))
            if every and s.step % every == 0:
                self.files.frame(f"beads_{rid:03d}.extxyz", self.beads_frame(s, r))

    # ------------------------------------------------------------------ failure detection
    def unit_state(self, state: MDState) -> MDState:
        """The detectors of legato md see each ring polymer as one replica (:func:`polymer_view`)."""
        return polymer_view(state, self.n_beads)

    def unit_frame(self, state: MDState, r: int) -> Atoms:
        return self.centroid_frame(state, r)

    # ------------------------------------------------------------------ summary
    def summary(self, first_step: int) -> dict:
        """The MD summary per ring polymer, plus block-averaged estimators."""
        beads = self.state
        self.state = polymer_view(beads, self.n_beads)
        try:
            out = super().summary(first_step)
        finally:
            self.state = beads
        cfg = self.config
        thermo, species = self._tables()
        skip, blocks = cfg.skip_steps(), cfg.estimators.blocks
        out.update(
            {
                "beads": self.n_beads,
                "temperature_K": cfg.temperature_K,
                "timestep_fs": cfg.timestep_fs,
                "masses_amu": _masses(self.structures),
                "estimators": {
                    "skip_steps": skip,
                    "blocks": blocks,
                    "polymer": summarise(thermo, SUMMARY_POLYMER, None, skip, blocks),
                    "species": summarise(species, SUMMARY_SPECIES, "species", skip, blocks),
                },
            }
        )
        return out

    def _tables(self) -> tuple[list[dict], list[dict]]:
        if self.dir is None:
            return self.thermo, self.species_table
        self.files.flush()
        out = []
        for name in ("thermo.csv", "estimators.csv"):
            path = self.dir / name
            if not path.exists():
                out.append([])
                continue
            with open(path, newline="") as fh:
                out.append(list(csv.DictReader(fh)))
        return out[0], out[1]


def _set_masses(structures: list[Atoms], masses: dict[str, float]) -> None:
    present = {s for a in structures for s in a.get_chemical_symbols()}
    unknown = sorted(set(masses) - present)
    if unknown:
        raise LegatoError(f"masses_amu names elements not in the structure: {', '.join(unknown)}")
    for atoms in structures:
        m = atoms.get_masses()
        for el, value in masses.items():
            m[np.array(atoms.get_chemical_symbols()) == el] = value
        atoms.set_masses(m)


def _masses(structures: list[Atoms]) -> dict[str, list[float]]:
    out: dict[str, set[float]] = {}
    for a in structures:
        for s, m in zip(a.get_chemical_symbols(), a.get_masses(), strict=True):
            out.setdefault(s, set()).add(round(float(m), 6))
    return {s: sorted(v) for s, v in out.items()}


def format_pimd_summary(summary: dict) -> str:
    """A few lines for the terminal: survival, speed and the estimators with errors."""
    est = summary["estimators"]
    lines = [
        f"PIMD: {summary['replicas']} ring polymers x {summary['beads']} beads at "
        f"{summary['temperature_K']:g} K, last step {summary['last_step']}/{summary['steps_requested']}, "
        f"{len(summary['alive'])} alive, {len(summary['failed'])} failed",
    ]
    for f in summary["failed"]:
        lines.append(f"  polymer {f['replica']}: failed at step {f['step']}: {f['detail']}")
    pol = est["polymer"]
    if pol.get("samples"):
        lines.append(
            f"  averages over {pol['samples']} samples after step {est['skip_steps']} (± block error):"
        )
        for key in ("temperature_K", "potential_eV", "kinetic_cv_eV"):
            lines.append(f"    {key:24s} {pol[key]['mean']:.6g} ± {pol[key]['stderr']:.2g}")
        for sp, e in est["species"].items():
            k = e["kinetic_cv_eV_per_atom"]
            rg = e["rg_A"]
            lines.append(
                f"    {sp}: K_cv {k['mean'] * 1000:.2f} ± {k['stderr'] * 1000:.2f} meV/atom, "
                f"R_g {rg['mean']:.4f} ± {rg['stderr']:.4f} Å"
            )
    sps = summary["steps_per_s_this_session"]
    if sps:
        lines.append(f"  {sps:.2f} steps/s, {summary['model_calls']} model calls")
    return "\n".join(lines)


def run_pimd(
    atoms: Atoms | Sequence[Atoms],
    potential: torch.nn.Module,
    config: PIMDConfig | dict | None = None,
    output_dir: str | Path | None = None,
    resume: bool = False,
    **overrides,
) -> MDResult:
    """Run PIMD from Python; ``config`` fields may be given as keywords (``beads=8, steps=200``)."""
    data = config.model_dump() if isinstance(config, PIMDConfig) else dict(config or {})
    data.update(overrides)
    data.setdefault("structure", "<ase.Atoms>")
    if data.get("model") is None and data.get("reference_potential") is None:
        data["model"] = "<torch.nn.Module>"
    if output_dir is None:
        out = data.get("output", {})
        out = dict(out if isinstance(out, dict) else out.model_dump())
        out.setdefault("progress", False)
        data["output"] = out
    cfg = validate_pimd_config(data)
    atoms_list = [atoms] if isinstance(atoms, Atoms) else list(atoms)
    return PIMDRunner(potential, atoms_list, cfg, output_dir=output_dir).run(resume=resume)
