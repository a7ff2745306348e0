"""Sampling pipeline for liquid reference data: QM-driven Langevin MD, strained and displaced
frames, and the final merge with a recorded train/validation/test split.

1. :func:`run_md` — several independently packed boxes at several temperatures, each driven
   by the QM calculator itself (Langevin, deuterium masses). After a discarded equilibration,
   every ``stride``-th step is stored with the energy, forces and stress the MD just computed
   (those ARE the labels). One appendable extxyz file per trajectory; a rerun resumes each
   trajectory from its last stored frame (positions and momenta).
2. :func:`derive_frames` — affinely strained (compressed / stretched) copies, copies with only
   the molecular centres scaled (rigid molecules pushed together / apart), and randomly
   displaced copies of MD frames; these are labelled by :func:`legato.data.label.label_frames`.
3. :func:`finalize` — merge, seeded split by contiguous time blocks per trajectory (derived
   frames follow their parent), write one compressed extxyz plus a split JSON.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from legato.data.crystal import ammonia_crystal
from legato.data.label import (
    SOURCE_INDEX,
    append_frame,
    calculator_metadata,
    compute_labels,
    labelled_copy,
    make_calculator,
    read_labelled,
    write_json_atomic,
)
from legato.data.liquid import build_liquid, intact_molecules
from legato.errors import LegatoError
from legato.fileio import atomic_write
from legato.units import FS, KB_EV_PER_K


@dataclass(frozen=True)
class Trajectory:
    """One QM-driven Langevin trajectory from a freshly packed box."""

    name: str
    box_seed: int
    temperature_K: float
    equil_steps: int = 40
    steps: int = 130  # production steps after equilibration
    stride: int = 1  # store every stride-th production step
    timestep_fs: float = 2.0
    friction_per_fs: float = 0.01
    equil_friction_per_fs: float = 0.05
    molecule: str = "NH3"
    molecules: int = 32
    density_g_cm3: float = 0.7982
    deuterium: bool = True
    calculator: str = "tblite:GFN1-xTB"
    phase: str = "liquid"  # or "crystal": phase-I ammonia, cells³ unit cells
    cells: int = 2

    @property
    def n_frames(self) -> int:
        return self.steps // self.stride


def plan_trajectories(
    temperatures_K: Sequence[float],
    boxes_per_temperature: int,
    seed: int,
    **kwargs: Any,
) -> list[Trajectory]:
    """Trajectories interleaved by temperature (box seeds ``seed*1000 + k``)."""
    out = []
    for b in range(boxes_per_temperature):
        for t in temperatures_K:
            k = len(out)
            prefix = "crystal_" if kwargs.get("phase") == "crystal" else ""
            out.append(Trajectory(f"{prefix}T{t:g}_b{b}", seed * 1000 + k, float(t), **kwargs))
    return out


def trajectory_path(out_dir: Path, traj: Trajectory) -> Path:
    return out_dir / f"md_{traj.name}.extxyz"


def _instantaneous_T(atoms: Atoms) -> float:
    dof = 3 * len(atoms) - 3  # centre of mass fixed
    return float(2.0 * atoms.get_kinetic_energy() / (dof * KB_EV_PER_K))


def initial_box(traj: Trajectory) -> Atoms:
    """The trajectory's starting structure: a packed liquid box (seeded) or the phase-I
    crystal at the trajectory's temperature (the seed then only sets the velocities)."""
    if traj.phase == "crystal":
        if traj.molecule != "NH3":
            raise LegatoError(f"only ammonia has a crystal builder, not {traj.molecule}")
        return ammonia_crystal(traj.cells, traj.temperature_K, deuterium=traj.deuterium)
    if traj.phase != "liquid":
        raise LegatoError(f"phase must be liquid or crystal, got {traj.phase!r}")
    return build_liquid(
        traj.molecule,
        traj.molecules,
        density_g_cm3=traj.density_g_cm3,
        seed=traj.box_seed,
        deuterium=traj.deuterium,
    )


