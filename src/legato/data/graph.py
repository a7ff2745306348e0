"""ASE frames → graph dicts of tensors, and batching of graphs."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from legato.data import keys as K
from legato.data.neighbors import neighbor_list
from legato.errors import LegatoError

Graph = dict[str, torch.Tensor]

#: pairs closer than this (Å) trigger a warning: almost surely broken input
MIN_DISTANCE_WARN_A = 0.5


def read_frames(path: str | Path, index: str | int | slice = ":") -> list[Atoms]:
    """Read frames from any ASE-readable file (extxyz, LAMMPS data, ASE db/traj, ...).

    A gzipped text file (``*.extxyz.gz``, ``*.xyz.gz``, ...) is decompressed in memory
    first: ASE seeks in the compressed stream while indexing frames, which makes reading
    a 1,200-frame file take minutes instead of seconds.
    """
    import ase.io

    path = Path(path)
    if not path.exists():
        raise LegatoError(f"data file not found: {path}")
    name = path.name.lower()
    lammps = name.endswith((".lmp", ".data", ".lammps", ".lmp.gz"))
    try:
        if lammps:
            frames = [ase.io.read(path, format="lammps-data", atom_style="atomic")]
        elif (fmt := _gzipped_text_format(path)) is not None:
            import gzip
            import io

            with gzip.open(path, "rt", encoding="utf-8") as fh:
                frames = ase.io.read(io.StringIO(fh.read()), index=index, format=fmt)
        else:
            frames = ase.io.read(path, index=index)
    except Exception as exc:  # ASE and gzip raise many types for malformed input
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LegatoError(f"cannot read {path}: {msg}") from None
    if isinstance(frames, Atoms):
        frames = [frames]
    if not frames:
        raise LegatoError(f"no frames in {path}")
    frames = list(frames)
    check_finite(frames, str(path))
    return frames


def check_finite(frames: Sequence[Atoms], source: str = "data") -> None:
    """Reject a frame with a non-finite position, cell or label (energy, forces, stress),
    naming the frame: one NaN label would silently poison a training run."""
    for k, atoms in enumerate(frames):
        arrays = {"positions": atoms.positions, "cell": atoms.cell.array}
        calc = atoms.calc
        results = getattr(calc, "results", {}) if calc is not None else {}
        for key in ("energy", "free_energy", "forces", "stress"):
            if key in results:
                arrays[key] = results[key]
        for key, value in {**atoms.info, **atoms.arrays}.items():
            if key in ("energy", "free_energy", "forces", "stress", "REF_energy", "REF_forces", "REF_stress"):
                arrays.setdefault(key, value)
        for key, value in arrays.items():
            try:
                bad = not np.all(np.isfinite(np.asarray(value, dtype=float)))
            except (TypeError, ValueError):
                continue  # not numeric: not a label this check knows
            if bad:
                raise LegatoError(f"{source}: frame {k} has a non-finite {key} (NaN or inf)")


def _gzipped_text_format(path: Path) -> str | None:
    """ASE format name of a gzipped text file judged by its inner extension, else None."""
    if path.suffix.lower() != ".gz" or not path.is_file():
        return None
    from ase.io.formats import filetype, ioformats

    try:
        fmt = filetype(path.stem, read=False)
    except Exception:  # unknown inner extension: let ASE decide on the file itself
        return None
    io_format = ioformats.get(fmt)
    return fmt if io_format is not None and not io_format.isbinary else None


def species_index(symbols: Sequence[str], type_names: Sequence[str]) -> np.ndarray:
    """Map chemical symbols to indices into ``type_names``; unknown symbol → LegatoError."""
    lookup = {t: k for k, t in enumerate(type_names)}
    unknown = sorted(set(symbols) - set(lookup))
    if unknown:
        raise LegatoError(
            f"element(s) {', '.join(unknown)} not known to the model (model types: {', '.join(type_names)})"
        )
    return np.fromiter((lookup[s] for s in symbols), dtype=np.int64, count=len(symbols))


def frame_labels(atoms: Atoms) -> dict[str, np.ndarray]:
    """Energy / forces / stress stored with a frame (calculator results or info/arrays)."""
    out: dict[str, np.ndarray] = {}
    calc = atoms.calc
    results = getattr(calc, "results", {}) if calc is not None else {}
    e = results.get("energy", atoms.info.get("energy", atoms.info.get("REF_energy")))
    if e is not None:
        out[K.TOTAL_ENERGY] = np.array([float(e)])
    f = results.get("forces")
    if f is None:
        f = atoms.arrays.get("forces", atoms.arrays.get("REF_forces"))
    if f is not None:
        out[K.FORCES] = np.asarray(f, dtype=np.float64).reshape(-1, 3)
    s = results.get("stress", atoms.info.get("stress"))
    if s is not None:
        s = np.asarray(s, dtype=np.float64)
        if s.shape == (6,):
            from ase.stress import voigt_6_to_full_3x3_stress

            s = voigt_6_to_full_3x3_stress(s)
        out[K.STRESS] = s.reshape(1, 3, 3)
    return out


def atoms_to_graph(
    atoms: Atoms,
    type_names: Sequence[str],
    r_max: float,
    dtype: torch.dtype = torch.float64,
    with_labels: bool = True,
) -> Graph:
    """One frame as a graph dict (see :mod:`legato.data.keys`), with its neighbour list."""
    pos = np.asarray(atoms.positions, dtype=np.float64)
    if not np.all(np.isfinite(pos)):
        raise LegatoError("positions contain non-finite values (NaN or inf)")
    species = species_index(atoms.get_chemical_symbols(), type_names)
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    edge_index, shifts = neighbor_list(pos, cell, pbc, r_max)
    if edge_index.shape[1]:
        vec = pos[edge_index[1]] - pos[edge_index[0]] + shifts @ cell
        dmin = float(np.sqrt((vec**2).sum(1).min()))
        if dmin < MIN_DISTANCE_WARN_A:
            warnings.warn(
                f"atoms closer than {MIN_DISTANCE_WARN_A} Å (closest pair {dmin:.3f} Å)",
                stacklevel=2,
            )
    g: Graph = {
        K.POSITIONS: torch.tensor(pos, dtype=dtype),
        K.SPECIES: torch.from_numpy(species),
        K.CELL: torch.tensor(cell, dtype=dtype).unsqueeze(0),
        K.PBC: torch.from_numpy(pbc).unsqueeze(0),
        K.EDGE_INDEX: torch.from_numpy(edge_index),
        K.EDGE_SHIFT: torch.from_numpy(shifts).to(dtype),
        K.BATCH: torch.zeros(len(atoms), dtype=torch.long),
        K.NUM_ATOMS: torch.tensor([len(atoms)], dtype=torch.long),
    }
    if with_labels:
        for key, val in frame_labels(atoms).items():
            g[key] = torch.tensor(val, dtype=dtype)
    return g


def collate(graphs: Sequence[Graph]) -> Graph:
    """Batch several graphs into one (edge indices offset, batch index built)."""
    if len(graphs) == 1:
        return dict(graphs[0])
    out: Graph = {}
    counts = [int(g[K.NUM_ATOMS].sum()) for g in graphs]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    frame_offsets = np.concatenate([[0], np.cumsum([len(g[K.NUM_ATOMS]) for g in graphs])[:-1]])
    out[K.EDGE_INDEX] = torch.cat([g[K.EDGE_INDEX] + int(o) for g, o in zip(graphs, offsets)], 1)
    out[K.BATCH] = torch.cat([g[K.BATCH] + int(o) for g, o in zip(graphs, frame_offsets)])
    out[K.EDGE_SHIFT] = torch.cat([g[K.EDGE_SHIFT] for g in graphs])
    common = set.intersection(*(set(g) for g in graphs))
    for key in common:
        if key in out:
            continue
        if key in K.PER_ATOM or key in K.PER_FRAME:
            out[key] = torch.cat([g[key] for g in graphs])
    return out


def graphs_from_frames(
    frames: Iterable[Atoms],
    type_names: Sequence[str],
    r_max: float,
    dtype: torch.dtype = torch.float64,
) -> list[Graph]:
    return [atoms_to_graph(a, type_names, r_max, dtype) for a in frames]


def to_device(g: Graph, device: torch.device | str) -> Graph:
    return {k: v.to(device) for k, v in g.items()}
