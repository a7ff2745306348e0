"""Cross-check of ``legato pimd`` against i-PI on the same potential (issue 13).

i-PI (PyPI ``ipi``) runs NVT-PIMD as a subprocess and gets energies and forces over a UNIX
socket from ASE's ``SocketClient``, which evaluates the legato potential module (the same
torch module legato's engine calls) through a small ASE calculator. The system: ``n_mol``
tetrahedral "NH3" molecules (N + 3 H, all four atoms joined by legato's ``HarmonicPairs``
springs, r₀ = 1 Å), far apart in vacuum (independent). Same P, T, Δt, PILE-L thermostat
(centroid τ, λ = 1), BAOAB splitting and Cayley free-polymer propagator on both sides.
Estimators (primitive and centroid-virial kinetic energy per species, bead-averaged
potential) are block-averaged with :func:`legato.pimd.estimators.block_average` over the
same steps after the same equilibration.

    OMP_NUM_THREADS=1 python benchmarks/pimd_ipi_compare.py            # the table of docs/pimd.md
    OMP_NUM_THREADS=1 python benchmarks/pimd_ipi_compare.py --steps 4000 --replicas 2
    OMP_NUM_THREADS=1 python benchmarks/pimd_ipi_compare.py --model runs/small_legato/best_model.pt

``--model FILE`` runs ASE's NH3 molecule with a trained legato model instead (i-PI's client
then uses :class:`legato.calculator.LegatoCalculator`; both sides evaluate it eagerly).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.units import _amu, _me

from legato.data import atoms_to_graph
from legato.md.potentials import HarmonicPairs
from legato.pimd import run_pimd
from legato.pimd.estimators import block_average

TYPE_NAMES = ["H", "N"]
#: (label, legato summary key, i-PI property, species or None for all atoms)
QUANTITIES = [
    ("K_cv H (eV/atom)", "kinetic_cv_eV_per_atom", "kinetic_cv{electronvolt}(H)", "H"),
    ("K_cv N (eV/atom)", "kinetic_cv_eV_per_atom", "kinetic_cv{electronvolt}(N)", "N"),
    ("K_prim H (eV/atom)", "kinetic_prim_eV_per_atom", "kinetic_td{electronvolt}(H)", "H"),
    ("K_prim N (eV/atom)", "kinetic_prim_eV_per_atom", "kinetic_td{electronvolt}(N)", "N"),
    ("K_cv all (eV)", "kinetic_cv_eV", "kinetic_cv{electronvolt}", None),
    ("K_prim all (eV)", "kinetic_prim_eV", "kinetic_td{electronvolt}", None),
    ("V (eV)", "potential_eV", "potential{electronvolt}", None),
]


@dataclass
class Settings:
    n_mol: int = 4
    beads: int = 8
    temperature_K: float = 300.0
    timestep_fs: float = 0.5
    tau_centroid_fs: float = 50.0
    k_eV_A2: float = 20.0
    steps: int = 20000
    skip_steps: int = 2000
    every: int = 5  # sampling stride of both codes
    blocks: int = 20
    replicas: int = 4  # legato ring polymers (i-PI runs one)
    seed: int = 1
    model: str = ""  # a legato model file: ASE's NH3 molecules with it instead of the springs


def molecules(s: Settings) -> Atoms:
    """``n_mol`` molecules on a line (no pbc): regular tetrahedra (N + 3 H, edge 1 Å) 8 Å apart
    for the springs, ASE's NH3 10 Å apart for a model."""
    spacing_A = 10.0 if s.model else 8.0
    if s.model:
        from ase.build import molecule

        mol = molecule("NH3")
        pos = mol.positions
    else:
        pos = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float) / np.sqrt(8.0)
    pos = np.concatenate([pos + [spacing_A * i, 0.0, 0.0] for i in range(s.n_mol)])
    return Atoms("NH3" * s.n_mol, positions=pos)


def potential(s: Settings) -> torch.nn.Module:
    """The model file, or springs between all pairs closer than 2 Å (off from 1.6 Å), r₀ = 1 Å."""
    if s.model:
        from legato.models import load_model

        return load_model(s.model)
    return HarmonicPairs(k_eV_per_A2=s.k_eV_A2, r0_A=1.0, r_max=2.0)


