"""How well a run conserves its conserved quantity: a robustness measure that needs no failure.

At a fixed time step the velocity-Verlet error grows with the curvature of the potential
along the trajectory; a potential that sits close to the integrator's stability edge shows
it as large fluctuations (and, past the edge, a drift) of the total energy in NVE (of the
extended conserved quantity in Nosé–Hoover NVT) long before its temperature leaves the
failure window. Per run we keep the linear drift, the fluctuation about it and the hottest
check. Pure functions.
"""

from __future__ import annotations

import numpy as np

from legato.errors import LegatoError


def conserved_energy_summary(
    time_fs: np.ndarray, conserved_eV: np.ndarray, temperature_K: np.ndarray, n_atoms: int
) -> dict[str, float]:
    """One run's production stage, sampled at ``time_fs`` ([n_samples], >= 3 samples):
    ``drift_meV_atom_ps`` (least-squares slope), ``fluct_meV_atom`` (standard deviation of the
    residual about that line), ``t_max_K``, ``t_mean_K`` and ``duration_ps``."""
    t = np.asarray(time_fs, float) * 1e-3  # ps
    e = np.asarray(conserved_eV, float) * 1e3 / n_atoms  # meV/atom
    temp = np.asarray(temperature_K, float)
    if not (t.shape == e.shape == temp.shape) or t.ndim != 1:
        raise LegatoError("time, energy and temperature samples must be 1-D arrays of one length")
    if t.size < 3 or n_atoms <= 0 or np.ptp(t) <= 0:
        raise LegatoError("an energy summary needs >= 3 samples spanning a positive time and n_atoms > 0")
    if not (np.isfinite(e).all() and np.isfinite(temp).all()):
        raise LegatoError("non-finite energy or temperature samples")
    slope, icpt = np.polyfit(t - t[0], e, 1)
    resid = e - (icpt + slope * (t - t[0]))
    return {
        "drift_meV_atom_ps": float(slope),
        "fluct_meV_atom": float(resid.std()),
        "t_max_K": float(temp.max()),
        "t_mean_K": float(temp.mean()),
        "duration_ps": float(np.ptp(t)),
    }
