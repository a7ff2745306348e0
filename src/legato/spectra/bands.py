"""Band positions of vibrational spectra with statistical errors (pure functions).

A band is an energy window [lo, hi] (meV). Its position is the centroid (first moment)
∫E g dE / ∫g dE of the density of states g over the window, and its peak the energy of the
largest g in it. A trajectory's statistical error comes from blocks: each of R
trajectories is cut into B contiguous blocks of equal length, each block gives its own
spectrum (the same lag window and maximum lag for all of them), and the R·B centroids give a
mean and its standard error std/√(R·B). Blocks much longer than the velocity correlation time
are nearly independent; a harmonic (phonon) DOS is a fixed curve without statistical error.

Differences between sources (e.g. classical MD minus harmonic) carry the combined error
√(e₁² + e₂²), a missing error counting as zero.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields

import numpy as np

from legato.spectra.vacf import Spectrum, vdos

#: smallest block a block spectrum is taken from (frames)
MIN_BLOCK_FRAMES = 8
#: smallest share of a curve's area a band must hold to have a position
MIN_BAND_WEIGHT = 0.01
#: the comparison figure's panels (meV): inter-molecular, intra-molecular
PANELS = ((0.0, 120.0), (100.0, 480.0))


def _window(energy_meV: np.ndarray, lo_meV: float, hi_meV: float) -> np.ndarray:  # [n] bool
    if not lo_meV < hi_meV:
        raise ValueError(f"band window {lo_meV:g}:{hi_meV:g} meV needs lo < hi")
    return (np.asarray(energy_meV) >= lo_meV) & (np.asarray(energy_meV) <= hi_meV)


def band_centroid_meV(energy_meV: np.ndarray, dos: np.ndarray, lo_meV: float, hi_meV: float) -> float:
    """∫E g dE / ∫g dE over the grid points in [lo, hi] (trapezoid); nan with < 2 points.

    energy_meV, dos: [n] (any unit of g: it cancels).
    """
    sel = _window(energy_meV, lo_meV, hi_meV)
    if sel.sum() < 2:
        return float("nan")
    e, g = np.asarray(energy_meV, dtype=float)[sel], np.asarray(dos, dtype=float)[sel]
    area = float(np.trapezoid(g, e))
    return float(np.trapezoid(e * g, e)) / area if area != 0 else float("nan")


def band_peak_meV(energy_meV: np.ndarray, dos: np.ndarray, lo_meV: float, hi_meV: float) -> float:
    """Energy of the largest ``dos`` in [lo, hi] (a grid point); nan if the window is empty."""
    sel = _window(energy_meV, lo_meV, hi_meV)
    if not sel.any():
        return float("nan")
    return float(np.asarray(energy_meV)[sel][np.argmax(np.asarray(dos)[sel])])


def block_lag_fs(n_frames: Sequence[int], dt_fs: float, n_blocks: int, max_lag_fs: float) -> float:
    """The maximum lag of every block spectrum: min(max_lag_fs, half the shortest block)."""
    block = min(n_frames) // n_blocks
    if n_blocks < 1 or block < MIN_BLOCK_FRAMES:
        raise ValueError(
            f"{min(n_frames)} frames in {n_blocks} blocks: each block needs at least "
            f"{MIN_BLOCK_FRAMES} frames"
        )
    return min(max_lag_fs, (block // 2) * dt_fs)


def block_spectra(
    velocities: Sequence[np.ndarray],
    labels: Sequence[str],
    dt_fs: float,
    n_blocks: int,
    max_lag_fs: float,
    window: str = "hann",
    weights: dict[str, float] | None = None,
) -> list[Spectrum]:
    """One :func:`vdos` spectrum per (trajectory, block): R·B spectra, trajectory-major.

    velocities: R arrays [T_r, n_atoms, 3]; each is cut into ``n_blocks`` contiguous blocks of
    T_r // n_blocks frames (a remainder at the end is left out). All blocks share one maximum
    lag, :func:`block_lag_fs`, so all spectra have the same resolution.
    """
    lag = block_lag_fs([v.shape[0] for v in velocities], dt_fs, n_blocks, max_lag_fs)
    out = []
    for v in velocities:
        size = v.shape[0] // n_blocks
        for b in range(n_blocks):
            out.append(vdos([v[b * size : (b + 1) * size]], labels, dt_fs, lag, window, weights))
    return out


def band_statistics(samples: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error std(ddof=1)/√n) of independent samples; s.e. nan for n < 2."""
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size < 2:
        return float(x[0]), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


@dataclass
class BandRow:
    """One band of one source; ``centroid_err_meV`` nan and ``n_samples`` 0 for a fixed curve."""

    source: str
    band: str
    lo_meV: float
    hi_meV: float
    centroid_meV: float
    centroid_err_meV: float
    peak_meV: float
    n_samples: int


@dataclass
class ShiftRow:
    """``source`` minus ``reference`` for one band, its combined error and their ratio."""

    source: str
    reference: str
    band: str
    shift_meV: float
    shift_err_meV: float
    shift_over_err: float