def run_trajectory(traj: Trajectory, out_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) one trajectory, appending stored frames to its extxyz file."""
    from ase.md import velocitydistribution as vd
    from ase.md.langevin import Langevin

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = trajectory_path(out_dir, traj)
    done = read_labelled(path)
    meta = calculator_metadata(traj.calculator)
    calc = make_calculator(traj.calculator)  # reused: SCF restarts from the previous step
    t0 = time.perf_counter()
    if done:
        last = done[-1]
        step = int(last.info["step"])
        atoms = initial_box(traj)
        atoms.positions = last.positions
        atoms.set_momenta(last.get_momenta())
    else:
        step = 0
        atoms = initial_box(traj)
        rng = np.random.default_rng([traj.box_seed, 0])
        # thermalize_momenta replaces ASE's deprecated MaxwellBoltzmannDistribution (same draws)
        thermalize = getattr(vd, "thermalize_momenta", None)
        if thermalize is not None:
            thermalize(atoms, traj.temperature_K, rng=rng)
        else:  # ASE < 3.29
            vd.MaxwellBoltzmannDistribution(atoms, temperature_K=traj.temperature_K, rng=rng)
        vd.Stationary(atoms)
    from ase.constraints import FixCom

    atoms.set_constraint(FixCom())
    atoms.calc = calc
    n_total = traj.equil_steps + traj.steps
    info_common = {
        "source": "md",
        "phase": traj.phase,
        "traj": traj.name,
        "temperature_K": traj.temperature_K,
        "timestep_fs": traj.timestep_fs,
        "calculator": traj.calculator,
        "method": meta["method"],
        "program": meta["program"],
        "program_version": meta["program_version"],
        "label_settings": json.dumps(meta["settings"], sort_keys=True),
    }
    n_written, n_broken = 0, 0
    with open(path, "a") as fh:
        while step < n_total:
            equil = step < traj.equil_steps
            friction = traj.equil_friction_per_fs if equil else traj.friction_per_fs
            dyn = Langevin(
                atoms,
                timestep=traj.timestep_fs * FS,
                temperature_K=traj.temperature_K,
                friction=friction / FS,
                fixcm=False,
                rng=np.random.default_rng([traj.box_seed, 1, step]),
            )
            # run to the next stored step (or the end of equilibration) in one call
            if equil:
                n = traj.equil_steps - step
            else:
                prod = step - traj.equil_steps
                n = traj.stride - prod % traj.stride
            dyn.run(n)
            step += n
            if step <= traj.equil_steps or (step - traj.equil_steps) % traj.stride:
                continue
            labels = {  # raw QM forces, not the centre-of-mass-constrained MD forces
                "energy": np.array(atoms.get_potential_energy()),
                "forces": atoms.get_forces(apply_constraint=False),
                "stress": atoms.get_stress(voigt=True),
            }
            intact = intact_molecules(atoms, traj.molecule)
            n_broken += not intact
            info = {
                **info_common,
                "step": step,
                "time_fs": step * traj.timestep_fs,
                "T_inst_K": round(_instantaneous_T(atoms), 2),
                "intact": bool(intact),
            }
            frame = labelled_copy(atoms, labels, info)
            frame.set_momenta(atoms.get_momenta())
            append_frame(fh, frame)
            n_written += 1
    return {
        "name": traj.name,
        "frames_written": n_written,
        "frames_resumed": len(done),
        "broken_frames": n_broken,
        "wall_seconds": time.perf_counter() - t0,
    }


def _run_one(args: tuple[Trajectory, str]) -> dict[str, Any]:
    return run_trajectory(*args)


def run_md(
    trajectories: Sequence[Trajectory],
    out_dir: str | Path,
    workers: int = 2,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run all trajectories over ``workers`` processes (one OpenMP thread each), with a
    progress bar over stored frames. Writes ``out_dir/md_plan.json`` and ``md_runs.jsonl``."""
    import multiprocessing as mp

    from tqdm import tqdm

    from legato.data.label import complete_frame_count

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan_path = out_dir / "md_plan.json"
    plan = [asdict(t) for t in trajectories]
    if plan_path.exists() and json.loads(plan_path.read_text()) != plan:
        raise LegatoError(f"{out_dir} holds a different MD plan; use a new directory")
    write_json_atomic(plan_path, plan)
    total = sum(t.n_frames for t in trajectories)
    ctx = mp.get_context("spawn")
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    results: list[dict[str, Any]] = []
    try:
        with (
            ctx.Pool(max(1, workers)) as pool,
            tqdm(total=total, desc="QM MD", unit="frame", disable=not progress) as bar,
        ):
            job = pool.map_async(_run_one, [(t, str(out_dir)) for t in trajectories], 1)
            while not job.ready():
                job.wait(5.0)
                n = sum(complete_frame_count(trajectory_path(out_dir, t)) for t in trajectories)
                bar.update(n - bar.n)
            results = job.get()
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old
    with open(out_dir / "md_runs.jsonl", "a") as fh:
        for r in results:
            fh.write(json.dumps(r) + "\n")
    return results