def client_calculator(s: Settings) -> Calculator:
    """The ASE calculator of the socket client: LegatoCalculator for a model (eager, as legato's run)."""
    if s.model:
        from legato.calculator import LegatoCalculator

        return LegatoCalculator(s.model, compile=False)
    return PotentialCalculator(potential(s), TYPE_NAMES, 2.0)


class PotentialCalculator(Calculator):
    """ASE calculator evaluating a legato potential module (model or reference) on one frame."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, pot: torch.nn.Module, type_names: list[str], r_max: float, **kwargs):
        super().__init__(**kwargs)
        self.pot, self.type_names, self.r_max = pot, type_names, r_max

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        graph = atoms_to_graph(self.atoms, self.type_names, self.r_max, torch.float64, with_labels=False)
        out = self.pot(graph)
        e = float(out["energy"].sum())
        self.results = {"energy": e, "free_energy": e, "forces": out["forces"].detach().double().numpy()}


def run_legato(s: Settings) -> tuple[dict, float]:
    """legato pimd on the system: {label: (mean, stderr)} and wall seconds."""
    atoms = molecules(s)
    t0 = time.perf_counter()
    res = run_pimd(
        atoms,
        potential(s),
        beads=s.beads,
        replicas=s.replicas,
        steps=s.steps,
        seed=s.seed,
        compile=False,
        timestep_fs=s.timestep_fs,
        temperature_K=s.temperature_K,
        propagator="cayley",
        schedule=[{"ensemble": "nvt"}],
        thermostat={"centroid": "pile_l", "tau_centroid_fs": s.tau_centroid_fs, "pile_lambda": 1.0},
        estimators={"skip_steps": s.skip_steps, "blocks": s.blocks},
        output={"thermo_every": s.every, "trajectory_every": 0, "progress": False},
    )
    wall = time.perf_counter() - t0
    if res.summary["failed"]:
        raise RuntimeError(f"legato ring polymers failed: {res.summary['failed']}")
    est = res.summary["estimators"]
    out = {}
    for label, key, _, sp in QUANTITIES:
        e = est["species"][sp][key] if sp else est["polymer"][key]
        out[label] = (e["mean"], e["stderr"])
    return out, wall


def ipi_input(s: Settings, atoms: Atoms, address: str) -> str:
    """i-PI's input.xml: NVT-PIMD with PILE-L, BAOAB, Cayley, the masses of ``atoms``."""
    props = ", ".join(["step"] + [q[2] for q in QUANTITIES])
    masses = ", ".join(f"{m * _amu / _me:.10f}" for m in atoms.get_masses())  # atomic units
    return f"""<simulation verbosity='low' safe_stride='100000'>
  <output prefix='sim'>
    <properties stride='{s.every}' filename='out' flush='100'> [ {props} ] </properties>
  </output>
  <total_steps>{s.steps}</total_steps>
  <prng><seed>{s.seed + 12345}</seed></prng>
  <ffsocket name='legato' mode='unix' pbc='false'>
    <address>{address}</address><latency>1e-4</latency><timeout>600</timeout>
  </ffsocket>
  <system>
    <initialize nbeads='{s.beads}'>
      <file mode='xyz' units='angstrom'>init.xyz</file>
      <masses mode='manual'> [ {masses} ] </masses>
      <velocities mode='thermal' units='kelvin'>{s.temperature_K}</velocities>
    </initialize>
    <normal_modes propagator='cayley'/>
    <forces><force forcefield='legato'/></forces>
    <motion mode='dynamics'>
      <fixcom>False</fixcom>
      <dynamics mode='nvt' splitting='baoab'>
        <timestep units='femtosecond'>{s.timestep_fs}</timestep>
        <thermostat mode='pile_l'>
          <tau units='femtosecond'>{s.tau_centroid_fs}</tau>
          <pile_lambda>1.0</pile_lambda>
        </thermostat>
      </dynamics>
    </motion>
    <ensemble><temperature units='kelvin'>{s.temperature_K}</temperature></ensemble>
  </system>
</simulation>
"""


def write_xyz(path: Path, atoms: Atoms, box_A: float = 200.0) -> None:
    lines = [str(len(atoms)), f"# CELL(abcABC): {box_A} {box_A} {box_A} 90 90 90 positions{{angstrom}}"]
    for sym, p in zip(atoms.get_chemical_symbols(), atoms.positions, strict=True):
        lines.append(f"{sym} {p[0]:.10f} {p[1]:.10f} {p[2]:.10f}")
    path.write_text("\n".join(lines) + "\n")


