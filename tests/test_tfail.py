"""Time-to-failure ensembles: sizes and seeding, t_failure counted in production (NVE) steps against an
analytic failure time, batch independence, censoring, resumability, the CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.lattice.cubic import FaceCenteredCubic
from conftest import small_model

from legato.cli.main import main
from legato.data import keys as K
from legato.errors import LegatoError
from legato.md.potentials import LennardJones
from legato.stats.failures import format_failure_table, read_failure_table
from legato.units import FS, KB_EV_PER_K
from legato.workflows.plots import read_outlier_csv
from legato.workflows.protocol import TfailProtocol
from legato.workflows.tfail import (
    derived_seed,
    parse_sizes,
    replicate_box,
    run_ensemble,
)

torch.set_num_threads(1)
QUIET = {"progress": False, "log": lambda s: None}


class ConstantForce(torch.nn.Module):
    """Every atom feels the same force F along x (E = −F Σ x): velocity Verlet is exact."""

    def __init__(self, force_eV_A: float, r_max: float = 3.0):
        super().__init__()
        self.r_max, self.force = r_max, force_eV_A
        self.register_buffer("_marker", torch.zeros((), dtype=torch.float64))

    def forward(self, g: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pos = g[K.POSITIONS]  # [n_atoms, 3]
        forces = torch.zeros_like(pos)
        forces[:, 0] = self.force
        atomic = -self.force * pos[:, 0]  # [n_atoms]
        energy = torch.zeros(g[K.CELL].shape[0], dtype=pos.dtype).index_add_(0, g[K.BATCH], atomic)
        return {K.TOTAL_ENERGY: energy, K.FORCES: forces, K.ATOMIC_ENERGY: atomic}


def cubic_argon(n: int = 2, a: float = 4.0) -> Atoms:
    g = np.arange(n) * a
    pos = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3) + a / 2
    return Atoms(f"Ar{len(pos)}", positions=pos, cell=np.eye(3) * n * a, pbc=True)


def fcc_argon() -> Atoms:
    return FaceCenteredCubic("Ar", size=(2, 2, 2), latticeconstant=5.6, pbc=True)


def test_parse_sizes_and_replication():
    assert parse_sizes("1, 2,1x1x2") == [(1, 1, 1), (2, 2, 2), (1, 1, 2)]
    assert parse_sizes([3, "2x2x1"]) == [(3, 3, 3), (2, 2, 1)]
    for bad in ("0", "2x2", "a", "1,1", ""):
        with pytest.raises(LegatoError):
            parse_sizes(bad)
    base = cubic_argon()
    base.set_masses([2.0] * len(base))
    exact = base.repeat((1, 2, 3))
    big = replicate_box(base, (1, 2, 3), 0.05, seed=4)
    assert len(big) == 6 * len(base)
    np.testing.assert_allclose(big.cell.array, exact.cell.array)
    np.testing.assert_array_equal(big.get_masses(), 2.0)
    d = big.positions - exact.positions
    frac = d @ np.linalg.inv(big.cell.array)
    d = (frac - np.round(frac)) @ big.cell.array  # undo the wrap
    assert abs(d.std() - 0.05) < 0.01 and abs(d.mean()) < 0.01
    np.testing.assert_array_equal(replicate_box(base, (1, 2, 3), 0.05, 4).positions, big.positions)
    assert not np.allclose(replicate_box(base, (1, 2, 3), 0.05, 5).positions, big.positions)


def analytic_failure_step(
    n_atoms: int, force: float, temperature: float, dt_fs: float, every: int, mass: float
) -> int:
    """First check step at which T > 3T/2 under a constant force (zero total momentum)."""
    ke0 = 0.5 * (3 * n_atoms - 3) * KB_EV_PER_K * temperature
    # KE(t) = KE0 + N F² t² / (2m): T exceeds 1.5 T0 once N F² t² / (2 m KE0) > 1/2
    t_star = math.sqrt(mass * ke0 / (n_atoms * force**2)) / FS  # fs
    return every * (math.floor(t_star / dt_fs / every) + 1)


def test_t_failure_counts_production_steps_as_predicted_analytically(tmp_path):
    pot = ConstantForce(0.01)
    protocol = TfailProtocol(
        temperature_K=100.0,
        timestep_fs=2.0,
        nvt_steps=0,
        max_steps=1000,
        check_every=10,
        perturb_A=0.01,
        min_distance_A=None,
    )  # the atoms do not interact: they may cross
    res = run_ensemble(pot, cubic_argon(), "1,1x1x2", 3, protocol, tmp_path, "cf", **QUIET)
    assert len(res.table) == 6
    mass = fcc_argon().get_masses()[0]
    for rec in res.table:
        expected = analytic_failure_step(rec.n_atoms, 0.01, 100.0, 2.0, 10, mass)
        assert rec.t_failure_steps == expected, (rec.n_atoms, expected)
        assert rec.t_failure_fs == 2.0 * expected
        assert rec.reason == "temperature" and not rec.censored
        assert rec.extra["stage"] == "nve" and rec.extra["t_total_steps"] == str(expected)
    assert {r.t_failure_steps for r in res.table} == {350, 360}  # N = 8 and N = 16

    # with NVT first, t_failure counts production (NVE) steps only; a budget below it censors
    prot2 = TfailProtocol(
        temperature_K=100.0,
        timestep_fs=2.0,
        nvt_steps=30,
        max_steps=200,
        check_every=10,
        thermostat_tau_fs=1e6,
        min_distance_A=None,
    )
    res2 = run_ensemble(pot, cubic_argon(), "1", 2, prot2, tmp_path / "b", "cf", **QUIET)
    for rec in res2.table:
        assert rec.censored and rec.reason == "budget"
        assert rec.t_failure_steps == 200 and rec.extra["t_total_steps"] == "230"


def test_instances_do_not_depend_on_their_batch_and_runs_resume(tmp_path):
    pot = LennardJones(r_max=6.0)
    prot = TfailProtocol(temperature_K=150.0, timestep_fs=40.0, nvt_steps=20, max_steps=120, perturb_A=0.05)
    together = run_ensemble(pot, fcc_argon(), "1", 4, prot, tmp_path / "all", "lj", **QUIET)
    times = [r.t_failure_steps for r in together.table]
    assert len(set(times)) > 1  # the seeds matter
    # the MD runner's own per-replica table names the velocity seed each instance really used
    with open(tmp_path / "all" / "md" / "lj" / "N32_s0-3" / "instances.csv") as fh:
        used = [int(row["seed"]) for row in csv.DictReader(fh)]
    assert used == [derived_seed(s, 32, 2) for s in range(4)]
    alone = run_ensemble(pot, fcc_argon(), "1", 2, prot, tmp_path / "two", "lj", seed=2, **QUIET)
    assert list(alone.table) == [r for r in together.table if r.seed in (2, 3)]

    # raising the instance count runs only the missing seeds, in a new batch
    more = run_ensemble(pot, fcc_argon(), "1", 4, prot, tmp_path / "two", "lj", seed=0, **QUIET)
    assert [b["seeds"] for b in more.batches] == [[0, 1]]
    by_seed = {r.seed: r for r in more.table}
    assert [by_seed[s] for s in range(4)] == list(together.table)
    # a finished size is skipped entirely; the table file is unchanged
    before = (tmp_path / "all" / "failures.csv").read_bytes()
    again = run_ensemble(pot, fcc_argon(), "1", 4, prot, tmp_path / "all", "lj", **QUIET)
    assert again.batches == [] and (tmp_path / "all" / "failures.csv").read_bytes() == before

    # other protocol or other weights under the same label: refused
    with pytest.raises(LegatoError, match="protocol"):
        run_ensemble(
            pot, fcc_argon(), "1", 4, TfailProtocol(temperature_K=151.0), tmp_path / "all", "lj", **QUIET
        )
    with pytest.raises(LegatoError, match="model labelled"):
        run_ensemble(
            LennardJones(r_max=6.0, sigma_A=3.3), fcc_argon(), "1", 4, prot, tmp_path / "all", "lj", **QUIET
        )


class Interrupt(torch.nn.Module):
    """Wraps a potential and raises KeyboardInterrupt at one call (a kill mid-run)."""

    def __init__(self, inner, at_call: int):
        super().__init__()
        self.inner, self.r_max = inner, inner.r_max
        self._counter = {"calls": 0, "at": at_call}  # private: not part of the fingerprint

    def forward(self, g):
        self._counter["calls"] += 1
        if self._counter["calls"] == self._counter["at"]:
            raise KeyboardInterrupt
        return self.inner(g)


def test_interrupted_size_resumes_from_its_md_checkpoint(tmp_path):
    prot = TfailProtocol(temperature_K=150.0, timestep_fs=40.0, nvt_steps=20, max_steps=120, perturb_A=0.05)
    ref = run_ensemble(LennardJones(r_max=6.0), fcc_argon(), "1", 3, prot, tmp_path / "ref", "lj", **QUIET)
    pot = Interrupt(LennardJones(r_max=6.0), 70)
    with pytest.raises(KeyboardInterrupt):
        run_ensemble(pot, fcc_argon(), "1", 3, prot, tmp_path / "cut", "lj", checkpoint_every=25, **QUIET)
    assert not (tmp_path / "cut" / "failures.csv").exists()
    assert (tmp_path / "cut" / ".tfail.lock").read_text() == ""  # released, no PID left behind
    assert (tmp_path / "cut" / "md" / "lj" / "N32_s0-2" / "checkpoint.pt").is_file()
    res = run_ensemble(pot, fcc_argon(), "1", 3, prot, tmp_path / "cut", "lj", checkpoint_every=25, **QUIET)
    assert list(res.table) == list(ref.table)
    a = (tmp_path / "ref" / "outliers.csv").read_text()
    assert (tmp_path / "cut" / "outliers.csv").read_text() == a


def test_cli_writes_tables_that_round_trip_and_plot(tmp_path, capsys):
    from legato.models import save_model

    model = small_model(
        torch.float32,
        r_max=3.0,
        l_max=1,
        num_layers=1,
        avg_num_neighbors=8.0,
        per_species_energy_shift=0.0,
        per_species_energy_scale=0.01,
    )
    save_model(model, tmp_path / "m.pt")
    from legato.data.liquid import build_liquid

    box = build_liquid("NH3", 4, density_g_cm3=0.7, seed=1, deuterium=True)
    box.write(tmp_path / "box.extxyz")
    out = tmp_path / "tf"
    argv = [
        "tfail",
        str(tmp_path / "m.pt"),
        "--structure",
        str(tmp_path / "box.extxyz"),
        "--sizes",
        "1,1x1x2",
        "--instances",
        "2",
        "--temperature-K",
        "200",
        "--timestep-fs",
        "1.0",
        "--nvt-steps",
        "5",
        "--thermostat-tau-fs",
        "7.5",
        "--max-steps",
        "10",
        "--check-every",
        "5",
        "--out",
        str(out),
        "--label",
        "tiny",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert json.loads((out / "protocol.json").read_text())["protocol"]["thermostat_tau_fs"] == 7.5
    table = read_failure_table(out / "failures.csv")
    assert table.sizes("tiny") == [16, 32] and len(table) == 4
    text = (out / "failures.csv").read_text()
    assert format_failure_table(read_failure_table(out / "failures.csv")) == text
    for rec in table:
        assert rec.t_failure_steps <= 10 and rec.t_failure_fs == 1.0 * rec.t_failure_steps
        assert rec.censored == (rec.reason == "budget")
    runs = read_outlier_csv(out / "outliers.csv")
    assert set(runs) == {("tiny", f"N{n}_s{s}") for n in (16, 32) for s in (0, 1)}
    with open(out / "outliers.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {int(r["step"]) - int(r["nve_step"]) for r in rows} == {5}
    assert main(argv) == 0  # a rerun finds everything done
    assert "skipped" in capsys.readouterr().out
    assert (out / "failures.csv").read_text() == text
    bad = list(argv)
    bad[bad.index("--sizes") + 1] = "1,0"
    assert main(bad) == 2
    assert "error:" in capsys.readouterr().err