def load_md_frames(out_dir: str | Path) -> list[Atoms]:
    """All stored MD frames of the plan in ``out_dir``, trajectory by trajectory."""
    out_dir = Path(out_dir)
    plan_path = out_dir / "md_plan.json"
    if not plan_path.exists():
        raise LegatoError(f"no md_plan.json in {out_dir}: run the MD sampling first")
    frames: list[Atoms] = []
    for t in json.loads(plan_path.read_text()):
        frames += read_labelled(trajectory_path(out_dir, Trajectory(**t)))
    return frames


def _strip(atoms: Atoms) -> Atoms:
    out = atoms.copy()
    out.calc = None
    if "momenta" in out.arrays:
        del out.arrays["momenta"]
    return out


def scale_molecule_centres(atoms: Atoms, scale: float, atoms_per_molecule: int) -> Atoms:
    """Scale the cell and the molecular centres of mass by ``scale``, keeping every molecule
    rigid (for boxes ordered molecule by molecule; molecules are unwrapped first)."""
    out = atoms.copy()
    n_mol = len(out) // atoms_per_molecule
    pos = out.positions.reshape(n_mol, atoms_per_molecule, 3)
    cell = out.cell.array
    inv = np.linalg.inv(cell)
    # unwrap every molecule around its first atom (minimum image)
    d = pos - pos[:, :1]
    frac = d @ inv
    d -= np.round(frac) @ cell
    pos = pos[:, :1] + d
    m = out.get_masses().reshape(n_mol, atoms_per_molecule, 1)
    com = (pos * m).sum(1, keepdims=True) / m.sum(1, keepdims=True)  # [n_mol, 1, 3]
    out.set_cell(cell * scale, scale_atoms=False)
    out.positions = (pos - com + com * scale).reshape(-1, 3)
    out.wrap()
    return out