def band_row(
    source: str,
    band: str,
    lo_meV: float,
    hi_meV: float,
    curve: tuple[np.ndarray, np.ndarray],
    samples: Sequence[tuple[np.ndarray, np.ndarray]] = (),
) -> BandRow:
    """A :class:`BandRow` from one curve (energy [n], dos [n]) for the peak and, with block
    samples, the centroid as their mean ± s.e. (else the curve's own centroid, no error).

    A band holding less than :data:`MIN_BAND_WEIGHT` of the curve's area has no position:
    centroid, error and peak nan (a window on the tail of another band says nothing).
    """
    e, g = curve
    sel = _window(e, lo_meV, hi_meV)
    inside = float(np.trapezoid(g[sel], e[sel])) if sel.sum() > 1 else 0.0
    if not inside > MIN_BAND_WEIGHT * float(np.trapezoid(g, e)):
        return BandRow(source, band, lo_meV, hi_meV, math.nan, math.nan, math.nan, len(samples))
    peak = band_peak_meV(e, g, lo_meV, hi_meV)
    if samples:
        mean, err = band_statistics([band_centroid_meV(e, g, lo_meV, hi_meV) for e, g in samples])
    else:
        mean, err = band_centroid_meV(*curve, lo_meV, hi_meV), float("nan")
    return BandRow(source, band, lo_meV, hi_meV, mean, err, peak, len(samples))


def _zero_if_nan(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def shift_rows(rows: Sequence[BandRow], reference: str | None = None) -> list[ShiftRow]:
    """Per band, every other source's centroid minus the reference's (default: the first
    source in ``rows``), with error √(e₁² + e₂²) (a nan error counts as 0; both 0 → nan)."""
    if not rows:
        return []
    reference = rows[0].source if reference is None else reference
    ref = {r.band: r for r in rows if r.source == reference}
    if not ref:
        raise ValueError(f"no rows of the reference source {reference!r}")
    out = []
    for r in rows:
        if r.source == reference or r.band not in ref:
            continue
        base = ref[r.band]
        err = math.hypot(_zero_if_nan(r.centroid_err_meV), _zero_if_nan(base.centroid_err_meV))
        shift = r.centroid_meV - base.centroid_meV
        err = err if err > 0 and math.isfinite(shift) else math.nan
        out.append(ShiftRow(r.source, reference, r.band, shift, err, shift / err))
    return out


def unit_area(energy_meV: np.ndarray, dos: np.ndarray, lo_meV: float, hi_meV: float) -> np.ndarray:
    """``dos`` [n] divided by its area over [lo, hi] (unchanged if that area is not > 0)."""
    sel = _window(energy_meV, lo_meV, hi_meV)
    area = float(np.trapezoid(dos[sel], energy_meV[sel])) if sel.sum() > 1 else 0.0
    return dos / area if area > 0 else dos


def table_csv(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """CSV text; nan and inf as empty cells."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow(["" if isinstance(x, float) and not math.isfinite(x) else x for x in row])
    return buf.getvalue()


def rows_csv(rows: Sequence[BandRow] | Sequence[ShiftRow]) -> str:
    """One CSV line per :class:`BandRow` / :class:`ShiftRow`, columns named as their fields."""
    fmt = [[f"{x:.4f}" if isinstance(x, float) and math.isfinite(x) else x for x in astuple(r)] for r in rows]
    return table_csv([f.name for f in fields(rows[0])], fmt)


def bands_figure(
    energy_meV: np.ndarray,  # [n] common grid
    curves: dict[str, np.ndarray],  # source → [n]
    bands: dict[str, tuple[float, float]],
    rows: Sequence[BandRow],
    title: str,
):
    """Two panels (:data:`PANELS`), each curve of unit area over its panel, band windows
    shaded, and each source's centroids ± s.e. as markers above its curves."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 4.2))
    # a band overlapping one listed before it (e.g. a whole band and its parts) is in the
    # tables but not drawn: shades and centroid marks would pile up
    drawn: list[str] = []
    for name, (lo, hi) in bands.items():
        if all(hi <= bands[d][0] or lo >= bands[d][1] for d in drawn):
            drawn.append(name)
    for k, (plo, phi) in enumerate(PANELS):
        ax = fig.add_subplot(1, 2, k + 1)
        sel = (energy_meV >= plo) & (energy_meV <= phi)
        top = 0.0
        for j, (name, g) in enumerate(curves.items()):
            y = unit_area(energy_meV[sel], g[sel], plo, phi)
            ax.plot(energy_meV[sel], y, lw=1.2, color=f"C{j}", label=name)
            top = max(top, float(np.nanmax(y)))
        top = top if top > 0 else 1.0
        for i, (name, (lo, hi)) in enumerate(bands.items()):
            a, b = max(lo, plo), min(hi, phi)
            if a < b and name in drawn:  # alternating shades: adjacent bands stay apart
                ax.axvspan(a, b, color="0.5", alpha=0.07 if i % 2 else 0.15, lw=0)
                ax.text((a + b) / 2, 1.22 * top, name, ha="center", va="top", fontsize=7)
        for j, name in enumerate(curves):
            for r in rows:
                if r.source == name and r.band in drawn and plo <= r.centroid_meV <= phi:
                    err = r.centroid_err_meV if math.isfinite(r.centroid_err_meV) else 0.0
                    y = top * (1.08 - 0.04 * j)
                    ax.errorbar(r.centroid_meV, y, xerr=err, fmt="|", color=f"C{j}", ms=6, capsize=2)
        ax.set_xlim(plo, phi)
        ax.set_ylim(0, 1.25 * top)
        ax.set_xlabel("energy (meV)")
        ax.set_ylabel(f"DOS, unit area over {plo:g}-{phi:g} meV (1/meV)")
        ax.legend(fontsize=8, loc="center right" if k == 0 else "center left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
