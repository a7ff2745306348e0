"""Independent starting structures for time-to-failure instances (docs/starts.md).

A box of a×b×c tiles is assembled from a pool of independent 128-atom frames
(:func:`select_pool`); every tile is a pool frame moved by a random proper rotation of the
cube (:data:`ROTATIONS`) and a random periodic shift, molecules kept whole. Placements making
intermolecular contacts below :data:`CONTACT_LIMITS_A` are redrawn, remaining contacts are
removed by rigid molecule translations (:func:`tile_box`). The box is then healed by Langevin
MD with a reference model (:func:`heal`); an instance whose run fails is retiled with a new
derived seed, and that is recorded (:func:`build_starts`). Everything of an instance derives
from its integer seed. :func:`measure_decorrelation` measures the decorrelation time τ and
the interface healing time the healing length is judged against.
"""

from __future__ import annotations

import csv
import io
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
from matplotlib.figure import Figure
from scipy.spatial import cKDTree

from legato.errors import LegatoError
from legato.fileio import atomic_save, atomic_write_text
from legato.md.fingerprint import model_fingerprint
from legato.md.runner import MDRunner
from legato.md.state import MDState
from legato.workflows.plots import save_png
from legato.workflows.tfail import Replication

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


def derived_seed(*words: int) -> int:
    """A well-mixed 31-bit seed from integers (instance seed, atoms, attempt, purpose)."""
    return int(np.random.SeedSequence([int(w) for w in words]).generate_state(1)[0] >> 1)


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


def _load(model: torch.nn.Module | str | os.PathLike) -> torch.nn.Module:
    if isinstance(model, (str, os.PathLike)):
        from legato.models import load_model

        model = load_model(model)
    return model.eval()


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
    model = _load(model) if steps or quench_steps else None
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


# ----------------------------------------------------------------------------- decorrelation
def neighbour_ids(atoms: Atoms, k: int, base_molecules: int) -> np.ndarray:
    """For each molecule, the base-cell indices (molecule index mod ``base_molecules``) of its
    ``k`` nearest molecules by N–N distance (orthorhombic periodic box). [n_mol, k]"""
    mols = molecules(atoms)
    box = np.diag(atoms.cell.array).copy()
    if not np.allclose(atoms.cell.array, np.diag(box)):
        raise LegatoError("neighbour_ids needs an orthorhombic cell")
    n_pos = np.mod(atoms.positions[mols[:, 0]], box)
    _, idx = cKDTree(n_pos, boxsize=box).query(n_pos, k=k + 1)
    return idx[:, 1:] % base_molecules


def copy_overlap(ids: np.ndarray) -> float:
    """Mean fraction of shared neighbour identities between all pairs of copies. ids: [C, M, k]"""
    c, _, k = ids.shape
    vals = [
        (ids[a][:, :, None] == ids[b][:, None, :]).any(-1).sum(-1).mean() / k
        for a, b in itertools.combinations(range(c), 2)
    ]
    return float(np.mean(vals))


def chance_overlap(k: int, base_molecules: int) -> float:
    """Expected overlap of two random k-neighbour sets of one molecule: k / (M − 1)."""
    return k / (base_molecules - 1)


def _crossing(t: np.ndarray, y: np.ndarray, level: float) -> float | None:
    """First time y falls to ``level`` (linear interpolation), None if it never does."""
    below = np.flatnonzero(y <= level)
    i = int(below[0]) if len(below) else -1
    if i <= 0:
        return None if i < 0 else float(t[0])
    return float(t[i - 1] + (t[i] - t[i - 1]) * (y[i - 1] - level) / (y[i - 1] - y[i]))


