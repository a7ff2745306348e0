"""Crystalline ammonia, phase I (cubic, space group P2₁3, four molecules per cell).

Each molecule sits on a threefold axis: N on Wyckoff 4a (x, x, x), H on 12b. The starting
geometry here is N x = 0.2107 and one H at (0.3689, 0.2671, 0.1159) (fractional), which gives
an N–H bond of 0.99 Å and H–N–H angles of 107.9° at a = 5.13 Å, each H pointing to an N of a
neighbouring molecule (the hydrogen-bond network of the solid). It is a starting point for
QM- or model-driven MD and relaxation, not a refined structure.

Lattice constant: X-ray powder data of Olovsson & Templeton (Acta Cryst. 12, 832 (1959)):
5.084 Å for NH3 at 77 K and 5.138 Å at 171 K; :func:`lattice_constant_A` interpolates
linearly between them (and extrapolates a little; ammonia melts at 195 K).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.spacegroup import crystal

from legato.data.liquid import DEUTERIUM_MASS_AMU
from legato.errors import LegatoError

#: fractional coordinates of the asymmetric unit (N on 4a, one H on 12b)
N_X = 0.2107
H_XYZ = (0.3689, 0.2671, 0.1159)
#: (temperature K, lattice constant Å) of NH3 phase I, Olovsson & Templeton 1959
LATTICE_POINTS = ((77.0, 5.084), (171.0, 5.138))
MELTING_K = 195.4


def lattice_constant_A(temperature_K: float) -> float:
    """Phase-I lattice constant at ``temperature_K`` (linear in T through two measured points)."""
    if not 0.0 <= temperature_K < MELTING_K:
        raise LegatoError(
            f"crystalline ammonia needs 0 <= T < {MELTING_K} K (it melts there), got {temperature_K} K"
        )
    (t0, a0), (t1, a1) = LATTICE_POINTS
    return a0 + (a1 - a0) * (temperature_K - t0) / (t1 - t0)


def ammonia_crystal(
    cells: int = 2,
    temperature_K: float = 150.0,
    lattice_A: float | None = None,
    deuterium: bool = True,
) -> Atoms:
    """A ``cells``³ supercell of phase-I ammonia (4·cells³ molecules), atoms ordered molecule
    by molecule (N H H H, ...) like :func:`legato.data.liquid.build_liquid`.

    ``lattice_A`` overrides the lattice constant taken from ``temperature_K``; with
    ``deuterium`` the H masses are 2.014 amu (symbols stay ``H``).
    """
    if cells < 1:
        raise LegatoError(f"cells must be >= 1, got {cells}")
    a = float(lattice_A) if lattice_A is not None else lattice_constant_A(temperature_K)
    if not 3.5 < a < 8.0:
        raise LegatoError(f"lattice constant {a} Å is not a plausible one for solid ammonia")
    unit = crystal(["N", "H"], basis=[(N_X, N_X, N_X), H_XYZ], spacegroup=198, cellpar=[a, a, a, 90, 90, 90])
    unit = _by_molecule(unit)
    atoms = unit.repeat((cells, cells, cells))
    atoms = _by_molecule(atoms)
    if deuterium:
        masses = atoms.get_masses()
        masses[atoms.numbers == 1] = DEUTERIUM_MASS_AMU
        atoms.set_masses(masses)
    atoms.wrap()
    return atoms


def _by_molecule(atoms: Atoms) -> Atoms:
    """Reorder atoms as N followed by its three nearest H (minimum image), molecule by molecule."""
    n_idx = np.flatnonzero(atoms.numbers == 7)
    h_idx = np.flatnonzero(atoms.numbers == 1)
    if len(h_idx) != 3 * len(n_idx):
        raise LegatoError("an ammonia crystal needs three H per N")
    order: list[int] = []
    taken: set[int] = set()
    for n in n_idx:
        d = atoms.get_distances(int(n), h_idx, mic=True)
        near = [int(h_idx[k]) for k in np.argsort(d)[:3]]
        if any(h in taken for h in near) or max(np.sort(d)[:3]) > 1.3:
            raise LegatoError("the crystal's H atoms do not group into NH3 molecules")
        taken.update(near)
        order += [int(n), *near]
    return atoms[order]