def derive_frames(
    md_frames: Sequence[Atoms],
    n_strained: int,
    n_displaced: int,
    seed: int,
    atoms_per_molecule: int = 4,
    compress: tuple[float, float] = (0.85, 0.95),
    stretch: tuple[float, float] = (1.05, 1.10),
    displace_A: tuple[float, float] = (0.01, 0.04),
) -> list[Atoms]:
    """Unlabelled frames derived from random MD frames.

    Strained frames (half affine, half rigid-molecule centre scaling; half compressed with a
    scale in ``compress``, half stretched in ``stretch``) and displaced frames (Gaussian
    displacement of every coordinate, σ uniform in ``displace_A``). Each carries ``source``,
    ``parent_traj``, ``parent_step`` and its ``scale`` or ``sigma_A`` in info.
    """
    if not md_frames:
        raise LegatoError("no MD frames to derive from")
    rng = np.random.default_rng(seed)
    out: list[Atoms] = []
    for k in range(n_strained):
        parent = md_frames[int(rng.integers(len(md_frames)))]
        lo, hi = compress if k % 2 == 0 else stretch
        scale = float(rng.uniform(lo, hi))
        if (k // 2) % 2 == 0:
            a = _strip(parent)
            a.set_cell(a.cell.array * scale, scale_atoms=True)
            kind = "strain_affine"
        else:
            a = scale_molecule_centres(_strip(parent), scale, atoms_per_molecule)
            kind = "strain_molecular"
        a.info = _derived_info(parent, kind, scale=round(scale, 5))
        out.append(a)
    for _ in range(n_displaced):
        parent = md_frames[int(rng.integers(len(md_frames)))]
        sigma = float(rng.uniform(*displace_A))
        a = _strip(parent)
        a.positions += rng.normal(scale=sigma, size=a.positions.shape)
        a.wrap()
        a.info = _derived_info(parent, "displaced", sigma_A=round(sigma, 5))
        out.append(a)
    return out


def _derived_info(parent: Atoms, source: str, **extra: float) -> dict[str, Any]:
    return {
        "source": source,
        "parent_traj": parent.info.get("traj", ""),
        "parent_step": int(parent.info.get("step", -1)),
        "temperature_K": parent.info.get("temperature_K", float("nan")),
        **({"phase": parent.info["phase"]} if "phase" in parent.info else {}),
        **extra,
    }


def split_indices(
    frames: Sequence[Atoms],
    seed: int,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    n_blocks: int = 10,
) -> dict[str, list[int]]:
    """Seeded train/validation/test split by contiguous time blocks within each trajectory.

    MD frames of one trajectory are cut into ``n_blocks`` consecutive blocks, which are
    shuffled and dealt to the three sets in proportion to ``fractions`` — neighbouring
    (strongly correlated) frames mostly land in the same set. Derived frames join the set of
    their parent frame.
    """
    rng = np.random.default_rng(seed)
    by_traj: dict[str, list[int]] = {}
    for i, a in enumerate(frames):
        if a.info.get("source") == "md":
            by_traj.setdefault(str(a.info["traj"]), []).append(i)
    where: dict[tuple[str, int], str] = {}
    sets: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    n_val = max(1, round(fractions[1] * n_blocks))
    n_test = max(1, round(fractions[2] * n_blocks))
    for name in sorted(by_traj):
        idx = sorted(by_traj[name], key=lambda i: int(frames[i].info["step"]))
        blocks = np.array_split(np.array(idx), n_blocks)
        perm = rng.permutation(n_blocks)
        for rank, b in enumerate(perm):
            which = "validation" if rank < n_val else "test" if rank < n_val + n_test else "train"
            for i in blocks[b]:
                sets[which].append(int(i))
                where[(name, int(frames[i].info["step"]))] = which
    for i, a in enumerate(frames):
        if a.info.get("source") != "md":
            key = (str(a.info.get("parent_traj")), int(a.info.get("parent_step", -1)))
            sets[where.get(key, "train")].append(i)
    return {k: sorted(v) for k, v in sets.items()}


def finalize(
    md_dir: str | Path,
    derived_labelled: str | Path | None,
    out_path: str | Path,
    split_path: str | Path,
    seed: int,
) -> dict[str, Any]:
    """Merge MD frames and labelled derived frames into one (optionally .gz) extxyz with a
    ``split`` field per frame, and write the split indices as JSON. Refuses to overwrite."""

    from legato.data.label import frame_text

    out_path, split_path = Path(out_path), Path(split_path)
    for p in (out_path, split_path):
        if p.exists():
            raise LegatoError(f"{p} exists; refusing to overwrite it")
    frames = [_strip_keep_labels(a) for a in load_md_frames(md_dir)]
    if derived_labelled is not None:
        frames += [_strip_keep_labels(a) for a in read_labelled(Path(derived_labelled))]
    split = split_indices(frames, seed)
    label_of = {i: k for k, idx in split.items() for i in idx}
    for i, a in enumerate(frames):
        a.info["split"] = label_of[i]
    with atomic_write(out_path, "wb") as raw:
        # mtime 0 and no file name in the gzip header: the same frames give the same bytes
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if out_path.suffix == ".gz" else None
        fh = io.TextIOWrapper(gz or raw, encoding="utf-8")
        for a in frames:
            fh.write(frame_text(a))
        fh.flush()
        fh.detach()  # leave closing ``raw`` to atomic_write (it fsyncs first)
        if gz is not None:
            gz.close()
    counts = {k: len(v) for k, v in split.items()}
    write_json_atomic(
        split_path, {"seed": seed, "scheme": "time blocks per trajectory", "counts": counts, **split}
    )
    return {"frames": len(frames), **counts}


def _strip_keep_labels(atoms: Atoms) -> Atoms:
    """Copy with labels kept in a single-point calculator but no momenta or bookkeeping."""
    from ase.calculators.singlepoint import SinglePointCalculator

    res = dict(atoms.calc.results) if atoms.calc is not None else {}
    out = _strip(atoms)
    out.info.pop(SOURCE_INDEX, None)
    out.info.pop("label_wall_s", None)
    out.calc = SinglePointCalculator(out, **res)
    return out


def label_single(atoms: Atoms, calculator: str) -> dict[str, np.ndarray]:
    """Labels of one frame with a fresh named calculator (convenience for checks)."""
    return compute_labels(atoms, make_calculator(calculator))


def describe_dataset(
    frames: Sequence[Atoms], r_max: float = 6.0, type_names: Sequence[str] = ("H", "N")
) -> dict[str, Any]:
    """Datasheet statistics: counts by source / temperature / split, force RMS per species
    (via :func:`legato.data.dataset_statistics`), spread of the energy per atom, mean
    neighbours per atom within ``r_max``, largest force, stress range, intact-molecule count."""
    from legato.data import dataset_statistics, graphs_from_frames
    from legato.data.liquid import intact_molecules

    if not frames:
        raise LegatoError("empty dataset")
    graphs = graphs_from_frames(frames, type_names, r_max)
    st = dataset_statistics(graphs, len(type_names))
    e_pa = np.array([a.get_potential_energy() / len(a) for a in frames])
    f_max = max(float(np.abs(a.get_forces()).max()) for a in frames)
    # pressure of the periodic frames (gas-phase molecules and clusters carry no stress)
    periodic = [a for a in frames if a.pbc.all() and "stress" in (a.calc.results if a.calc else {})]
    p_gpa = np.array([-np.trace(a.get_stress(voigt=False)) / 3 * 160.21766 for a in periodic])

    def count(key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in frames:
            k = str(a.info.get(key, ""))
            out[k] = out.get(k, 0) + 1
        return dict(sorted(out.items()))

    return {
        "frames": len(frames),
        "atoms": sorted({len(a) for a in frames}),
        "by_source": count("source"),
        "by_temperature_K": count("temperature_K"),
        "by_split": count("split"),
        "avg_num_neighbors": st.avg_num_neighbors,
        "r_max_A": r_max,
        "force_rms_eV_A": st.force_rms,
        "force_rms_per_species_eV_A": dict(zip(type_names, st.force_rms_per_species, strict=True)),
        "force_abs_max_eV_A": f_max,
        "energy_per_atom_eV": {
            "mean": float(e_pa.mean()),
            "std": float(e_pa.std()),
            "min": float(e_pa.min()),
            "max": float(e_pa.max()),
        },
        "energy_shifts_eV": dict(zip(type_names, st.energy_shifts, strict=True)),
        "pressure_GPa": (
            {
                "frames": len(p_gpa),
                "mean": float(p_gpa.mean()),
                "min": float(p_gpa.min()),
                "max": float(p_gpa.max()),
            }
            if len(p_gpa)
            else None
        ),
        "intact_frames": int(sum(intact_molecules(a, "NH3") for a in frames)),
        **_structure(frames),
    }


def _structure(frames: Sequence[Atoms]) -> dict[str, float]:
    """Liquid-structure checks on the MD frames: mean covalent N–H distance (Å), the first
    maximum of the N–N radial distribution function (Å) and the mean number of
    intermolecular N···H contacts closer than 2.5 Å per N (hydrogen bonds)."""
    from ase.neighborlist import neighbor_list

    md = [a for a in frames if a.info.get("source") == "md"]
    if not md:
        return {}
    nh, n_hb, n_n = [], 0, 0
    edges = np.linspace(2.0, 5.0, 61)
    hist = np.zeros(len(edges) - 1)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    for a in md:
        z = a.numbers
        i, j, d = neighbor_list("ijd", a, 5.0)
        pair_nh = (z[i] == 7) & (z[j] == 1)
        nh += d[pair_nh & (d < 1.3)].tolist()
        n_hb += int((pair_nh & (d >= 1.3) & (d < 2.5)).sum())
        nn = (z[i] == 7) & (z[j] == 7)
        n_count = int((z == 7).sum())
        n_n += n_count
        hist += np.histogram(d[nn], edges)[0] / (shell * n_count * n_count / a.get_volume())
    g = hist / len(md)
    centres = 0.5 * (edges[1:] + edges[:-1])
    return {
        "md_mean_NH_bond_A": float(np.mean(nh)),
        "md_gNN_first_peak_A": float(centres[int(np.argmax(g))]),
        "md_gNN_first_peak_height": float(g.max()),
        "md_hbonds_per_N_below_2.5A": n_hb / n_n,
    }