def _running_mean(y: np.ndarray, n: int) -> np.ndarray:
    """Trailing mean over ``n`` samples (fewer at the start). [len(y)]"""
    c = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(idx - n, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def _detrended_std(y: np.ndarray) -> float:
    x = np.arange(len(y), dtype=float)
    return float(np.std(y - np.polyval(np.polyfit(x, y, 1), x))) if len(y) > 2 else math.nan


def decorrelation_summary(rec: dict, k_main: int, base_molecules: int, window_fs: float) -> dict:
    """τ and healing time from the recorded curves (see :func:`measure_decorrelation`)."""
    t = np.array(rec["time_fs"])
    out: dict = {"k": k_main, "time_fs_max": float(t[-1]) if len(t) else 0.0}
    for k in rec["ks"]:
        q = np.array(rec[f"q_k{k}"])
        ch = chance_overlap(k, base_molecules)
        ex = (q - ch) / (1 - ch)
        rec[f"excess_k{k}"] = ex.tolist()
        out[f"tau_fs_k{k}"] = _crossing(t, ex, math.exp(-1))
        out[f"chance_k{k}"] = ch
        fin = np.flatnonzero(np.isfinite(ex))  # NaN once no replicated box is alive
        out[f"excess_end_k{k}"] = float(ex[fin[-1]]) if len(fin) else None
        out["q_time_fs_max"] = float(t[fin[-1]]) if len(fin) else None
    out["tau_fs"] = out[f"tau_fs_k{k_main}"]
    e_t, e_r, e_c = (np.array(rec[c]) for c in ("e_tiled_eV", "e_ref_eV", "e_copies_eV"))
    n_win = max(1, round(window_fs / (t[1] - t[0]))) if len(t) > 1 else 1
    ok_t = np.isfinite(e_t - e_r)  # the tiled box (or a reference) may have failed
    delta = np.full(len(t), np.nan)
    delta[ok_t] = _running_mean((e_t - e_r)[ok_t], n_win)
    rec["delta_smoothed_eV"] = delta.tolist()
    keys = (
        "sigma_eV_atom",
        "delta0_eV_atom",
        "delta_end_eV_atom",
        "healing_fs",
        "healing_stay_fs",
        "healing_1e_fs",
    )
    out.update(dict.fromkeys((*keys, "healing_time_fs_max")))
    tt, dd = t[ok_t], delta[ok_t]
    if len(tt) < 4:
        return out
    half = len(tt) // 2
    ec, er = e_c[ok_t], e_r[ok_t]
    ec = ec[np.isfinite(ec)]
    sig = math.hypot(*(_detrended_std(_running_mean(e, n_win)[half:]) for e in (ec, er) if len(e) > half + 2))
    within = np.abs(dd) <= sig
    bad = np.flatnonzero(~within)
    stay = None if not within[-1] else float(tt[0] if len(bad) == 0 else tt[bad[-1] + 1])
    healed = float(tt[np.argmax(within)]) if within.any() else None
    heal_1e = _crossing(tt, dd / dd[0], math.exp(-1)) if dd[0] > 0 else None
    out.update(zip(keys, (sig, float(dd[0]), float(dd[-1]), healed, stay, heal_1e), strict=True))
    out["healing_time_fs_max"] = float(tt[-1])
    return out


class _Stop(Exception):
    """Raised from a frame callback to end a measurement run early."""


def measure_decorrelation(
    pool: Sequence[Atoms],
    model: torch.nn.Module | str | os.PathLike,
    temperature_K: float = 200.0,
    steps: int = 2000,
    every: int = 20,
    ks: Sequence[int] = (1, 4, 12),
    k_main: int = 4,
    repeats: int = 2,
    seed: int = 0,
    window_fs: float = 100.0,
    out_dir: str | os.PathLike | None = None,
    write_every: int = 10,
    md: Langevin | None = None,
) -> dict:
    """Measure the decorrelation time τ and the healing time of tile interfaces.

    One Langevin batch (``md``, default :class:`Langevin` at ``temperature_K``): ``repeats``
    copies of ``pool[0]`` replicated 2×2×2 (+ 0.01 Å noise, own seeds), a 2×2×2 tiled box
    (:func:`tile_box`, quenched as in :func:`heal`; t = 0 is the end of its quench) and every
    pool frame alone (untiled bulk). Every ``every`` steps: q_k(t) = :func:`copy_overlap` of
    each replicated box, averaged over those alive, for each k in ``ks``, and the potential
    energy per atom of each replica. τ: first time (interpolated) the excess overlap
    (q − chance)/(1 − chance) for ``k_main`` falls to 1/e (None: not within the run). Healing:
    Δ(t) = e_tiled − e_ref (e_ref: the pool frames' per-atom energies weighted by their tile
    counts), trailing mean over ``window_fs``; ``healing_fs``: first time |Δ| ≤ σ (detrended
    fluctuation over the second half of the smoothed untiled 2×2×2 box and reference,
    combined), ``healing_stay_fs``: from then on to the end, ``healing_1e_fs``: Δ at 1/e of its
    start. A replica that fails leaves the averages (NaN when none is left); the
    run stops when neither a replicated nor the tiled box is alive. Returns ``{"curves",
    "summary"}``; with ``out_dir`` writes ``decorrelation.csv/.json/.png`` (also during the run)."""
    if k_main not in ks:
        raise LegatoError(f"k_main {k_main} must be one of ks {list(ks)}")
    md = Langevin(temperature_K) if md is None else md
    model = _load(model)
    m_base = len(pool[0]) // ATOMS_PER_MOLECULE
    copies = [pool[0].repeat((2, 2, 2)) for _ in range(repeats)]
    for c, a in enumerate(copies):
        a.positions += np.random.default_rng(derived_seed(seed, 3, c)).normal(scale=0.01, size=(len(a), 3))
    tiled, trec = tile_box(pool, (2, 2, 2), derived_seed(seed, 4))
    quench = heal(model, [tiled], [(seed, 6)], 0, md)
    if quench:
        raise LegatoError(f"the tiled box failed its quench: {quench[0]}")
    weights = np.bincount([q[0] for q in trec["tiles"]], minlength=len(pool)) / 8.0
    boxes = [*copies, tiled, *pool]
    natoms = np.array([len(b) for b in boxes], float)
    cols = ["time_fs", "step", "T_tiled_K", "copies_alive", "e_copies_eV", "e_tiled_eV", "e_ref_eV"]
    rec: dict = {"ks": list(ks), **{c: [] for c in cols}, **{f"q_k{k}": [] for k in ks}}

    def on_frame(runner: MDRunner) -> None:
        s = runner.state
        ids = s.replica_ids.tolist()
        e, temp = np.full(len(boxes), np.nan), np.full(len(boxes), np.nan)
        e[ids], temp[ids] = s.energy.numpy() / natoms[ids], s.temperature_K().numpy()  # eV/atom, K
        alive = [c for c in range(repeats) if c in ids]
        nb = [neighbour_ids(_at(copies[c], s, ids.index(c)), max(ks), m_base) for c in alive]
        for k in ks:
            q = [copy_overlap(x.reshape(8, m_base, max(ks))[:, :, :k]) for x in nb]
            rec[f"q_k{k}"].append(float(np.mean(q)) if q else math.nan)
        row = [s.step * md.timestep_fs, s.step, temp[repeats], len(alive)]
        row += [
            float(np.mean(e[alive])) if alive else math.nan,
            e[repeats],
            float(weights @ e[repeats + 1 :]),
        ]
        for c, v in zip(cols, row, strict=True):
            rec[c].append(float(v) if c not in ("step", "copies_alive") else int(v))
        if out_dir is not None and len(rec["step"]) % write_every == 0 and len(rec["step"]) > 2:
            write_decorrelation(out_dir, rec, decorrelation_summary(rec, k_main, m_base, window_fs))
        if not alive and not np.isfinite(e[repeats]):
            raise _Stop  # nothing left to measure

    vseeds = [derived_seed(seed, 5, r) for r in range(len(boxes))]
    runner = md.runner(model, boxes, vseeds, steps, md.friction_per_fs, every=every, on_frame=on_frame)
    try:
        runner.run()
    except _Stop:
        pass
    summary = decorrelation_summary(rec, k_main, m_base, window_fs)
    summary.update(temperature_K=md.temperature_K, timestep_fs=md.timestep_fs, friction=md.friction_per_fs)
    summary.update(quench_steps=md.quench_steps, quench_friction_per_fs=md.quench_friction_per_fs)
    summary.update(steps=steps, last_step=rec["step"][-1] if rec["step"] else 0, every=every)
    summary.update(repeats=repeats, window_fs=window_fs, seed=seed, model_sha256=model_fingerprint(model))
    summary["pool"] = [str(a.info.get("traj", i)) for i, a in enumerate(pool)]
    summary["replicas"] = (
        [f"copies {c}" for c in range(repeats)] + ["tiled"] + [f"pool {i}" for i in range(len(pool))]
    )
    summary["failures"] = [f"replica {f.replica}, step {f.step}: {f.detail}" for f in runner.failures]
    summary.update(tiles=trec["tiles"], pushed=trec["pushed"], max_push_A=trec["max_push_A"])
    if out_dir is not None:
        write_decorrelation(out_dir, rec, summary)
    return {"curves": rec, "summary": summary}


def _at(template: Atoms, state: MDState, r: int) -> Atoms:
    """``template`` with the positions of batch position ``r`` of an MD state."""
    a = template.copy()
    a.positions = state.positions[state.atom_slice(r)].numpy()
    return a


def write_decorrelation(out_dir: str | os.PathLike, curves: dict, summary: dict) -> list[Path]:
    """``decorrelation.csv`` (curves), ``decorrelation.json`` (summary), ``decorrelation.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["step", "time_fs"] + [f"{p}_k{k}" for k in curves["ks"] for p in ("q", "excess")]
    cols += ["e_copies_eV", "e_tiled_eV", "e_ref_eV", "delta_smoothed_eV", "T_tiled_K", "copies_alive"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in range(len(curves["time_fs"])):
        w.writerow([f"{curves[c][r]:.8g}" if isinstance(curves[c][r], float) else curves[c][r] for c in cols])
    paths = [atomic_write_text(out / "decorrelation.csv", buf.getvalue())]
    paths.append(atomic_write_text(out / "decorrelation.json", json.dumps(summary, indent=1) + "\n"))
    paths.append(save_png(decorrelation_figure(curves, summary), out / "decorrelation.png", overwrite=True))
    return paths


def decorrelation_figure(curves: dict, s: dict) -> Figure:
    """Left: excess overlap per k with 1/e; right: smoothed Δ energy per atom with ±σ."""
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    t = np.array(curves["time_fs"]) / 1000.0
    t_q = (s.get("q_time_fs_max") or 0.0) / 1000.0
    for k in curves["ks"]:
        tau = s.get(f"tau_fs_k{k}")
        lab = f"k={k}, τ={tau / 1000:.2f} ps" if tau is not None else f"k={k}, τ > {t_q:.2f} ps"
        ax1.plot(t, curves[f"excess_k{k}"], label=lab)
    ax1.axhline(math.exp(-1), color="k", ls=":", lw=1, label="1/e")
    ax1.set(xlabel="time, ps", ylabel="(q − chance) / (1 − chance)", title="inter-copy neighbour overlap")
    ax1.legend(fontsize=8)
    ax2.plot(t, 1000 * (np.array(curves["e_tiled_eV"]) - np.array(curves["e_ref_eV"])), lw=0.5, alpha=0.4)
    ax2.plot(t, 1000 * np.array(curves["delta_smoothed_eV"]), label="tiled − untiled, smoothed")
    if s.get("sigma_eV_atom") is not None:
        sig = 1000 * s["sigma_eV_atom"]
        ax2.axhspan(-sig, sig, color="0.85", label="±σ")
    heal = s.get("healing_fs")
    if heal is not None:
        ax2.axvline(heal / 1000, color="k", ls=":", lw=1, label=f"healed at {heal / 1000:.2f} ps")
    ax2.set(xlabel="time, ps", ylabel="Δ potential energy, meV/atom", title="tile-interface healing")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig
