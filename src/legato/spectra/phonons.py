"""Harmonic reference: relax a structure with a calculator, then its phonon DOS (phonopy,
finite displacements on a supercell, DOS on a q-mesh) or, for a molecule, its normal modes
(ASE ``Vibrations``). Densities of states per species and neutron-weighted, as
:mod:`legato.spectra.vacf` does for trajectories (Σ_s n_s σ_s/m_s g_s, normalised).

Units: eV, Å, amu at the interface; frequencies in THz (phonopy's unit: its VaspToTHz
factor expects eV/Å² force constants and amu masses) and meV.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from legato.errors import LegatoError
from legato.spectra.vacf import MEV_PER_THZ, isotope_label, neutron_weights


@dataclass
class Relaxation:
    atoms: Atoms
    steps: int
    max_force_eV_A: float
    energy_eV: float
    cell_relaxed: bool


def relax(
    atoms: Atoms, calc: Calculator, fmax_eV_A: float = 1e-3, max_steps: int = 1000, cell: bool = True
) -> Relaxation:
    """BFGS to |F| < ``fmax_eV_A``, with the cell (FrechetCellFilter) for a 3-D periodic
    structure when ``cell``. Raises if not converged within ``max_steps``."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = atoms.copy()
    atoms.calc = calc
    use_cell = bool(cell and atoms.pbc.all())
    target = FrechetCellFilter(atoms) if use_cell else atoms
    opt = BFGS(target, logfile=None)
    converged = opt.run(fmax=fmax_eV_A, steps=max_steps)
    fmax = float(np.abs(atoms.get_forces()).max())
    if not converged:
        raise LegatoError(
            f"relaxation did not reach fmax {fmax_eV_A} eV/Å in {max_steps} steps (largest force "
            f"{fmax:.3g} eV/Å); raise --max-steps or --fmax"
        )
    return Relaxation(atoms, int(opt.nsteps), fmax, float(atoms.get_potential_energy()), use_cell)


@dataclass
class PhononResult:
    frequency_THz: np.ndarray  # [n_freq]
    dos: dict[str, np.ndarray]  # per isotope label and "weighted": unit area over THz
    gamma_THz: np.ndarray  # [3·n_atoms] frequencies at Γ (negative: imaginary)
    n_displacements: int


def phonon_dos(
    atoms: Atoms,
    calc: Calculator,
    supercell: tuple[int, int, int] = (2, 2, 2),
    mesh: tuple[int, int, int] = (8, 8, 8),
    displacement_A: float = 0.01,
    sigma_THz: float = 0.1,
    freq_pitch_THz: float = 0.05,
) -> PhononResult:
    """Force constants by finite displacements (phonopy, ± displacements; symmetrised, which
    imposes the acoustic sum rule), DOS projected on atoms on a Γ-centred q-mesh with
    Gaussian smearing σ, per species and neutron-weighted."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=np.asarray(atoms.cell.array),
        scaled_positions=atoms.get_scaled_positions(),
        masses=atoms.get_masses(),
    )
    ph = Phonopy(unit, supercell_matrix=np.diag(supercell), primitive_matrix="P")  # the cell as given
    ph.generate_displacements(distance=displacement_A, is_plusminus=True)
    forces = []
    for sc in ph.supercells_with_displacements:
        a = Atoms(sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, masses=sc.masses, pbc=True)
        a.calc = calc
        f = a.get_forces()
        forces.append(f - f.mean(0))  # drift removal, as phonopy's calculator interfaces do
    ph.forces = np.array(forces)
    ph.produce_force_constants()
    ph.symmetrize_force_constants()  # translational invariance (acoustic sum rule), index symmetry
    ph.run_mesh(list(mesh), with_eigenvectors=True, is_mesh_symmetry=False, is_gamma_center=True)
    ph.run_projected_dos(
        sigma=sigma_THz, freq_min=0.0, freq_pitch=freq_pitch_THz, use_tetrahedron_method=False
    )
    pd = ph.projected_dos
    nu, per_atom = np.asarray(pd.frequency_points), np.asarray(pd.projected_dos)  # [F], [n_atoms, F]
    labels = [
        isotope_label(s, m) for s, m in zip(atoms.get_chemical_symbols(), atoms.get_masses(), strict=True)
    ]
    ph.run_qpoints([[0.0, 0.0, 0.0]])
    gamma = np.asarray(ph.qpoints.frequencies[0])
    return PhononResult(nu, species_dos(nu, per_atom, labels, atoms.get_masses()), gamma, len(forces))


def species_dos(
    nu: np.ndarray, per_atom: np.ndarray, labels: list[str], masses: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-label DOS (unit area) and the neutron-weighted one from per-atom DOS [n_atoms, F]."""
    lab = np.asarray(labels)
    out: dict[str, np.ndarray] = {}
    mass = {k: float(masses[lab == k][0]) for k in set(labels)}
    weights = neutron_weights(labels, mass)
    mix = np.zeros_like(nu)
    for k in sorted(set(labels)):
        g = per_atom[lab == k].sum(0)
        out[k] = g / np.trapezoid(g, nu)
        mix = mix + weights[k] * g
    out["weighted"] = mix / np.trapezoid(mix, nu)
    return out


def molecule_modes(atoms: Atoms, calc: Calculator, displacement_A: float = 0.01) -> np.ndarray:
    """Normal-mode energies (meV) of a molecule by ASE ``Vibrations`` (central differences);
    imaginary modes are negative. All 3N modes, sorted (6 near zero for a free molecule)."""
    from ase.vibrations import Vibrations

    atoms = atoms.copy()
    atoms.calc = calc
    with tempfile.TemporaryDirectory(prefix="legato-vib-") as tmp:
        vib = Vibrations(atoms, name=str(Path(tmp) / "vib"), delta=displacement_A, nfree=2)
        vib.run()
        e = vib.get_energies()  # eV, complex for imaginary modes
    real = np.where(np.abs(e.imag) > np.abs(e.real), -np.abs(e.imag), e.real)
    return np.sort(real) * 1000.0


def gamma_meV(result: PhononResult) -> np.ndarray:
    return result.gamma_THz * MEV_PER_THZ
