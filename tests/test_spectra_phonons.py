"""Harmonic reference: phonopy's Γ frequencies and ASE Vibrations' molecular modes equal the
eigenvalues of an autograd Hessian; relaxation; the DOS; ``legato phonons`` on a model file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.lattice.cubic import FaceCenteredCubic
from ase.stress import full_3x3_to_voigt_6_stress
from conftest import small_model

from legato.cli.main import main
from legato.data import atoms_to_graph
from legato.data import keys as K
from legato.md.potentials import LennardJones
from legato.models import save_model
from legato.spectra.phonons import molecule_modes, phonon_dos, relax
from legato.units import FS

torch.set_num_threads(1)
LJ = LennardJones(epsilon_eV=0.0104, sigma_A=3.40, r_max=7.0)


class PotentialCalculator(Calculator):
    """ASE calculator for a legato reference potential (one species: Ar)."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, potential):
        super().__init__()
        self.potential = potential

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        graph = atoms_to_graph(self.atoms, ["Ar"], self.potential.r_max, with_labels=False)
        out = self.potential(graph)
        self.results = {"energy": float(out[K.TOTAL_ENERGY].sum()), "forces": out[K.FORCES].numpy()}
        if self.atoms.pbc.all():  # stress = (1/V) dE/dε by autograd through a homogeneous strain
            eps = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
            defo = torch.eye(3, dtype=torch.float64) + 0.5 * (eps + eps.T)
            strained = {**graph, K.POSITIONS: graph[K.POSITIONS] @ defo, K.CELL: graph[K.CELL] @ defo}
            (grad,) = torch.autograd.grad(self.potential(strained)[K.TOTAL_ENERGY].sum(), eps)
            self.results["stress"] = full_3x3_to_voigt_6_stress(grad.numpy() / self.atoms.get_volume())


def hessian_THz(atoms: Atoms, potential) -> np.ndarray:
    """Frequencies (THz, sorted; negative = imaginary) from the autograd Hessian of the energy
    (edges fixed at the structure: exact for displacements that keep the neighbour list)."""
    graph = atoms_to_graph(atoms, ["Ar"], potential.r_max, with_labels=False)
    pos0 = graph[K.POSITIONS].clone()

    def energy(flat):
        g = dict(graph)
        g[K.POSITIONS] = flat.view(-1, 3)
        return potential(g)[K.TOTAL_ENERGY].sum()

    h = torch.autograd.functional.hessian(energy, pos0.reshape(-1)).numpy()  # eV/Å²
    m = np.repeat(atoms.get_masses(), 3)
    w2 = np.linalg.eigvalsh(h / np.sqrt(np.outer(m, m)))  # (1/t_ASE)²
    return np.sort(np.sign(w2) * np.sqrt(np.abs(w2)) / (2 * np.pi) * FS * 1000.0)


def test_phonopy_gamma_frequencies_equal_the_autograd_hessian():
    """A rattled fcc argon cell (4 atoms, images within the cutoff): phonopy's Γ (supercell
    1×1×1) = eigenvalues of the periodic Hessian, to 1e-3 THz."""
    atoms = FaceCenteredCubic("Ar", size=(1, 1, 1), latticeconstant=5.3)
    atoms.rattle(0.05, seed=2)
    res = phonon_dos(
        atoms, PotentialCalculator(LJ), supercell=(1, 1, 1), mesh=(1, 1, 1), displacement_A=0.005
    )
    assert np.allclose(np.sort(res.gamma_THz), hessian_THz(atoms, LJ), atol=1e-3)


