"""Periodic boxes of intact molecules: random packing, connectivity checks, replication.

A liquid box is built by random sequential insertion: each molecule (gas-phase geometry
from :func:`ase.build.molecule`) gets a uniformly random orientation and centre, and is
rejected when any of its atoms comes closer than ``min_distance_A`` (minimum image) to an
atom of an already placed molecule. Everything is driven by one seeded generator, so a seed
fixes the box.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from legato.errors import LegatoError

#: Avogadro's number, 1/mol
AVOGADRO = 6.02214076e23
#: deuterium mass in amu (the paper's hydrogen mass, 2.014)
DEUTERIUM_MASS_AMU = 2.014102
#: the paper's 432-atom liquid ND3 box: 108 molecules in a cube of this edge (Å)
PAPER_BOX_MOLECULES = 108
PAPER_BOX_LENGTH_A = 16.51501
#: default smallest allowed intermolecular atom–atom distance when packing (Å)
DEFAULT_MIN_DISTANCE_A = 1.9


def molecule_template(formula: str) -> Atoms:
    """Gas-phase geometry of ``formula`` (ASE's g2 set), centred on its centre of mass."""
    from ase.build import molecule
    from ase.collections import g2

    try:
        mol = molecule(formula)
    except (KeyError, ValueError):
        raise LegatoError(
            f"unknown molecule {formula!r}: use a name from ASE's g2 set, e.g. NH3, H2O, CH4"
            f" ({len(g2.names)} available)"
        ) from None
    mol.positions -= mol.get_center_of_mass()
    mol.pbc = False
    mol.cell = np.zeros((3, 3))
    return mol


def molecule_mass_amu(formula: str, deuterium: bool = False) -> float:
    """Mass of one molecule in amu (hydrogen replaced by deuterium if asked)."""
    mol = molecule_template(formula)
    masses = mol.get_masses()
    if deuterium:
        masses[mol.numbers == 1] = DEUTERIUM_MASS_AMU
    return float(masses.sum())


def box_length_for_density(
    formula: str, n_molecules: int, density_g_cm3: float, deuterium: bool = False
) -> float:
    """Edge (Å) of the cube holding ``n_molecules`` at a mass density computed with the
    box's own masses (so with ``deuterium`` the density is that of the deuterated liquid)."""
    if not np.isfinite(density_g_cm3) or density_g_cm3 <= 0:
        raise LegatoError(f"density must be a positive number of g/cm³, got {density_g_cm3}")
    mass_g = n_molecules * molecule_mass_amu(formula, deuterium) / AVOGADRO
    volume_a3 = mass_g / density_g_cm3 * 1e24
    return float(volume_a3 ** (1.0 / 3.0))


def density_g_cm3(atoms: Atoms) -> float:
    """Mass density of a periodic box from its masses and cell volume."""
    return float(atoms.get_masses().sum() / AVOGADRO / (atoms.get_volume() * 1e-24))


def paper_density_g_cm3(deuterium: bool = True) -> float:
    """Density of the paper's box (108 NH3/ND3 in a 16.515 Å cube) with the given masses."""
    n = PAPER_BOX_MOLECULES
    return n * molecule_mass_amu("NH3", deuterium) / AVOGADRO / (PAPER_BOX_LENGTH_A**3 * 1e-24)


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniformly distributed rotation matrices [n, 3, 3] (QR of Gaussian matrices with
    the signs fixed so that the distribution is Haar, then det = +1)."""
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[:, :, 0] *= np.sign(np.linalg.det(q))[:, None]
    return q


def _min_image_dist2(a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
    """Squared minimum-image distances between rows of a [n,3] and b [m,3] in a cube."""
    d = a[:, None, :] - b[None, :, :]  # [n, m, 3]
    d -= length * np.round(d / length)
    return (d**2).sum(-1)  # [n, m]


def build_liquid(
    formula: str,
    n_molecules: int,
    *,
    density_g_cm3: float | None = None,
    box_length_A: float | None = None,
    seed: int = 0,
    deuterium: bool = False,
    min_distance_A: float = DEFAULT_MIN_DISTANCE_A,
    max_attempts_per_molecule: int = 200_000,
) -> Atoms:
    """Random periodic cubic box of ``n_molecules`` intact copies of ``formula``.

    Give either ``density_g_cm3`` (with the box's masses) or ``box_length_A``. Atoms are
    ordered molecule by molecule (for NH3: N H H H, N H H H, ...). With ``deuterium`` the
    hydrogen masses are set to 2.014 amu (the symbols stay ``H``).
    """
    if n_molecules < 1:
        raise LegatoError(f"number of molecules must be at least 1, got {n_molecules}")
    if (density_g_cm3 is None) == (box_length_A is None):
        raise LegatoError("give exactly one of density (g/cm³) or box length (Å)")
    mol = molecule_template(formula)
    if density_g_cm3 is not None:
        length = box_length_for_density(formula, n_molecules, density_g_cm3, deuterium)
    else:
        length = float(box_length_A)  # type: ignore[arg-type]
        if not np.isfinite(length) or length <= 0:
            raise LegatoError(f"box length must be a positive number of Å, got {box_length_A}")
    _check_packable(mol, n_molecules, length, min_distance_A, formula)

    rng = np.random.default_rng(seed)
    n_per = len(mol)
    placed = np.empty((0, 3))
    batch = 256  # candidate placements tested at once; the first acceptable one is kept
    for k in range(n_molecules):
        for _ in range(max(1, max_attempts_per_molecule // batch)):
            rot = random_rotations(rng, batch)  # [B, 3, 3]
            shift = rng.uniform(0, length, size=(batch, 1, 3))
            trials = np.einsum("ad,bcd->bac", mol.positions, rot) + shift  # [B, n_per, 3]
            if len(placed) == 0:
                trial = trials[0]
                break
            d2 = _min_image_dist2(trials.reshape(-1, 3), placed, length)  # [B*n_per, M]
            ok = d2.reshape(batch, -1).min(1) >= min_distance_A**2  # [B]
            if ok.any():
                trial = trials[int(np.argmax(ok))]
                break
        else:
            raise LegatoError(
                f"could not pack {n_molecules} {formula} in a {length:.3f} Å box "
                f"(placed {k}; closest allowed intermolecular distance {min_distance_A} Å): "
                "the density is too high"
            )
        placed = np.vstack([placed, trial])

    atoms = Atoms(
        symbols=list(mol.get_chemical_symbols()) * n_molecules,
        positions=placed,
        cell=np.eye(3) * length,
        pbc=True,
    )
    atoms.wrap()
    if deuterium:
        set_deuterium_masses(atoms)
    atoms.info["molecule"] = formula
    atoms.info["atoms_per_molecule"] = n_per
    return atoms


def _check_packable(mol: Atoms, n_molecules: int, length: float, min_distance_A: float, formula: str) -> None:
    """Reject densities no random packing can reach before trying: the box must exceed the
    molecules' excluded volume (one sphere of radius min_distance/2 per atom, at the
    random-close-packing fraction 0.64)."""
    if min_distance_A <= 0:
        raise LegatoError(f"minimum distance must be positive, got {min_distance_A} Å")
    sphere = 4.0 / 3.0 * np.pi * (0.5 * min_distance_A) ** 3
    needed = n_molecules * len(mol) * sphere / 0.64
    if length**3 < needed:
        raise LegatoError(
            f"{n_molecules} {formula} cannot fit in a {length:.3f} Å box "
            f"({length**3:.1f} Å³ < {needed:.1f} Å³ excluded volume): the density is too high"
        )


def set_deuterium_masses(atoms: Atoms) -> None:
    """Set the masses of all H atoms to the deuterium mass (in place)."""
    masses = atoms.get_masses()
    masses[atoms.numbers == 1] = DEUTERIUM_MASS_AMU
    atoms.set_masses(masses)


def paper_box(seed: int = 0, deuterium: bool = True) -> Atoms:
    """A freshly packed box like the paper's: 108 ND3 in a 16.515 Å cube (432 atoms)."""
    return build_liquid(
        "NH3",
        PAPER_BOX_MOLECULES,
        box_length_A=PAPER_BOX_LENGTH_A,
        seed=seed,
        deuterium=deuterium,
    )


def bonded_fragments(atoms: Atoms, scale: float = 1.2) -> np.ndarray:
    """Label of the covalently bonded fragment of every atom [n_atoms] (minimum image).

    Two atoms are bonded when closer than ``scale`` × the sum of their covalent radii.
    """
    from ase.neighborlist import natural_cutoffs, neighbor_list
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=scale))
    n = len(atoms)
    adj = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    _, labels = connected_components(adj, directed=False)
    return labels


