"""Per-replica failure detection: the instrument of the robustness (time-to-failure) study.

Detectors, each optional except the every-step guards ``potential_error``, ``nonfinite``
and ``runaway``:

- ``potential_error``: the potential raised an error that a blown-up state can cause (see
  :func:`legato.md.forces.is_state_failure`; any other exception stops the run);
- ``nonfinite``: positions, momenta, forces or energy not finite, or an atom beyond 1e6 Å
  (checked every step; such positions are never passed to the potential);
- ``runaway``: always-on sanity bounds, checked every step: the instantaneous temperature
  above :data:`RUNAWAY_TEMPERATURE_K` or the ensemble's conserved quantity off its value at
  the start of the stage by more than :data:`RUNAWAY_DRIFT_EV_PER_ATOM` per atom;
- ``min_distance``: the closest pair is nearer than ``min_distance_A`` (collapse);
- ``pair_distance``: two atoms of a limited element pair are nearer than its limit in
  ``min_pair_distance_A`` (e.g. H–H < 1.0 Å in ammonia: a local failure such as H atoms
  pairing up in a spurious well, which the temperature window does not see);
- ``force_outliers``: more than ``max_force_outliers`` atoms have a force component beyond
  ``outlier_sigma``·σ (σ = std of the training forces). The count is recorded at every check
  whether or not it is a failure criterion (the paper's Fig. 1);
- ``temperature``: the instantaneous temperature leaves ``temperature_window_K`` (the public
  code of the paper: outside [100 K, 300 K] for a 200 K run, checked every 10 steps);
- ``drift``: |H − H₀|/N of the ensemble's conserved quantity beyond ``max_drift_eV_per_atom``
  (H₀ at the start of the current schedule stage).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from ase import Atoms

from legato.md.config import RUNAWAY_TEMPERATURE_K  # always-on bound on the temperature (K)
from legato.md.neighbors import MAX_COORDINATE_A
from legato.md.state import DTYPE, MDState, per_replica_sum

#: always-on bound on |H − H₀|/N (eV/atom), the conserved quantity's change in a stage
RUNAWAY_DRIFT_EV_PER_ATOM = 100.0
#: the detectors that run at every step (the others at checks only)
GUARD_REASONS = ("potential_error", "nonfinite", "runaway")
#: detector names, in the order their reasons are reported
REASONS = (
    "potential_error",
    "nonfinite",
    "runaway",
    "min_distance",
    "pair_distance",
    "force_outliers",
    "temperature",
    "drift",
)


@dataclass
class Failure:
    """A replica that left the batch."""

    replica: int  # replica id in the run
    step: int  # MD step at which the failure was detected
    reason: str  # first detector that fired (see REASONS)
    detail: str  # all detectors that fired, with their values
    stage: int  # schedule stage index at the failure
    steps_in_stage: int  # steps run in that stage (t_failure when the stage is NVE)
    last_good_step: int  # step of the last check the replica passed (-1: none)
    last_good: Atoms | None = None  # that frame (positions, momenta, forces, energy)

    def row(self) -> dict:
        return {
            "replica": self.replica,
            "step": self.step,
            "reason": self.reason,
            "stage": self.stage,
            "steps_in_stage": self.steps_in_stage,
            "last_good_step": self.last_good_step,
            "detail": self.detail,
        }


@dataclass
class CheckResult:
    """Observables of every replica at one check, and the failures they imply."""

    step: int
    replica_ids: list[int]
    temperature_K: torch.Tensor  # [R]
    max_force: torch.Tensor  # [R] eV/Å, largest force component magnitude
    n_force_outliers: torch.Tensor  # [R] long
    min_distance: torch.Tensor  # [R] Å
    drift_per_atom: torch.Tensor  # [R] eV/atom
    pair_ratio: torch.Tensor | None = None  # [R] min distance / limit over limited pairs
    reasons: list[list[str]] = field(default_factory=list)  # per replica, fired detectors

    @property
    def failed(self) -> torch.Tensor:  # [R] bool
        return torch.tensor([bool(r) for r in self.reasons], dtype=torch.bool)

    def rows(self) -> list[dict]:
        out = []
        for r, rid in enumerate(self.replica_ids):
            out.append(
                {
                    "step": self.step,
                    "replica": rid,
                    "temperature_K": float(self.temperature_K[r]),
                    "max_force_eV_A": float(self.max_force[r]),
                    "n_force_outliers": int(self.n_force_outliers[r]),
                    "min_distance_A": float(self.min_distance[r]),
                    "drift_eV_per_atom": float(self.drift_per_atom[r]),
                    "status": ",".join(self.reasons[r]) if self.reasons[r] else "ok",
                }
            )
        return out


def nonfinite_replicas(state: MDState) -> torch.Tensor:  # [R] bool
    """Replicas with any non-finite position, momentum, force or energy (or an atom that
    flew beyond 1e6 Å, which no neighbour list can follow)."""
    bad_atom = ~torch.isfinite(state.positions).all(1) | ~torch.isfinite(state.momenta).all(1)
    bad_atom |= state.positions.abs().amax(1) > MAX_COORDINATE_A
    if state.forces is not None:
        bad_atom |= ~torch.isfinite(state.forces).all(1)
    bad = per_replica_sum(bad_atom.to(DTYPE), state.batch, state.n_replicas) > 0
    if state.energy is not None:
        bad |= ~torch.isfinite(state.energy)
    return bad


def runaway_replicas(
    temperature_K: torch.Tensor,  # [R]
    drift_per_atom: torch.Tensor,  # [R] eV/atom
) -> torch.Tensor:  # [R] bool
    """Replicas beyond the always-on bounds (NaN does not count here: ``nonfinite`` does)."""
    return (temperature_K > RUNAWAY_TEMPERATURE_K) | (drift_per_atom > RUNAWAY_DRIFT_EV_PER_ATOM)


class FailureDetector:
    """Configurable per-replica detectors (see the module doc); ``None`` disables one."""

    def __init__(
        self,
        every: int = 10,
        temperature_window_K: tuple[float, float] | None = (100.0, 300.0),
        force_sigma_eV_A: float | None = None,
        outlier_sigma: float = 5.0,
        max_force_outliers: int | None = None,
        min_distance_A: float | None = 0.5,
        max_drift_eV_per_atom: float | None = None,
        min_pair_distance_A: dict[str, float] | None = None,
    ):
        if every < 1:
            raise ValueError("every must be >= 1")
        self.every = int(every)
        self.temperature_window_K = temperature_window_K
        self.force_sigma = force_sigma_eV_A
        self.outlier_sigma = float(outlier_sigma)
        self.max_force_outliers = max_force_outliers
        self.min_distance_A = min_distance_A
        self.max_drift_eV_per_atom = max_drift_eV_per_atom
        self.min_pair_distance_A = dict(min_pair_distance_A) if min_pair_distance_A else None

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def check(
        self,
        state: MDState,
        conserved: torch.Tensor,  # [R] eV
        conserved_ref: torch.Tensor,  # [R] eV
        min_distance: torch.Tensor,  # [R] Å
        errors: dict[int, str] | None = None,  # replica id → exception message
        pair_ratio: torch.Tensor | None = None,  # [R] closest limited pair / its limit
    ) -> CheckResult:
        n_rep = state.n_replicas
        ids = state.replica_ids.tolist()
        temp = state.temperature_K()
        if state.forces is not None:
            fabs = state.forces.abs()  # [n_atoms, 3]
            max_f = torch.zeros(n_rep, dtype=DTYPE).scatter_reduce_(
                0, state.batch, torch.nan_to_num(fabs, nan=float("inf")).amax(1), "amax"
            )
        else:
            fabs, max_f = None, torch.zeros(n_rep, dtype=DTYPE)
        n_out = torch.zeros(n_rep, dtype=torch.long)
        if self.force_sigma is not None and fabs is not None:
            is_out = (torch.nan_to_num(fabs, nan=float("inf")) > self.outlier_sigma * self.force_sigma).any(1)
            n_out = n_out.index_add_(0, state.batch, is_out.long())
        drift = (conserved - conserved_ref).abs() / state.atoms_per_replica().to(DTYPE)
        bad = nonfinite_replicas(state)
        runaway = runaway_replicas(temp, drift)
        errors = errors or {}
        reasons: list[list[str]] = []
        for r, rid in enumerate(ids):
            fired = []
            if rid in errors:
                fired.append("potential_error")
            if bool(bad[r]):
                fired.append("nonfinite")
            if bool(runaway[r]):
                fired.append("runaway")
            if self.min_distance_A is not None and float(min_distance[r]) < self.min_distance_A:
                fired.append("min_distance")
            if self.min_pair_distance_A and pair_ratio is not None and float(pair_ratio[r]) < 1.0:
                fired.append("pair_distance")
            if self.max_force_outliers is not None and int(n_out[r]) > self.max_force_outliers:
                fired.append("force_outliers")
            if self.temperature_window_K is not None:
                lo, hi = self.temperature_window_K
                t = float(temp[r])
                if not lo <= t <= hi:  # also catches NaN
                    fired.append("temperature")
            if self.max_drift_eV_per_atom is not None and not float(drift[r]) <= self.max_drift_eV_per_atom:
                fired.append("drift")
            reasons.append(fired)
        return CheckResult(
            step=state.step,
            replica_ids=ids,
            temperature_K=temp,
            max_force=max_f,
            n_force_outliers=n_out,
            min_distance=min_distance,
            drift_per_atom=drift,
            pair_ratio=pair_ratio,
            reasons=reasons,
        )

    def describe(self, result: CheckResult, r: int, errors: dict[int, str] | None = None) -> str:
        """Human-readable values of the detectors that fired for batch position ``r``."""
        parts = []
        rid = result.replica_ids[r]
        for reason in result.reasons[r]:
            if reason == "nonfinite":
                parts.append("non-finite positions/momenta/forces/energy")
            elif reason == "runaway":
                parts.append(
                    f"runaway: T = {float(result.temperature_K[r]):.3g} K, conserved-quantity change "
                    f"{float(result.drift_per_atom[r]):.3g} eV/atom (bounds {RUNAWAY_TEMPERATURE_K:g} K, "
                    f"{RUNAWAY_DRIFT_EV_PER_ATOM:g} eV/atom)"
                )
            elif reason == "potential_error":
                parts.append(f"potential raised {(errors or {}).get(rid, '')}")
            elif reason == "min_distance":
                parts.append(f"closest pair {float(result.min_distance[r]):.3f} Å < {self.min_distance_A} Å")
            elif reason == "pair_distance":
                ratio = float(result.pair_ratio[r]) if result.pair_ratio is not None else float("nan")
                parts.append(f"an atom pair at {ratio:.2f} x its limit ({self.min_pair_distance_A} Å)")
            elif reason == "force_outliers":
                parts.append(
                    f"{int(result.n_force_outliers[r])} atoms with |F| > {self.outlier_sigma}σ "
                    f"(limit {self.max_force_outliers})"
                )
            elif reason == "temperature":
                lo, hi = self.temperature_window_K
                parts.append(f"T = {float(result.temperature_K[r]):.1f} K outside [{lo}, {hi}] K")
            elif reason == "drift":
                parts.append(
                    f"conserved-quantity drift {float(result.drift_per_atom[r]):.3g} eV/atom "
                    f"> {self.max_drift_eV_per_atom}"
                )
        return "; ".join(parts)
