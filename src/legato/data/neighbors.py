"""Neighbour lists with periodic image shifts, from vesin.

Correct for any cell (triclinic, smaller than 2·r_max) because vesin enumerates all
periodic images. Mixed periodicity uses vesin's per-axis ``periodic`` flags.
"""

from __future__ import annotations

import numpy as np
from vesin import NeighborList

from legato.errors import LegatoError


def neighbor_list(
    positions: np.ndarray,  # [n, 3] Å
    cell: np.ndarray,  # [3, 3] rows are lattice vectors
    pbc: np.ndarray,  # [3] bool
    r_max: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Directed pairs (i, j, S) with |r_j - r_i + S @ cell| < r_max, sorted by i.

    Returns ``edge_index`` [2, n_edges] (int64) and ``shifts`` [n_edges, 3] (int64).
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    if not np.all(np.isfinite(positions)):
        raise LegatoError("positions contain non-finite values (NaN or inf)")
    n = len(positions)
    if n == 0:
        return np.zeros((2, 0), np.int64), np.zeros((0, 3), np.int64)
    if pbc.any():
        # vesin needs a non-degenerate box; non-periodic axes get a dummy vector
        box = cell.copy()
        for ax in np.where(~pbc)[0]:
            if np.linalg.norm(box[ax]) < 1e-8:
                box[ax] = np.eye(3)[ax]
        if abs(np.linalg.det(box)) < 1e-8:
            raise LegatoError("periodic cell has zero volume")
    else:
        box = np.zeros((3, 3))
    nl = NeighborList(cutoff=float(r_max), full_list=True, sorted=False)
    i, j, s = nl.compute(
        points=positions, box=box, periodic=pbc.tolist() if pbc.any() else False, quantities="ijS", copy=True
    )
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64).reshape(-1, 3)
    order = np.lexsort((j, i))
    return np.stack([i[order], j[order]]), s[order]
