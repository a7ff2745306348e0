"""The MD engine driving a small Allegro model (random weights, float64 unless stated)."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import molecule

from legato.cli.main import main
from legato.md import ForceField, NoseHooverChain, VelocityVerlet, maxwell_boltzmann
from legato.md.state import state_from_atoms

torch.set_num_threads(1)
models = pytest.importorskip("legato.models")

NH3_432 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nh3_432.lmp"


def small_allegro(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    model = models.Allegro(
        type_names=["H", "N"],
        r_max=4.0,
        l_max=1,
        num_layers=1,
        env_embed_multiplicity=4,
        two_body_latent_mlp_latent_dimensions=[8, 16],
        latent_mlp_latent_dimensions=[16],
        edge_eng_mlp_latent_dimensions=[8],
        avg_num_neighbors=10.0,
        per_species_energy_scale=0.02,  # gentle random forces
    )
    return model.to(dtype).eval()


def nh3_box(n: int = 2, a: float = 3.6, seed: int = 0) -> Atoms:
    """n³ randomly oriented NH3 molecules on a cubic grid, periodic."""
    rng = np.random.default_rng(seed)
    atoms = Atoms(cell=np.eye(3) * a * n, pbc=True)
    for idx in np.ndindex(n, n, n):
        m = molecule("NH3")
        m.rotate(rng.uniform(0, 360), "z")
        m.rotate(rng.uniform(0, 360), "x")
        m.translate(np.array(idx) * a + a / 2)
        atoms += m
    return atoms


def _nve_error(model, atoms, dt, total_fs=20.0):
    ff = ForceField(model, skin_A=0.5)
    s = maxwell_boltzmann(state_from_atoms([atoms], ["H", "N"], seeds=[1]), 50.0)
    integ = VelocityVerlet(dt)
    s = integ.init(s, ff)
    h0 = integ.conserved(s)
    err = 0.0
    for _ in range(int(round(total_fs / dt))):
        s = integ.step(s, ff)
        err = max(err, float((integ.conserved(s) - h0).abs()))
    return err


def test_allegro_nve_energy_error_scales_as_dt_squared():
    model, atoms = small_allegro(), nh3_box()
    e1, e05 = _nve_error(model, atoms, 1.0), _nve_error(model, atoms, 0.5)
    assert e1 / len(atoms) < 1e-5
    assert 3.3 < e1 / e05 < 4.7, (e1, e05)


def test_force_field_matches_the_ase_calculator():
    from legato import LegatoCalculator

    model = small_allegro()
    atoms = nh3_box(seed=3)
    atoms.rattle(0.05, seed=1)
    atoms.positions += 5.0  # unwrapped coordinates must not matter
    ff = ForceField(model, skin_A=1.0)
    energy, forces = ff(state_from_atoms([atoms], ["H", "N"]))
    atoms.calc = LegatoCalculator(model)
    assert abs(float(energy[0]) - atoms.get_potential_energy()) < 1e-10
    assert np.abs(forces.numpy() - atoms.get_forces()).max() < 1e-10


def test_allegro_batched_equals_one_by_one():
    model = small_allegro()
    atoms = [nh3_box(seed=0), nh3_box(n=1, a=4.5, seed=1), molecule("NH3")]
    atoms[2].center(vacuum=3.0)
    seeds = [4, 5, 6]

    def run(structs, sds):
        ff = ForceField(model, skin_A=0.5)
        integ = NoseHooverChain(1.0, 100.0, tau_fs=50.0)
        s = integ.init(maxwell_boltzmann(state_from_atoms(structs, ["H", "N"], seeds=sds), 100.0), ff)
        for _ in range(15):
            s = integ.step(s, ff)
        return s

    batched = run(atoms, seeds)
    for r, a in enumerate(atoms):
        alone = run([a], [seeds[r]])
        sel = batched.batch == r
        assert torch.allclose(batched.positions[sel], alone.positions, rtol=0, atol=1e-10)
        assert torch.allclose(batched.momenta[sel], alone.momenta, rtol=0, atol=1e-10)


def test_float32_model_is_cast_at_the_boundary():
    m64, m32 = small_allegro(), small_allegro(torch.float32)
    state = state_from_atoms([nh3_box()], ["H", "N"])
    e64, f64 = ForceField(m64)(state)
    e32, f32 = ForceField(m32)(state)
    assert f32.dtype == torch.float64 and e32.dtype == torch.float64
    assert torch.allclose(f32, f64, atol=1e-4) and torch.allclose(e32, e64, atol=1e-4)


def test_cli_with_a_saved_model(tmp_path, capsys):
    model = small_allegro()
    models.save_model(model, tmp_path / "model.pt", extra={"force_std": 0.5})
    ase.io.write(tmp_path / "nh3.extxyz", nh3_box())
    cfg = {
        "structure": "nh3.extxyz",
        "model": "model.pt",
        "replicas": 2,
        "steps": 12,
        "timestep_fs": 1.0,
        "temperature_K": 100.0,
        "schedule": [{"ensemble": "nvt", "steps": 6}, {"ensemble": "nve"}],
        "checks": {"every": 3},
        "output": {"directory": str(tmp_path / "run"), "trajectory_every": 6},
    }
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["md", str(tmp_path / "md.yaml"), "--no-progress"]) == 0
    summary = yaml.safe_load((tmp_path / "run" / "summary.json").read_text())
    assert summary["force_sigma_eV_A"] == 0.5 and summary["force_sigma_source"] == "model file"
    assert summary["last_step"] == 12
    frames = ase.io.read(tmp_path / "run" / "traj_001.extxyz", index=":")
    assert [f.info["step"] for f in frames] == [0, 6, 12]
    assert "MD: 2 replicas" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(not NH3_432.exists(), reason="shared/data/nh3_432.lmp not available")
def test_liquid_ammonia_432_nvt_then_nve(tmp_path):
    """The paper's 432-atom box: NVT → NVE for 2 replicas with a small Allegro."""
    model = small_allegro()
    models.save_model(model, tmp_path / "model.pt")
    cfg = {
        "structure": str(NH3_432),
        "model": str(tmp_path / "model.pt"),
        "replicas": 2,
        "steps": 30,
        "timestep_fs": 0.5,
        "temperature_K": 200.0,
        "schedule": [{"ensemble": "nvt", "steps": 10}, {"ensemble": "nve"}],
        "checks": {"every": 10, "temperature_window_K": None},
        "output": {"directory": str(tmp_path / "run"), "progress": False},
    }
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["md", str(tmp_path / "md.yaml")]) == 0
    summary = yaml.safe_load((tmp_path / "run" / "summary.json").read_text())
    assert summary["atoms_per_replica"] == [432, 432] and summary["last_step"] == 30


def test_cli_model_option_replaces_the_configs_model(tmp_path, capsys):
    """--model runs a config written for another model (or a reference potential)."""
    model = small_allegro()
    models.save_model(model, tmp_path / "mine.pt")
    ase.io.write(tmp_path / "nh3.extxyz", nh3_box())
    cfg = {
        "structure": "nh3.extxyz",
        "reference_potential": {"kind": "lennard_jones"},
        "steps": 4,
        "schedule": [{"ensemble": "nve"}],
        "output": {"directory": str(tmp_path / "run")},
    }
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["md", str(tmp_path / "md.yaml"), "--no-progress", "--model", str(tmp_path / "mine.pt")]) == 0
    resolved = yaml.safe_load((tmp_path / "run" / "resolved_config.yaml").read_text())
    assert resolved["model"] == str((tmp_path / "mine.pt").resolve())
    assert resolved["reference_potential"] is None
    capsys.readouterr()
    assert main(["md", str(tmp_path / "md.yaml"), "--model", str(tmp_path / "none.pt")]) == 2
    assert capsys.readouterr().err.strip() == f"error: model file not found: {tmp_path / 'none.pt'}"
