"""Configurations beyond classical condensed-phase MD, for training coverage (pure builders).

- **Ring-polymer beads**: single beads of a PIMD run (``beads_XXX.extxyz`` of
  ``legato pimd``: all P beads of a polymer in one frame, bead-major, array ``bead``). With
  nuclear quantum effects the N–H bonds and angles spread far wider than classical MD at the
  same temperature samples, so a model that runs PIMD must have seen such geometries.
- **Gas-phase molecules and clusters**: the molecule nearest a random centre and its n−1
  nearest neighbours (minimum-image centres), cut out of a periodic frame, unwrapped into
  whole molecules and placed in vacuum (no cell, not periodic): monomers, dimers, small
  clusters with the local geometries of the liquid or the crystal but with free surfaces.

Frames are returned unlabelled (label them with ``legato data label``) with ``info['source']``
and ``info['group']`` (frames of one group are correlated and must share a split).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms


def bead_frames(
    polymers: Sequence[Atoms], per_frame: int, rng: np.random.Generator, tag: str = "beads"
) -> list[Atoms]:
    """``per_frame`` distinct random beads of each ring-polymer frame, as N-atom structures.

    polymers: frames of P·N atoms (bead-major; ``info['n_beads']`` = P), cell and pbc kept.
    """
    out = []
    for k, frame in enumerate(polymers):
        p = int(frame.info["n_beads"])
        n = len(frame) // p
        if n * p != len(frame):
            raise ValueError(f"frame {k}: {len(frame)} atoms is not a multiple of {p} beads")
        for b in sorted(rng.choice(p, size=min(per_frame, p), replace=False).tolist()):
            a = Atoms(
                frame.numbers[b * n : (b + 1) * n],
                positions=frame.positions[b * n : (b + 1) * n],
                cell=frame.cell,
                pbc=frame.pbc,
                masses=frame.get_masses()[b * n : (b + 1) * n],
            )
            a.wrap()
            a.info.update(
                source="pimd_bead", group=f"{tag}:{k}", bead=b, step=int(frame.info.get("step", -1))
            )
            out.append(a)
    return out


def molecule_centres(atoms: Atoms, per_molecule: int) -> np.ndarray:  # [n_mol, 3]
    """Heavy-atom (first atom) position of each molecule of a box ordered molecule by molecule."""
    return atoms.positions[::per_molecule]


def cut_cluster(
    atoms: Atoms, n_molecules: int, per_molecule: int, rng: np.random.Generator, vacuum_A: float = 6.0
) -> Atoms:
    """The molecule of a random centre and its ``n_molecules − 1`` nearest neighbours, whole and
    in vacuum (no cell). ``atoms``: periodic, ordered molecule by molecule, heavy atom first."""
    n_mol = len(atoms) // per_molecule
    if n_molecules > n_mol:
        raise ValueError(f"a cluster of {n_molecules} molecules from a box of {n_mol}")
    cell = atoms.cell.array
    inv = np.linalg.inv(cell)

    def minimum_image(d: np.ndarray) -> np.ndarray:  # [..., 3]
        frac = d @ inv
        return (frac - np.round(frac)) @ cell

    centres = molecule_centres(atoms, per_molecule)
    c0 = int(rng.integers(n_mol))
    shift = minimum_image(centres - centres[c0])  # [n_mol, 3]
    chosen = np.argsort(np.linalg.norm(shift, axis=1), kind="stable")[:n_molecules]
    pos, numbers, masses = [], [], []
    for m in chosen:
        sl = slice(m * per_molecule, (m + 1) * per_molecule)
        heavy = centres[c0] + shift[m]
        pos.append(heavy + minimum_image(atoms.positions[sl] - atoms.positions[sl][0]))
        numbers.append(atoms.numbers[sl])
        masses.append(atoms.get_masses()[sl])
    out = Atoms(np.concatenate(numbers), positions=np.concatenate(pos), masses=np.concatenate(masses))
    out.center(vacuum=vacuum_A)
    out.cell = None
    out.pbc = False
    return out


def clusters(
    boxes: Sequence[Atoms],
    sizes: Sequence[int],
    per_size: int,
    per_molecule: int,
    rng: np.random.Generator,
    tag: str = "clusters",
) -> list[Atoms]:
    """``per_size`` clusters of every size in ``sizes``, each cut from a random box."""
    out = []
    for n in sizes:
        for j in range(per_size):
            k = int(rng.integers(len(boxes)))
            a = cut_cluster(boxes[k], n, per_molecule, rng)
            a.info.update(source="cluster", group=f"{tag}:{n}:{j}", n_molecules=n, parent=k)
            out.append(a)
    return out


def split_by_group(
    frames: Sequence[Atoms], rng: np.random.Generator, fractions: tuple[float, float] = (0.1, 0.1)
) -> list[str]:
    """train / validation / test per frame, dealt by ``info['group']`` (correlated frames
    share a set) in proportion to (1 − val − test, val, test)."""
    groups = sorted({str(a.info["group"]) for a in frames})
    order = rng.permutation(len(groups))
    n_val = max(1, round(fractions[0] * len(groups)))
    n_test = max(1, round(fractions[1] * len(groups)))
    which = {}
    for rank, g in enumerate(order):
        which[groups[g]] = "validation" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return [which[str(a.info["group"])] for a in frames]
