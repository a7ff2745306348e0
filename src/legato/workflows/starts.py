"""Independent starting structures for time-to-failure instances (docs/starts.md).

A box of a×b×c tiles is assembled from a pool of independent 128-atom frames
(:func:`select_pool`); every tile is a pool frame moved by a random proper rotation of the
cube (:data:`ROTATIONS`) and a random periodic shift, molecules kept whole. Placements making
intermolecular contacts below :data:`CONTACT_LIMITS_A` are redrawn, remaining contacts are
removed by rigid molecule translations (:func:`tile_box`). The box is then healed by Langevin
MD with a reference model (:func:`heal`); an instance whose run fails is retiled with a new
derived seed, and that is recorded (:func:`build_starts`). Everything of an instance derives
from its integer seed (:func:`legato.workflows.tfail.derived_seed`).
:func:`legato.workflows.decorrelation.measure_decorrelation` measures the decorrelation time
τ and the interface healing time the healing length is judged against.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from scipy.spatial import cKDTree

from legato.errors import LegatoError
from legato.fileio import atomic_save
from legato.md.runner import MDRunner
from legato.workflows.tfail import Replication, derived_seed, eval_model

#: per element pair, the closest intermolecular distance (Å) a tile interface may leave: the
#: median over the MD frames of data/nh3_liquid_gfn1.extxyz.gz of each frame's closest
#: intermolecular contact (N–N 2.76, N–H 1.98, H–H 1.71 Å; absolute minima 2.49, 1.77, 1.42;
#: :func:`intermolecular_minima`), so no interface is more crowded than a typical frame. With
#: the absolute minima as limits a 2×2×2 tiled box heated and broke a molecule within 100 fs.
CONTACT_LIMITS_A: dict[str, float] = {"N-N": 2.75, "N-H": 1.95, "H-H": 1.7}
#: healing-run detectors: an H–H pair this close is a broken molecule (models/README.md)
FAIL_PAIRS_A: dict[str, float] = {"H-H": 1.0}
#: default healing length (steps of 1 fs): about the measured τ of 200 K liquid ND3 (0.57 ps,
#: k = 4 neighbours) and 3× the interface healing time; docs/starts.md for the measurement
DEFAULT_HEAL_STEPS = 600
ATOMS_PER_MOLECULE = 4


# ----------------------------------------------------------------------------- geometry
def _cube_rotations() -> np.ndarray:
    """The 24 proper rotations of a cube: signed permutation matrices with det +1. [24, 3, 3]"""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            for row, (col, s) in enumerate(zip(perm, signs, strict=True)):
                m[row, col] = s
            if np.linalg.det(m) > 0:
                out.append(m)
    return np.array(out)


ROTATIONS = _cube_rotations()  # [24, 3, 3]; ROTATIONS[0] is the identity


def cube_edge(atoms: Atoms) -> float:
    """Edge of a periodic cubic cell (Å); anything else is refused (tiles are rotated cubes)."""
    cell = atoms.cell.array
    edge = float(cell[0, 0])
    if not atoms.pbc.all() or not np.allclose(cell, edge * np.eye(3), atol=1e-6):
        raise LegatoError("a tile must be a periodic cubic cell (a, 0, 0; 0, a, 0; 0, 0, a)")
    return edge


def molecules(atoms: Atoms) -> np.ndarray:
    """Atom indices of each NH3 molecule, N first. [n_mol, 4]

    From the N H H H order when the atoms follow it; else each H joins its nearest N
    (minimum image), which must give three H per N."""
    sym = np.array(atoms.get_chemical_symbols())
    n = len(atoms)
    if n % ATOMS_PER_MOLECULE == 0:
        blocks = sym.reshape(-1, ATOMS_PER_MOLECULE)
        if (blocks[:, 0] == "N").all() and (blocks[:, 1:] == "H").all():
            return np.arange(n).reshape(-1, ATOMS_PER_MOLECULE)
    n_idx, h_idx = np.flatnonzero(sym == "N"), np.flatnonzero(sym == "H")
    if len(n_idx) == 0 or len(h_idx) != 3 * len(n_idx) or len(n_idx) + len(h_idx) != n:
        raise LegatoError("molecules: the structure is not made of NH3 molecules")
    d = np.array([atoms.get_distances(int(h), n_idx, mic=True) for h in h_idx])  # [n_H, n_N]
    owner = d.argmin(1)
    if np.bincount(owner, minlength=len(n_idx)).tolist() != [3] * len(n_idx):
        raise LegatoError("molecules: an N does not have exactly three nearest H atoms")
    return np.array([[int(i), *h_idx[owner == k].tolist()] for k, i in enumerate(n_idx)])


def whole_molecules(
    positions: np.ndarray, mols: np.ndarray, masses: np.ndarray, box: np.ndarray
) -> np.ndarray:
    """Positions with each molecule whole (H by minimum image to its N) and its centre of
    mass wrapped into the orthorhombic box ``box`` [3]. [n_atoms, 3]"""
    pos = positions.copy()
    n = pos[mols[:, 0]]  # [M, 3]
    for k in range(1, mols.shape[1]):
        d = pos[mols[:, k]] - n
        pos[mols[:, k]] = n + d - box * np.round(d / box)
    m = masses[mols]  # [M, 4]
    com = (pos[mols] * m[..., None]).sum(1) / m.sum(1)[:, None]  # [M, 3]
    shift = np.floor(com / box) * box
    pos[mols] -= shift[:, None, :]
    return pos


def transform_tile(atoms: Atoms, rotation: int, shift: np.ndarray, mols: np.ndarray | None = None) -> Atoms:
    """A cubic periodic frame rotated by ``ROTATIONS[rotation]`` about the cube centre, shifted
    by ``shift`` (Å, [3]), molecules whole with their centre of mass in the cell."""
    edge = cube_edge(atoms)
    mols = molecules(atoms) if mols is None else mols
    box = np.full(3, edge)
    pos = whole_molecules(atoms.positions, mols, atoms.get_masses(), box)
    c = 0.5 * edge
    pos = (pos - c) @ ROTATIONS[rotation].T + c + np.asarray(shift, float)
    out = atoms.copy()
    out.calc = None
    out.positions = whole_molecules(pos, mols, atoms.get_masses(), box)
    return out


def _pair_limit(sym: np.ndarray, limits: dict[str, float]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """limit(i, j) for arrays of atom indices (0 where no limit). [n_pairs]"""
    kinds = sorted(set(sym.tolist()))
    code = np.array([kinds.index(s) for s in sym])
    table = np.zeros((len(kinds), len(kinds)))
    for key, d in limits.items():
        a, b = key.split("-")
        if a in kinds and b in kinds:
            table[kinds.index(a), kinds.index(b)] = table[kinds.index(b), kinds.index(a)] = d
    return lambda i, j: table[code[i], code[j]]


def contacts(
    positions: np.ndarray, sym: np.ndarray, mol_of: np.ndarray, box: np.ndarray, limits: dict[str, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Intermolecular atom pairs closer than their pair's limit in an orthorhombic periodic
    box: (i, j, distance, limit), i < j. [n_pairs] each"""
    rmax = max(limits.values())
    tree = cKDTree(np.mod(positions, box), boxsize=box)
    pairs = tree.query_pairs(rmax, output_type="ndarray")  # [P, 2]
    i, j = pairs[:, 0], pairs[:, 1]
    d = positions[j] - positions[i]
    dist = np.linalg.norm(d - box * np.round(d / box), axis=1)
    lim = _pair_limit(sym, limits)(i, j)
    bad = (mol_of[i] != mol_of[j]) & (dist < lim)
    return i[bad], j[bad], dist[bad], lim[bad]


