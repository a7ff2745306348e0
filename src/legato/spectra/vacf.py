"""Vibrational densities of states from velocity autocorrelation functions (pure functions).

C_i(t) = ⟨v_i(0)·v_i(t)⟩ per atom (averaged over time origins, unbiased: each lag divided
by its number of origins), averaged per species; the spectrum is its windowed cosine
transform S(ν) = Δt·[C(0) + 2 Σ_{n≥1} w(nΔt) C(nΔt) cos(2πνnΔt)] up to the maximum lag
t_max, with a Hann window w (or none). The resolution is the full width at half maximum of
the window's own transform (the spectrum of a pure cosine), reported with every spectrum:
for Hann about 1.0/t_max (t_max in ps → THz).

Each species' density g_s is normalised to unit area over ν ≥ 0; since the one-sided
integral of S is C(0)/2 (the sum rule), the normalisation is also a check. The
neutron-weighted density is Σ_s n_s (σ_s / m_s) g_s / norm, the usual incoherent
one-phonon weighting (σ: incoherent cross-section, m: mass; Sears, Neutron News 3(3), 26,
1992: H 80.26 b, D 2.05 b, N 0.5 b), so it is dominated by H in NH3.

numpy FFT instead of dynasor: the VACF of a few species is two FFTs per atom and axis; dynasor
targets the full intermediate scattering functions F(q, t) (coherent, q-resolved), which a
VDOS does not need, and it would add a compiled dependency for nothing this module uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: incoherent scattering cross-sections (barn), Sears 1992 (Neutron News 3(3), 26)
INCOHERENT_BARN = {"H": 80.26, "D": 2.05, "N": 0.5, "C": 0.001, "O": 0.0008, "Ar": 0.225}
#: 1 THz in meV (h·1 THz) and in cm⁻¹ (1 THz / c)
MEV_PER_THZ = 4.135667696
CM1_PER_THZ = 33.35640952


@dataclass
class Spectrum:
    """Densities of states on a frequency grid."""

    frequency_THz: np.ndarray  # [n_freq]
    dos: dict[str, np.ndarray]  # label → [n_freq], unit area over THz
    sum_rule: dict[str, float]  # label → ∫S dν / (C(0)/2) before normalising (1 if exact)
    resolution_THz: float  # FWHM of the window's transform
    max_lag_fs: float
    window: str

    @property
    def energy_meV(self) -> np.ndarray:
        return self.frequency_THz * MEV_PER_THZ

    @property
    def wavenumber_cm1(self) -> np.ndarray:
        return self.frequency_THz * CM1_PER_THZ


def autocorrelation(v: np.ndarray) -> np.ndarray:  # [T, n_atoms, 3] → [T, n_atoms]
    """⟨v(t₀)·v(t₀ + t)⟩ over time origins t₀ per atom, for lags 0..T−1 (FFT, zero-padded)."""
    n = v.shape[0]
    f = np.fft.rfft(v, n=2 * n, axis=0)
    ac = np.fft.irfft((f * f.conj()).real, n=2 * n, axis=0)[:n].sum(2)  # [T, n_atoms]
    return ac / (n - np.arange(n))[:, None]


def lag_window(n_lags: int, window: str) -> np.ndarray:  # [n_lags], w(0) = 1, w(t_max) = 0
    if window == "hann":
        return 0.5 * (1.0 + np.cos(np.pi * np.arange(n_lags) / n_lags))
    if window == "none":
        return np.ones(n_lags)
    raise ValueError(f"unknown window {window!r} (hann, none)")


def cosine_transform(c: np.ndarray, dt_fs: float, n_freq: int) -> tuple[np.ndarray, np.ndarray]:
    """S(ν) = Δt[c₀ + 2 Σ_{n≥1} c_n cos(2πνnΔt)] on n_freq points; (ν [THz], S [.. × ps])."""
    n_pad = 2 * (n_freq - 1)
    padded = np.zeros(max(n_pad, 2 * len(c)))
    padded[: len(c)] = c
    spec = (2.0 * np.fft.rfft(padded).real - c[0]) * dt_fs * 1e-3  # ps
    nu = np.fft.rfftfreq(len(padded), d=dt_fs * 1e-3)  # THz
    return nu, spec


def window_resolution_THz(n_lags: int, dt_fs: float, window: str) -> float:
    """FWHM (THz) of the transform of the lag window: the line shape of a pure cosine."""
    nu, s = cosine_transform(lag_window(n_lags, window), dt_fs, 64 * n_lags + 1)
    half = s[0] / 2.0
    k = int(np.argmax(s < half))
    x = nu[k - 1] + (half - s[k - 1]) * (nu[k] - nu[k - 1]) / (s[k] - s[k - 1])
    return float(2.0 * x)


def vdos(
    velocities: Sequence[np.ndarray],
    labels: Sequence[str],
    dt_fs: float,
    max_lag_fs: float | None = None,
    window: str = "hann",
    weights: dict[str, float] | None = None,
    n_freq: int | None = None,
) -> Spectrum:
    """Densities of states per label (species) from trajectories of velocities.

    velocities: one array [T, n_atoms, 3] per trajectory (same atoms and labels in each,
    frames every ``dt_fs``); labels: [n_atoms]; weights: label → weight per atom (e.g.
    σ/m) for the weighted total ``"weighted"``.
    """
    n_frames = min(v.shape[0] for v in velocities)
    n_lags = n_frames // 2 if max_lag_fs is None else int(round(max_lag_fs / dt_fs)) + 1
    if not 2 <= n_lags <= n_frames:
        raise ValueError(f"max lag {max_lag_fs} fs needs between 2 and {n_frames} frames of {dt_fs} fs")
    labels = np.asarray(labels)
    corr = np.mean([autocorrelation(v[:n_frames])[:n_lags] for v in velocities], axis=0)  # [L, n_atoms]
    w = lag_window(n_lags, window)
    n_freq = n_freq or 4 * n_lags + 1
    dos, rule = {}, {}
    totals = {}
    for lab in sorted(set(labels.tolist())):
        c = corr[:, labels == lab].mean(1)  # [L]
        nu, s = cosine_transform(c * w, dt_fs, n_freq)
        area = float(np.trapezoid(s, nu))
        rule[lab] = area / (0.5 * c[0]) if c[0] > 0 else float("nan")
        dos[lab] = s / area
        totals[lab] = int((labels == lab).sum())
    if weights:
        mix = sum(totals[lab] * weights.get(lab, 0.0) * dos[lab] for lab in dos)
        dos["weighted"] = mix / float(np.trapezoid(mix, nu))
    return Spectrum(
        frequency_THz=nu,
        dos=dos,
        sum_rule=rule,
        resolution_THz=window_resolution_THz(n_lags, dt_fs, window),
        max_lag_fs=(n_lags - 1) * dt_fs,
        window=window,
    )


def isotope_label(symbol: str, mass_amu: float) -> str:
    """'D' for hydrogen heavier than 1.5 amu, else the element symbol."""
    return "D" if symbol == "H" and mass_amu > 1.5 else symbol


def neutron_weights(labels: Sequence[str], masses: dict[str, float]) -> dict[str, float]:
    """σ_inc/m per label (barn/amu), for the one-phonon incoherent weighting."""
    out = {}
    for lab in set(labels):
        if lab not in INCOHERENT_BARN:
            raise ValueError(f"no incoherent cross-section tabulated for {lab}")
        out[lab] = INCOHERENT_BARN[lab] / masses[lab]
    return out


def peak_THz(spec: Spectrum, label: str, lo_THz: float = 0.0, hi_THz: float = np.inf) -> float:
    """Frequency of the largest value of ``dos[label]`` in [lo, hi]."""
    nu = spec.frequency_THz
    sel = (nu >= lo_THz) & (nu <= hi_THz)
    return float(nu[sel][np.argmax(spec.dos[label][sel])])