def intact_molecules(atoms: Atoms, formula: str, scale: float = 1.2) -> bool:
    """True when every bonded fragment has exactly the composition of ``formula``."""
    from ase.formula import Formula

    target = Formula(formula).count()
    labels = bonded_fragments(atoms, scale)
    symbols = np.array(atoms.get_chemical_symbols())
    for frag in np.unique(labels):
        count: dict[str, int] = {}
        for s in symbols[labels == frag]:
            count[s] = count.get(s, 0) + 1
        if count != target:
            return False
    return True


def min_intermolecular_distance(atoms: Atoms, atoms_per_molecule: int) -> float:
    """Closest minimum-image distance (Å) between atoms of different molecules, for boxes
    ordered molecule by molecule."""
    from ase.neighborlist import neighbor_list

    cutoff = 0.45 * float(min(atoms.cell.lengths()))
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    inter = (i // atoms_per_molecule) != (j // atoms_per_molecule)
    return float(d[inter].min()) if inter.any() else float("inf")


def replicate(atoms: Atoms, k: int, perturb_A: float = 0.0, seed: int = 0) -> Atoms:
    """``atoms`` repeated k×k×k times, every coordinate displaced by Gaussian noise of
    standard deviation ``perturb_A`` (so the copies are not exactly periodic images).

    Labels are dropped: they do not apply to the perturbed box. Masses are kept.
    """
    if k < 1:
        raise LegatoError(f"replication factor k must be at least 1, got {k}")
    if perturb_A < 0 or not np.isfinite(perturb_A):
        raise LegatoError(f"perturbation must be a non-negative number of Å, got {perturb_A}")
    if not atoms.pbc.all():
        raise LegatoError("replication needs a periodic box (pbc on all three axes)")
    base = atoms.copy()
    base.calc = None
    for key in ("energy", "stress", "free_energy"):
        base.info.pop(key, None)
    for key in ("forces", "momenta"):
        if key in base.arrays:
            del base.arrays[key]
    big = base.repeat((k, k, k))
    rng = np.random.default_rng(seed)
    big.positions += rng.normal(scale=perturb_A, size=big.positions.shape)
    big.wrap()
    return big