def _mol_of(mols: np.ndarray, n_atoms: int) -> np.ndarray:
    """Molecule index of every atom. [n_atoms]"""
    out = np.full(n_atoms, -1)
    out[mols] = np.arange(len(mols))[:, None]
    return out


def intermolecular_minima(frames: Sequence[Atoms]) -> dict[str, float]:
    """Closest intermolecular distance per element pair over ``frames`` (Å), e.g. to choose
    :data:`CONTACT_LIMITS_A` from the data."""
    out: dict[str, float] = {}
    for atoms in frames:
        box = np.full(3, cube_edge(atoms))
        sym, mol_of = np.array(atoms.get_chemical_symbols()), _mol_of(molecules(atoms), len(atoms))
        i, j, dist, _ = contacts(atoms.positions, sym, mol_of, box, {"N-N": 3.0, "N-H": 3.0, "H-H": 3.0})
        for a, b, d in zip(sym[i], sym[j], dist, strict=True):
            key = "-".join(sorted((a, b), key=lambda s: (s != "N", s)))
            out[key] = min(out.get(key, math.inf), float(d))
    return out


def select_pool(frames: Sequence[Atoms], temperatures_K: Sequence[float] | None = None) -> list[Atoms]:
    """The last frame of each distinct MD trajectory (``info['traj']``, ``source == 'md'``) at
    ``temperatures_K`` (all if None), sorted by trajectory name; labels dropped."""
    last: dict[str, Atoms] = {}
    for atoms in frames:
        info = atoms.info
        if info.get("source") != "md" or "traj" not in info:
            continue
        t_info = float(info.get("temperature_K", -1))
        if temperatures_K is not None and min(abs(t_info - t) for t in temperatures_K) > 1e-6:
            continue
        name = str(info["traj"])
        if name not in last or int(info.get("step", 0)) >= int(last[name].info.get("step", 0)):
            last[name] = atoms
    if not last:
        raise LegatoError(f"no MD trajectories (info 'traj', source 'md') at {temperatures_K} K")
    pool = [_bare(last[name]) for name in sorted(last)]
    for a, name in zip(pool, sorted(last), strict=True):
        a.info.update({"traj": name, "step": int(last[name].info.get("step", 0))})
    return pool


