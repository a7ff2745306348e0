"""Writing densities of states: CSV (THz, meV, cm⁻¹ and one column per curve), JSON metadata
and a PNG against energy in meV (matplotlib without pyplot)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from legato.errors import LegatoError
from legato.fileio import atomic_save, atomic_write_text
from legato.spectra.vacf import CM1_PER_THZ, MEV_PER_THZ


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    for p in paths:
        if p.exists() and not overwrite:
            raise LegatoError(f"{p} exists; use --overwrite to replace it")


def dos_csv(frequency_THz: np.ndarray, curves: dict[str, np.ndarray]) -> str:
    """Columns frequency_THz, energy_meV, wavenumber_cm1, then ``dos_<name>_per_meV``."""
    buf = io.StringIO()
    w = csv.writer(buf)
    names = list(curves)
    w.writerow(["frequency_THz", "energy_meV", "wavenumber_cm1"] + [f"dos_{n}_per_meV" for n in names])
    for k, nu in enumerate(frequency_THz):
        row = [f"{nu:.6g}", f"{nu * MEV_PER_THZ:.6g}", f"{nu * CM1_PER_THZ:.6g}"]
        w.writerow(row + [f"{curves[n][k] / MEV_PER_THZ:.6g}" for n in names])
    return buf.getvalue()


def dos_figure(
    frequency_THz: np.ndarray, curves: dict[str, np.ndarray], title: str, max_meV: float, note: str = ""
) -> Figure:
    """DOS per curve (1/meV) vs energy (meV), a cm⁻¹ axis on top."""
    fig = Figure(figsize=(7.0, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    e = frequency_THz * MEV_PER_THZ
    sel = e <= max_meV
    for name, g in curves.items():
        ax.plot(e[sel], g[sel] / MEV_PER_THZ, lw=1.6 if name == "neutron_weighted" else 1.0, label=name)
    ax.set_xlabel("energy (meV)")
    ax.set_ylabel("density of states (1/meV)")
    ax.set_xlim(0, max_meV)
    ax.set_ylim(bottom=0)
    top = ax.secondary_xaxis("top", functions=(lambda x: x * 8.0655439, lambda x: x / 8.0655439))
    top.set_xlabel("wavenumber (cm$^{-1}$)")
    fig.suptitle(title, fontsize=10)  # above the cm⁻¹ axis
    if note:
        ax.text(0.99, 0.97, note, transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def write_dos(
    out: Path,
    stem: str,
    frequency_THz: np.ndarray,
    curves: dict[str, np.ndarray],
    meta: dict,
    title: str,
    max_meV: float,
    note: str = "",
    overwrite: bool = False,
) -> list[Path]:
    """``<stem>.csv``, ``<stem>.json`` and ``<stem>.png`` in ``out``; returns the paths."""
    paths = [out / f"{stem}.csv", out / f"{stem}.json", out / f"{stem}.png"]
    refuse_existing(paths, overwrite)
    atomic_write_text(paths[0], dos_csv(frequency_THz, curves))
    atomic_write_text(paths[1], json.dumps(meta, indent=2))
    fig = dos_figure(frequency_THz, curves, title, max_meV, note)
    atomic_save(paths[2], lambda fh: fig.savefig(fh, format="png", dpi=150))
    return paths