def run_ipi(s: Settings, timeout_s: float = 3000.0) -> tuple[dict, float]:
    """i-PI (subprocess) + ASE SocketClient (this process) on the system: {label: (mean, stderr)}."""
    from ase.calculators.socketio import SocketClient

    atoms = molecules(s)
    address = f"legato_ipi_{os.getpid()}_{threading.get_ident() % 100000}"
    sock = Path(f"/tmp/ipi_{address}")
    with tempfile.TemporaryDirectory(prefix="legato_ipi_") as tmp:
        work = Path(tmp)
        write_xyz(work / "init.xyz", atoms)
        (work / "input.xml").write_text(ipi_input(s, atoms, address))
        env = dict(os.environ, OMP_NUM_THREADS="1")
        t0 = time.perf_counter()
        log = open(work / "ipi.log", "w")
        proc = subprocess.Popen(
            ["i-pi", "input.xml"], cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        try:
            while not sock.exists():
                if proc.poll() is not None or time.perf_counter() - t0 > 60:
                    raise RuntimeError(f"i-PI did not open its socket:\n{(work / 'ipi.log').read_text()}")
                time.sleep(0.1)
            client_atoms = atoms.copy()
            client_atoms.calc = client_calculator(s)
            client = SocketClient(unixsocket=address, timeout=timeout_s)
            try:
                client.run(client_atoms)
            except OSError:
                pass  # i-PI closed the socket at the end of the run
            finally:
                client.close()
            proc.wait(timeout=120)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"i-PI failed:\n{(work / 'ipi.log').read_text()[-3000:]}")
            data = np.loadtxt(work / "sim.out", ndmin=2)  # [rows, 1 + quantities]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
            sock.unlink(missing_ok=True)
    n_sp = {sp: sum(1 for x in atoms.get_chemical_symbols() if x == sp) for sp in ("H", "N")}
    keep = data[:, 0] > s.skip_steps
    out = {}
    for col, (label, _, _, sp) in enumerate(QUANTITIES, start=1):
        series = data[keep, col] / (n_sp[sp] if sp else 1)
        out[label] = block_average(series, s.blocks)
    out["_samples"] = int(keep.sum())
    return out, wall


def compare(s: Settings) -> tuple[list[dict], dict]:
    """Both runs; rows {quantity, legato, legato_err, ipi, ipi_err, z} (z in combined errors)."""
    leg, t_leg = run_legato(s)
    ipi, t_ipi = run_ipi(s)
    rows = []
    for label, *_ in QUANTITIES:
        (a, ea), (b, eb) = leg[label], ipi[label]
        rows.append(
            {
                "quantity": label,
                "legato": a,
                "legato_err": ea,
                "ipi": b,
                "ipi_err": eb,
                "z": (a - b) / np.hypot(ea, eb),
            }
        )
    return rows, {"legato_s": t_leg, "ipi_s": t_ipi, "ipi_samples": ipi["_samples"]}


def format_table(rows: list[dict]) -> str:
    lines = ["| quantity | legato pimd | i-PI | difference / combined error |", "|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['quantity']} | {r['legato']:.5f} ± {r['legato_err']:.5f} "
            f"| {r['ipi']:.5f} ± {r['ipi_err']:.5f} | {r['z']:+.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = Settings()
    for name, value in vars(d).items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    s = Settings(**vars(ap.parse_args()))
    torch.set_num_threads(1)
    rows, info = compare(s)
    kt = 8.617333262e-5 * s.temperature_K
    system = f"model {s.model}" if s.model else f"HarmonicPairs k = {s.k_eV_A2:g} eV/A^2"
    print(
        f"{s.n_mol} NH3 molecules ({system}) x {s.beads} beads, {s.temperature_K:g} K, "
        f"dt {s.timestep_fs} fs, PILE-L tau {s.tau_centroid_fs} fs, {s.steps} steps "
        f"({s.skip_steps} equilibration), every {s.every}, "
        f"{s.blocks} blocks; legato {s.replicas} polymers ({info['legato_s']:.0f} s), i-PI 1 polymer "
        f"({info['ipi_s']:.0f} s, {info['ipi_samples']} samples); classical 3kT/2 = {1.5 * kt:.5f} eV"
    )
    print(format_table(rows))


if __name__ == "__main__":
    main()
