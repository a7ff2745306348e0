"""NVE in LAMMPS with pair_style legato: 1 rank and 2 ranks follow the same trajectory
(thermo and forces by atom id), and the energy drift shrinks as Δt²."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from lammps_helpers import deploy, needs_lammps, shipped_frame

from legato.fileio import atomic_write_text
from legato.lammps import read_dump, read_thermo, run_lammps, write_data
from legato.lammps.io import input_script

pytestmark = needs_lammps


def _nve_input(model, names, dt_fs: float, steps: int, every: int, dump: str | None) -> str:
    body = f"timestep {dt_fs / 1000}\nfix integrate all nve\nrun {steps}\n"
    return input_script(
        "start.data", str(model), names, body, thermo_every=every, dump_file=dump, dump_every=steps
    )


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A deployed float64 model and the shipped frame with 200 K velocities as a data file."""
    folder = tmp_path_factory.mktemp("nve")
    # a gentle random model (small energy scale): the trajectory stays smooth, so 1e-16
    # round-off differences between rank counts grow slowly over 200 steps
    _, pth = deploy(folder, torch.float64, per_species_energy_scale=[0.02, 0.02])
    atoms = shipped_frame(3)
    rng = np.random.default_rng(0)
    masses = atoms.get_masses()[:, None]
    momenta = rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * units.kB * 200.0)
    atoms.set_momenta(momenta - masses * momenta.sum(0) / masses.sum())
    write_data(atoms, folder / "start.data", ["H", "N"], velocities=True)
    return folder, pth


def test_one_and_two_ranks_same_trajectory(start) -> None:
    folder, pth = start
    runs = {}
    for ranks in (1, 2):
        sub = folder / f"ranks{ranks}"
        sub.mkdir()
        (sub / "start.data").symlink_to(folder / "start.data")
        atomic_write_text(sub / "in.lmp", _nve_input(pth, ["H", "N"], 0.5, 200, 10, "last.dump"))
        run_lammps("in.lmp", ranks=ranks, cwd=sub)
        runs[ranks] = (read_thermo(sub / "log.lammps")[-1], read_dump(sub / "last.dump")[-1])
    (t1, d1), (t2, d2) = runs[1], runs[2]
    assert t1["step"][-1] == 200 and len(t1["step"]) == 21
    for key in ("pe", "ke", "etotal", "temp", "press"):
        np.testing.assert_allclose(t2[key], t1[key], rtol=1e-10, atol=1e-10 * np.abs(t1[key]).max())
    np.testing.assert_array_equal(d1["id"], d2["id"])
    f1 = np.stack([d1["fx"], d1["fy"], d1["fz"]], 1)
    f2 = np.stack([d2["fx"], d2["fy"], d2["fz"]], 1)
    np.testing.assert_allclose(f2, f1, rtol=1e-8, atol=1e-9 * np.abs(f1).max())


@pytest.mark.slow
def test_nve_drift_scales_as_dt_squared(start) -> None:
    """Energy fluctuation over the same 100 fs at Δt = 0.5 and 0.25 fs: ratio ≈ 4."""
    folder, pth = start
    spread = {}
    for dt in (0.5, 0.25):
        sub = folder / f"dt{dt}"
        sub.mkdir()
        (sub / "start.data").symlink_to(folder / "start.data")
        steps = int(round(100 / dt))
        atomic_write_text(sub / "in.lmp", _nve_input(pth, ["H", "N"], dt, steps, 1, None))
        run_lammps("in.lmp", cwd=sub)
        e = read_thermo(sub / "log.lammps")[-1]["etotal"]
        spread[dt] = np.abs(e - e[0]).max()
    ratio = spread[0.5] / spread[0.25]
    print(f"NVE energy spread over 100 fs: {spread} eV, ratio {ratio:.2f}")
    assert 3.0 < ratio < 5.0, (spread, ratio)