def test_relaxed_crystal_dos():
    """Relaxed fcc argon (cell too): zero forces, three acoustic zeros at Γ, real modes on the
    mesh, unit-area DOS with its weight below the largest Γ frequency band."""
    atoms = FaceCenteredCubic("Ar", size=(1, 1, 1), latticeconstant=5.4)
    rel = relax(atoms, PotentialCalculator(LJ), fmax_eV_A=1e-5)
    assert rel.max_force_eV_A < 1e-5 and rel.cell_relaxed
    assert 5.1 < rel.atoms.cell.lengths()[0] < 5.3  # LJ argon: a ≈ 1.54σ (truncated, switched)
    res = phonon_dos(rel.atoms, PotentialCalculator(LJ), supercell=(2, 2, 2), mesh=(6, 6, 6), sigma_THz=0.05)
    gamma = np.sort(res.gamma_THz)
    assert np.all(np.abs(gamma[:3]) < 0.02) and np.all(gamma[3:] > 0.5)
    g = res.dos["Ar"]
    assert np.trapezoid(g, res.frequency_THz) == pytest.approx(1.0, abs=1e-9)
    assert (
        np.trapezoid(
            g[res.frequency_THz <= gamma[-1] + 0.3], res.frequency_THz[res.frequency_THz <= gamma[-1] + 0.3]
        )
        > 0.97
    )
    assert np.allclose(res.dos["weighted"], g)  # one species: the weighting changes nothing


def test_molecule_modes_equal_the_autograd_hessian():
    """A relaxed LJ tetramer (a tetrahedron): ASE Vibrations = Hessian eigenvalues; 6 zeros."""
    d = 3.82
    pos = np.array(
        [
            [0, 0, 0],
            [d, 0, 0],
            [d / 2, d * np.sqrt(3) / 2, 0],
            [d / 2, d / (2 * np.sqrt(3)), d * np.sqrt(2 / 3)],
        ]
    )
    atoms = Atoms("Ar4", positions=pos + 10.0)
    rel = relax(atoms, PotentialCalculator(LJ), fmax_eV_A=1e-6)
    assert not rel.cell_relaxed
    modes_meV = molecule_modes(rel.atoms, PotentialCalculator(LJ), displacement_A=0.005)
    ref_meV = hessian_THz(rel.atoms, LJ) * 4.135667696
    assert np.allclose(modes_meV[6:], ref_meV[6:], rtol=2e-4)
    assert np.all(np.abs(modes_meV[:6]) < 0.05)


def test_cli_on_a_model_file(tmp_path, capsys):
    model = tmp_path / "model.pt"
    save_model(small_model(torch.float64), model)
    assert main(["phonons", "NH3", "--model", str(model), "--output", str(tmp_path / "mol")]) == 0
    lines = (tmp_path / "mol" / "modes.csv").read_text().splitlines()
    assert lines[0] == "mode,energy_meV,wavenumber_cm1" and len(lines) == 1 + 12
    capsys.readouterr()
    assert main(["phonons", "NH3", "--model", str(model), "--output", str(tmp_path / "mol")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    box = Atoms(
        "NH3", positions=[[0, 0, 0], [1.0, 0, 0.3], [-0.5, 0.85, 0.3], [-0.5, -0.85, 0.3]], cell=[4.0] * 3
    )
    box.pbc = True
    box.write(tmp_path / "box.extxyz")
    args = [
        "phonons",
        str(tmp_path / "box.extxyz"),
        "--model",
        str(model),
        "--no-relax",
        "--supercell",
        "1",
        "1",
        "1",
    ]
    assert (
        main([*args, "--mesh", "2", "2", "2", "--masses", "H=2.014", "--output", str(tmp_path / "box")]) == 0
    )
    meta = json.loads((tmp_path / "box" / "phonon_dos.json").read_text())
    assert 0 < meta["n_displacements"] <= 24  # ± x, y, z per atom at most (phonopy uses the C3v symmetry)
    assert len((tmp_path / "box" / "gamma_modes.csv").read_text().splitlines()) == 1 + 12
    header = (tmp_path / "box" / "phonon_dos.csv").read_text().splitlines()[0]
    assert (
        header
        == "frequency_THz,energy_meV,wavenumber_cm1,dos_D_per_meV,dos_N_per_meV,dos_neutron_weighted_per_meV"
    )
    assert (tmp_path / "box" / "phonon_dos.png").exists()