def _bare(b: Atoms) -> Atoms:
    """Numbers, positions, cell, pbc and masses of ``b``; no labels, info or momenta."""
    a = Atoms(b.numbers, b.positions, cell=b.cell, pbc=b.pbc)
    a.set_masses(b.get_masses())
    return a


# ----------------------------------------------------------------------------- tiling
def _placement_score(
    tree: cKDTree | None, sym: np.ndarray, pos: np.ndarray, box: np.ndarray, lim: dict
) -> float:
    """Sum of limit deficits (Å) of the contacts of a new tile (``pos`` [n, 3]) with the placed
    atoms (``tree``); ``sym``: symbols of the new tile, then of the placed atoms."""
    if tree is None:
        return 0.0
    sdm = cKDTree(np.mod(pos, box), boxsize=box).sparse_distance_matrix(
        tree, max(lim.values()), output_type="ndarray"
    )
    d_lim = _pair_limit(sym, lim)(sdm["i"], sdm["j"] + len(pos))
    return float(np.clip(d_lim - sdm["v"], 0, None).sum())


def push_apart(
    positions: np.ndarray, sym: np.ndarray, mols: np.ndarray, box: np.ndarray, limits: dict[str, float]
) -> tuple[np.ndarray, int, float] | None:
    """Remove contacts below ``limits`` by rigid translations of the two molecules of each
    (half the deficit + 0.02 Å each way, summed per sweep). Returns (positions, molecules
    moved, largest displacement in Å), or None if contacts remain after 200 sweeps."""
    pos, mol_of = positions.copy(), _mol_of(mols, len(positions))
    moved = np.zeros((len(mols), 3))
    for _ in range(200):
        i, j, dist, lim = contacts(pos, sym, mol_of, box, limits)
        if len(i) == 0:
            disp = np.linalg.norm(moved, axis=1)
            return pos, int((disp > 0).sum()), float(disp.max(initial=0.0))
        d = pos[j] - pos[i]
        d -= box * np.round(d / box)
        u = d / np.maximum(dist, 1e-9)[:, None]
        step = (0.5 * (lim - dist) + 0.02)[:, None] * u  # [P, 3]
        delta = np.zeros((len(mols), 3))
        np.add.at(delta, mol_of[j], step)
        np.add.at(delta, mol_of[i], -step)
        moved += delta
        pos += delta[mol_of]
    return None


