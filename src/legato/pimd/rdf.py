"""Radial distribution functions from all beads (the PIMD estimator of g(r)).

For each frame and each bead k, the RDF of the configuration formed by bead k of every atom
(the physical potential acts between beads of the same index), averaged over beads and
frames. Frames are the ``beads_XXX.extxyz`` of ``legato pimd`` (per-atom array ``bead``);
frames without it (centroids, classical MD) count as one bead.

g_AB(r) = V / (N_A (N_B − δ_AB)) · Σ_{i∈A, j∈B, j≠i} δ(r − r_ij) / (4πr²), periodic cells only.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from legato.data.neighbors import neighbor_list
from legato.errors import LegatoError
from legato.fileio import atomic_save, atomic_write_text


def _pair_name(a: str, b: str) -> str:
    return "-".join(sorted((a, b)))


def bead_rdf(
    frames: Sequence[Atoms], r_max_A: float, n_bins: int = 200
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(bin centres r [n_bins] in Å, {"A-B": g_AB(r) [n_bins]}) averaged over beads and frames."""
    if not r_max_A > 0 or n_bins < 1:
        raise LegatoError(f"an RDF needs r_max > 0 and at least one bin (got {r_max_A:g} Å, {n_bins})")
    edges = np.linspace(0.0, r_max_A, n_bins + 1)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)  # [n_bins] Å³
    sums: dict[str, np.ndarray] = {}
    n_configs = 0
    for frame in frames:
        if not frame.pbc.all():
            raise LegatoError("an RDF needs a 3-D periodic cell")
        bead = frame.arrays.get("bead", np.zeros(len(frame), dtype=int))
        for k in np.unique(bead):
            sub = frame[bead == k]
            _accumulate(sub, edges, shell, sums)
            n_configs += 1
    if n_configs == 0:
        raise LegatoError("no frames for the RDF")
    centres = 0.5 * (edges[1:] + edges[:-1])
    return centres, {p: g / n_configs for p, g in sorted(sums.items())}


def _accumulate(atoms: Atoms, edges: np.ndarray, shell: np.ndarray, sums: dict[str, np.ndarray]) -> None:
    """Add the g_AB(r) of one configuration to ``sums``."""
    pos, cell = atoms.positions, np.asarray(atoms.cell.array)
    (i, j), shifts = neighbor_list(pos, cell, atoms.pbc, float(edges[-1]))
    r = np.linalg.norm(pos[j] - pos[i] + shifts @ cell, axis=1)
    sym = np.asarray(atoms.get_chemical_symbols())
    volume = atoms.get_volume()
    names = sorted(set(sym.tolist()))
    for ia, a in enumerate(names):
        for b in names[ia:]:
            sel = (sym[i] == a) & (sym[j] == b)
            hist = np.histogram(r[sel], bins=edges)[0].astype(float)
            n_a, n_b = int((sym == a).sum()), int((sym == b).sum())
            pairs = n_a * (n_b - (a == b))
            if pairs == 0:
                continue
            g = hist * volume / (pairs * shell)
            key = _pair_name(a, b)
            sums[key] = sums.get(key, 0.0) + g


def first_peaks(r: np.ndarray, g: dict[str, np.ndarray]) -> dict[str, float]:
    """Position (Å) of each pair's highest g(r) (the first-shell peak of a liquid or crystal)."""
    return {pair: float(r[int(np.argmax(curve))]) for pair, curve in g.items()}


def write_rdf(
    out: Path, r: np.ndarray, g: dict[str, np.ndarray], meta: dict, title: str, overwrite: bool = False
) -> list[Path]:
    """``rdf.csv`` (r_A, then g_<pair>), ``rdf.json`` (``meta``) and ``rdf.png`` in ``out``."""
    from matplotlib.figure import Figure

    paths = [out / "rdf.csv", out / "rdf.json", out / "rdf.png"]
    for path in paths:
        if path.exists() and not overwrite:
            raise LegatoError(f"{path} exists; use --overwrite to replace it")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["r_A"] + [f"g_{pair}" for pair in g])
    for k, rk in enumerate(r):
        w.writerow([f"{rk:.6g}"] + [f"{g[pair][k]:.6g}" for pair in g])
    atomic_write_text(paths[0], buf.getvalue())
    atomic_write_text(paths[1], json.dumps(meta, indent=2))
    fig = Figure(figsize=(6.5, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    for pair, curve in g.items():
        ax.plot(r, curve, lw=1.2, label=pair)
    ax.axhline(1.0, color="0.6", lw=0.6)
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)")
    ax.set_xlim(0, float(r[-1] + 0.5 * (r[1] - r[0])) if len(r) > 1 else None)
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save(paths[2], lambda fh: fig.savefig(fh, format="png", dpi=150))
    return paths
