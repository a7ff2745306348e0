"""PIMD estimators per ring polymer and per species, and block averages with errors.

For atom i with beads q_k (k = 1..P), centroid q̄ = Σ_k q_k / P, forces F_k = −∇V(q_k):

- primitive kinetic energy   K_prim = 3P/(2β) − (1/P) Σ_k ½ m ω_P² |q_k − q_{k+1}|²
- centroid-virial kinetic    K_cv   = 3/(2β) − (1/2P) Σ_k (q_k − q̄)·F_k
- radius of gyration         R_g²   = Σ_k |q_k − q̄|² / P

(the beads are sampled at T_P = P·T, hence the 1/P; both kinetic estimators have the
quantum kinetic energy of the discretised path integral as their mean; K_cv has the smaller
variance). The potential energy is the bead average of V.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from legato.md.outputs import ROW_FIELDS
from legato.md.state import DTYPE, MDState
from legato.pimd.integrator import RingPolymerIntegrator
from legato.pimd.normal_modes import polymer_view, ring_layout, to_normal_modes
from legato.spectra.vacf import isotope_label

POLYMER_FIELDS = [
    *ROW_FIELDS,
    "n_beads",
    "temperature_K",
    "potential_eV",
    "spring_eV",
    "kinetic_cv_eV",
    "kinetic_prim_eV",
    "conserved_eV",
]
SPECIES_FIELDS = [
    "step",
    "time_fs",
    "replica",
    "species",
    "n_atoms",
    "kinetic_cv_eV_per_atom",
    "kinetic_prim_eV_per_atom",
    "rg_A",
]
#: per-polymer quantities summarised (block averages) at the end of a run
SUMMARY_POLYMER = ["temperature_K", "potential_eV", "kinetic_cv_eV", "kinetic_prim_eV", "conserved_eV"]
SUMMARY_SPECIES = ["kinetic_cv_eV_per_atom", "kinetic_prim_eV_per_atom", "rg_A"]


def atom_estimators(state: MDState, integ: RingPolymerIntegrator) -> dict[str, torch.Tensor]:
    """Per polymer atom [N]: ``kinetic_cv``, ``kinetic_prim`` (eV), ``rg2`` (Å²)."""
    p, kt = integ.n_beads, integ.kt
    lay = ring_layout(state, p)
    q = lay.gather(state.positions)  # [P, N, 3]
    f = lay.gather(state.forces)  # [P, N, 3]
    dev = q - q.mean(0)  # [P, N, 3]
    q_nm = to_normal_modes(q, integ.cmat)
    spring = 0.5 * lay.masses * ((integ.omega**2)[:, None] * (q_nm * q_nm).sum(2)).sum(0)  # [N]
    return {
        "kinetic_cv": 1.5 * kt - (0.5 / p) * (dev * f).sum((0, 2)),
        "kinetic_prim": 1.5 * p * kt - spring / p,
        "rg2": (dev * dev).sum((0, 2)) / p,
        "spring": spring,
    }


def polymer_rows(state: MDState, integ: RingPolymerIntegrator, time_fs: float, stage: int) -> list[dict]:
    """One row per ring polymer (POLYMER_FIELDS)."""
    p = integ.n_beads
    lay = ring_layout(state, p)
    est = atom_estimators(state, integ)
    temp = polymer_view(state, p).temperature_K()
    pot = state.energy.view(-1, p).mean(1)
    conserved = integ.conserved(state)
    sums = {k: lay.polymer_sum(est[k]) for k in ("kinetic_cv", "kinetic_prim", "spring")}
    n = lay.atoms_per_polymer()
    ids = torch.div(state.replica_ids[::p], p, rounding_mode="floor").tolist()
    return [
        {
            "step": state.step,
            "time_fs": time_fs,
            "stage": stage,
            "ensemble": integ.ensemble,
            "replica": int(rid),
            "n_atoms": int(n[r]),
            "n_beads": p,
            "temperature_K": float(temp[r]),
            "potential_eV": float(pot[r]),
            "spring_eV": float(sums["spring"][r]),
            "kinetic_cv_eV": float(sums["kinetic_cv"][r]),
            "kinetic_prim_eV": float(sums["kinetic_prim"][r]),
            "conserved_eV": float(conserved[r]),
        }
        for r, rid in enumerate(ids)
    ]


def species_rows(
    state: MDState, integ: RingPolymerIntegrator, type_names: Sequence[str], time_fs: float
) -> list[dict]:
    """One row per (ring polymer, species present): per-atom averages (SPECIES_FIELDS).

    Species are isotopes by mass: hydrogen heavier than 1.5 amu is "D" (ND3 vs NH3).
    """
    p = integ.n_beads
    lay = ring_layout(state, p)
    est = atom_estimators(state, integ)
    labels = [
        isotope_label(type_names[int(s)], float(m)) for s, m in zip(lay.species, lay.masses, strict=True)
    ]
    names = sorted(set(labels))
    n_sp = len(names)
    key = lay.polymer * n_sp + torch.tensor([names.index(x) for x in labels], dtype=torch.long)  # [N]
    size = lay.n_polymers * n_sp
    count = torch.bincount(key, minlength=size).to(DTYPE)

    def mean(x: torch.Tensor) -> torch.Tensor:  # [N] → [R·S]
        return torch.zeros(size, dtype=DTYPE).index_add_(0, key, x) / count.clamp_min(1.0)

    kcv, kprim, rg2 = mean(est["kinetic_cv"]), mean(est["kinetic_prim"]), mean(est["rg2"])
    ids = torch.div(state.replica_ids[::p], p, rounding_mode="floor").tolist()
    rows = []
    for r, rid in enumerate(ids):
        for s, name in enumerate(names):
            j = r * n_sp + s
            if count[j] == 0:
                continue
            rows.append(
                {
                    "step": state.step,
                    "time_fs": time_fs,
                    "replica": int(rid),
                    "species": name,
                    "n_atoms": int(count[j]),
                    "kinetic_cv_eV_per_atom": float(kcv[j]),
                    "kinetic_prim_eV_per_atom": float(kprim[j]),
                    "rg_A": float(torch.sqrt(rg2[j])),
                }
            )
    return rows


def block_average(x: Sequence[float] | np.ndarray, n_blocks: int = 10) -> tuple[float, float]:
    """Mean of a correlated series and its standard error from ``n_blocks`` block means.

    The series is cut to a multiple of ``n_blocks`` (the first samples are dropped); with
    fewer samples than blocks the error is NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size < n_blocks or n_blocks < 2:
        return float(x.mean()), float("nan")
    size = x.size // n_blocks
    blocks = x[x.size - size * n_blocks :].reshape(n_blocks, size).mean(1)
    return float(blocks.mean()), float(blocks.std(ddof=1) / np.sqrt(n_blocks))


def summarise(
    rows: list[dict], fields: Sequence[str], group: str | None, skip_steps: int, n_blocks: int
) -> dict:
    """Block averages of ``fields`` over steps > ``skip_steps``: the rows of each step are
    first averaged over ring polymers (and split by ``group``, e.g. species)."""
    out: dict = {}
    groups = sorted({r[group] for r in rows}) if group else [None]
    for g in groups:
        sel = [r for r in rows if int(r["step"]) > skip_steps and (g is None or r[group] == g)]
        steps = sorted({int(r["step"]) for r in sel})
        entry = {"samples": len(steps)}
        for f in fields:
            by_step: dict[int, list[float]] = {}
            for r in sel:
                by_step.setdefault(int(r["step"]), []).append(float(r[f]))
            series = [np.mean(by_step[s]) for s in steps]
            mean, err = block_average(series, n_blocks)
            entry[f] = {"mean": mean, "stderr": err}
        if g is None:
            return entry
        out[g] = entry
    return out