def tile_box(
    pool: Sequence[Atoms],
    reps: Replication,
    seed: int,
    limits: dict[str, float] | None = None,
    draws: int = 24,
) -> tuple[Atoms, dict]:
    """An a×b×c box of rotated, shifted pool tiles (module docstring), seeded by ``seed``.

    Returns the box (molecules whole, masses kept) and a record: ``tiles`` (pool index,
    rotation id, shift x y z in Å, placements drawn) per tile, ``pushed`` molecules and
    ``max_push_A``. Raises LegatoError if the contacts cannot be removed."""
    limits = CONTACT_LIMITS_A if limits is None else limits
    edge = cube_edge(pool[0])
    for a in pool:
        if abs(cube_edge(a) - edge) > 1e-6 or a.get_chemical_symbols() != pool[0].get_chemical_symbols():
            raise LegatoError("pool frames must share their cubic cell and atom order")
    mols = molecules(pool[0])
    n = len(pool[0])
    rng = np.random.default_rng(seed)
    box = edge * np.array(reps, float)
    sym0 = np.array(pool[0].get_chemical_symbols())
    n_tiles = reps[0] * reps[1] * reps[2]
    order = np.concatenate([rng.permutation(len(pool)) for _ in range(-(-n_tiles // len(pool)))])[:n_tiles]
    pos_all: list[np.ndarray] = []
    tiles: list[list[float]] = []
    tree = None
    for t, (i, j, k) in enumerate(itertools.product(*(range(r) for r in reps))):
        p = int(order[t])
        best = None
        for draw in range(1, draws + 1):
            rot, shift = int(rng.integers(len(ROTATIONS))), rng.random(3) * edge
            if any(q[0] == p and q[1] == rot and np.allclose(q[2:5], shift, atol=0.5) for q in tiles):
                continue  # the same tile again (never in practice): draw another
            pos = transform_tile(pool[p], rot, shift, mols).positions + edge * np.array([i, j, k])
            score = _placement_score(tree, np.tile(sym0, t + 1), pos, box, limits)
            if best is None or score < best[0]:
                best = (score, pos, rot, shift, draw)
            if score == 0.0:
                break
        _, pos, rot, shift, draw = best
        pos_all.append(pos)
        tiles.append([p, rot, *np.round(shift, 6).tolist(), draw])
        tree = cKDTree(np.mod(np.concatenate(pos_all), box), boxsize=box)
    positions = np.concatenate(pos_all)  # [n_tiles·n, 3]
    sym = np.tile(sym0, n_tiles)
    all_mols = np.concatenate([mols + t * n for t in range(n_tiles)])
    pushed = push_apart(positions, sym, all_mols, box, limits)
    if pushed is None:
        raise LegatoError(f"tiling seed {seed}: contacts below the limits could not be removed")
    positions, n_pushed, max_push = pushed
    masses = np.tile(pool[0].get_masses(), n_tiles)
    for t, q in enumerate(tiles):
        masses[t * n : (t + 1) * n] = pool[int(q[0])].get_masses()
    out = Atoms(np.tile(pool[0].numbers, n_tiles), cell=np.diag(box), pbc=True)
    out.set_masses(masses)
    out.positions = whole_molecules(positions, all_mols, masses, box)
    return out, {"tiles": tiles, "pushed": n_pushed, "max_push_A": round(max_push, 6)}


# ----------------------------------------------------------------------------- MD
@dataclass(frozen=True)
class Langevin:
    """Settings of the healing (and measurement) runs: BAOAB Langevin at ``temperature_K``;
    ``quench_steps`` at ``quench_friction_per_fs`` first (absorbs the energy released by the
    tile interfaces), then the run's steps at ``friction_per_fs``."""

    temperature_K: float = 200.0
    timestep_fs: float = 1.0
    friction_per_fs: float = 0.01
    quench_steps: int = 100
    quench_friction_per_fs: float = 0.5
    fail_pairs_A: dict[str, float] | None = None  # None: FAIL_PAIRS_A
    progress: bool = True
    compile: bool | None = None

    def runner(
        self,
        model: torch.nn.Module,
        boxes: Sequence[Atoms],
        seeds: Sequence[int],
        steps: int,
        friction_per_fs: float,
        every: int = 10,
        on_frame: Callable[[MDRunner], None] | None = None,
    ) -> MDRunner:
        """An in-memory :class:`MDRunner` whose replica r draws velocities and noise from
        ``seeds[r]``; ``on_frame(runner)`` every ``every`` steps (and at step 0)."""
        pairs = FAIL_PAIRS_A if self.fail_pairs_A is None else self.fail_pairs_A
        out = {"thermo_every": every, "trajectory_every": every if on_frame else 0, "progress": self.progress}
        cfg: dict = {
            "structure": "<starts>",
            "model": "<model>",
            "compile": self.compile,
            "replicas": len(boxes),
        }
        cfg.update(timestep_fs=self.timestep_fs, temperature_K=self.temperature_K, steps=steps, output=out)
        cfg.update(schedule=[{"ensemble": "langevin"}], thermostat={"friction_per_fs": friction_per_fs})
        cfg["checks"] = {"every": every, "min_pair_distance_A": pairs}

        class _Runner(MDRunner):
            progress_label = "starts"

            def replica_seeds(self) -> list[int]:
                return [int(s) for s in seeds]

            def _record_frames(self) -> None:
                if on_frame is not None:
                    on_frame(self)

        return _Runner(model, list(boxes), cfg, output_dir=None, log=lambda _m: None)


def heal(
    model: torch.nn.Module, boxes: Sequence[Atoms], keys: Sequence[tuple[int, ...]], steps: int, md: Langevin
) -> dict[int, str]:
    """Heal ``boxes`` in place (positions only, molecules whole): ``md.quench_steps`` at strong
    friction, then ``steps`` at ``md.friction_per_fs``, all boxes in one batch per stage; box r's
    streams are seeded by ``derived_seed(*keys[r], stage)``. Returns {box index: why} of the
    boxes whose run failed a detector (their positions are left as they were)."""
    failed: dict[int, str] = {}
    for n_steps, gamma, purpose in (
        (md.quench_steps, md.quench_friction_per_fs, 3),
        (steps, md.friction_per_fs, 2),
    ):
        alive = [r for r in range(len(boxes)) if r not in failed]
        if not n_steps or not alive:
            continue
        vseeds = [derived_seed(*keys[r], purpose) for r in alive]
        res = md.runner(model, [boxes[r] for r in alive], vseeds, n_steps, gamma).run()
        for f in res.failures:
            failed[alive[f.replica]] = f"{f.reason} at step {f.step} (friction {gamma}/fs): {f.detail}"
        s = res.state
        for r, rid in enumerate(s.replica_ids.tolist()):
            b = boxes[alive[rid]]
            pos = s.positions[s.atom_slice(r)].numpy()
            b.positions = whole_molecules(pos, molecules(b), b.get_masses(), np.diag(b.cell.array))
    return failed


def build_starts(
    pool: Sequence[Atoms],
    reps: Replication,
    instances: int,
    seed: int,
    temperature_K: float,
    steps: int,
    model: torch.nn.Module | str | os.PathLike | None,
    timestep_fs: float = 1.0,
    friction_per_fs: float = 0.01,
    limits_A: dict[str, float] | None = None,
    fail_pairs_A: dict[str, float] | None = None,
    max_redraws: int = 20,
    quench_steps: int = 100,
    quench_friction_per_fs: float = 0.5,
    progress: bool = True,
    compile: bool | None = None,
) -> list[Atoms]:
    """Starting boxes of instances ``seed .. seed+instances-1`` (module docstring; the healing
    run is :func:`heal` with these settings; ``model`` may be None without MD steps).

    Each box's ``info``: ``instance_seed``, ``tiles`` (JSON: [pool index, rotation id, shift
    x, y, z in Å, placements drawn] per tile), ``pushed``, ``max_push_A``, ``quench_steps``,
    ``healing_steps``, ``timestep_fs``, ``temperature_K``, ``redraws``, ``redraw_reasons``."""
    if instances < 1 or min(steps, seed, max_redraws, quench_steps) < 0:
        raise LegatoError("need instances >= 1 and steps, quench_steps, seed, max_redraws >= 0")
    if not 0 < temperature_K < 1e6 or not timestep_fs > 0:
        raise LegatoError(f"need 0 < T < 1e6 K and a positive time step, got {temperature_K}, {timestep_fs}")
    md = Langevin(temperature_K, timestep_fs, friction_per_fs, quench_steps, quench_friction_per_fs)
    md = replace(md, fail_pairs_A=fail_pairs_A, progress=progress, compile=compile)
    model = eval_model(model) if steps or quench_steps else None
    n_atoms = len(pool[0]) * reps[0] * reps[1] * reps[2]
    seeds = [seed + i for i in range(instances)]
    attempt = dict.fromkeys(seeds, 0)
    reasons: dict[int, list[str]] = {s: [] for s in seeds}
    done: dict[int, Atoms] = {}

    def redraw(s: int, why: str) -> None:
        reasons[s].append(why.replace('"', "'").replace("\\", "/"))  # extxyz-safe inside JSON
        attempt[s] += 1
        if attempt[s] > max_redraws:
            raise LegatoError(f"instance {s}: failed {attempt[s]} times; last: {why}")

    while len(done) < instances:
        todo, boxes = [s for s in seeds if s not in done], []
        for s in todo:
            while True:
                try:
                    box, rec = tile_box(pool, reps, derived_seed(s, n_atoms, attempt[s], 1), limits_A)
                    break
                except LegatoError as exc:
                    redraw(s, f"tiling: {exc}")
            rec["tiles"] = json.dumps(rec["tiles"])
            box.info.update({"instance_seed": s, **rec})
            boxes.append(box)
        failed = {}
        if steps or quench_steps:
            failed = heal(model, boxes, [(s, n_atoms, attempt[s]) for s in todo], steps, md)
        for r, (s, box) in enumerate(zip(todo, boxes, strict=True)):
            if r in failed:
                redraw(s, failed[r])
                continue
            box.info.update(
                {"quench_steps": quench_steps, "healing_steps": steps, "timestep_fs": timestep_fs}
            )
            box.info.update({"temperature_K": temperature_K, "redraws": attempt[s]})
            box.info["redraw_reasons"] = json.dumps(reasons[s], ensure_ascii=False)
            done[s] = box
    return [done[s] for s in seeds]


# ----------------------------------------------------------------------------- files
def write_starts(path: str | os.PathLike, boxes: Sequence[Atoms], settings: dict | None = None) -> Path:
    """Write the boxes to a new extxyz file (one frame per instance; positions, masses and
    info only), atomically; an existing file is refused. ``settings`` goes into every frame's
    info as JSON (``settings``), to recognise a rerun with the same arguments."""
    import ase.io

    path = Path(path)
    if path.exists():
        raise LegatoError(f"{path} exists; refusing to overwrite it")
    frames = []
    for b in boxes:
        a = _bare(b)
        a.info.update({k: v for k, v in b.info.items() if isinstance(v, (int, float, str))})
        if settings is not None:
            a.info["settings"] = json.dumps(settings, sort_keys=True, ensure_ascii=False)
        frames.append(a)
    atomic_save(path, lambda fh: ase.io.write(fh, frames, format="extxyz"), binary=False)
    return path


def read_starts(path: str | os.PathLike) -> list[Atoms]:
    """The boxes of a starts file; ``tiles``, ``redraw_reasons``, ``settings`` decoded from
    JSON, numbers as Python ints and floats."""
    import ase.io

    frames = ase.io.read(path, ":", format="extxyz")
    for a in frames:
        for key, v in a.info.items():
            if key in ("tiles", "redraw_reasons", "settings") and isinstance(v, str):
                a.info[key] = json.loads(v)
            elif isinstance(v, np.generic):
                a.info[key] = v.item()
    return frames
