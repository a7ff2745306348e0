"""Dataset helpers for training and evaluation: read, convert, split, batch."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers
from tqdm.auto import tqdm

from legato.data import atoms_to_graph, collate, read_frames
from legato.data import keys as K
from legato.data.graph import Graph
from legato.errors import LegatoError
from legato.train.config import DataConfig, split_counts


def infer_type_names(frames: Sequence[Atoms]) -> list[str]:
    """Chemical symbols present in the frames, ordered by atomic number."""
    symbols = {s for a in frames for s in a.get_chemical_symbols()}
    return sorted(symbols, key=lambda s: atomic_numbers[s])


def frames_to_graphs(
    frames: Sequence[Atoms],
    type_names: Sequence[str],
    r_max: float,
    dtype: torch.dtype,
    progress: bool = True,
    desc: str = "neighbour lists",
) -> list[Graph]:
    """Graphs (with labels) for every frame; frames without forces are rejected."""
    graphs = []
    for k, atoms in enumerate(tqdm(frames, desc=desc, disable=not progress, leave=False)):
        g = atoms_to_graph(atoms, type_names, r_max, dtype=dtype, with_labels=True)
        if K.FORCES not in g and K.TOTAL_ENERGY not in g:
            raise LegatoError(f"frame {k} has neither energy nor force labels")
        graphs.append(g)
    return graphs


def check_labels(graphs: Sequence[Graph], needs: dict[str, bool], source: str) -> None:
    """Every frame must carry every label the loss uses."""
    names = {K.TOTAL_ENERGY: "energy", K.FORCES: "forces", K.STRESS: "stress"}
    for key, needed in needs.items():
        if not needed:
            continue
        missing = [k for k, g in enumerate(graphs) if key not in g]
        if missing:
            raise LegatoError(
                f"{source}: {len(missing)} frame(s) lack {names[key]} labels "
                f"(first: frame {missing[0]}); set loss.{names[key]}: 0 or label them"
            )


def load_labelled(
    path: str | Path,
    index: str,
    type_names: Sequence[str] | None,
    r_max: float,
    dtype: torch.dtype,
    progress: bool = True,
) -> tuple[list[Atoms], list[Graph], list[str]]:
    """Read frames, fix type names (given or inferred), build graphs."""
    frames = read_frames(path, index)
    names = list(type_names) if type_names else infer_type_names(frames)
    graphs = frames_to_graphs(frames, names, r_max, dtype, progress=progress)
    return frames, graphs, names


def read_datasets(paths: str | Path | Sequence[str | Path], index: str = ":") -> list[Atoms]:
    """Frames of one data file, or of several in order (``index`` applies to each file)."""
    if isinstance(paths, (str, Path)):
        return read_frames(paths, index)
    frames: list[Atoms] = []
    for path in paths:
        frames += read_frames(path, index)
    return frames


def resolved_paths(paths: str | Sequence[str]) -> str | list[str]:
    """Absolute data path(s), in the shape given (one string, or a list)."""
    if isinstance(paths, str):
        return str(Path(paths).expanduser().resolve())
    return [str(Path(p).expanduser().resolve()) for p in paths]


def datasets_digest(paths: str | Path | Sequence[str | Path]) -> str:
    """SHA-256 of one data file; of the list of file digests for several files."""
    if isinstance(paths, (str, Path)):
        return file_digest(paths)
    return hashlib.sha256(" ".join(file_digest(p) for p in paths).encode()).hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file (records which data a run was trained on)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


VAL_LABELS = ("validation", "val")


def make_split(frames: Sequence[Atoms], cfg: DataConfig, seed: int) -> tuple[list[int], list[int]]:
    """Seeded train / validation frame indices (disjoint, sorted).

    Without ``cfg.split_key``: a random permutation of all frames, the first n_train for
    training, the next n_val for validation. With it: the frames labelled "train" and
    "validation" (or "val") in ``atoms.info[split_key]``, optionally subsampled (seeded)."""
    rng = np.random.default_rng(seed)
    if cfg.split_key is None:
        n = len(frames)
        n_train = split_counts(n, cfg.n_train, 0.9, "n_train")
        n_val = split_counts(n, cfg.n_val, 0.1, "n_val")
        if n_train + n_val > n:
            raise LegatoError(f"data.n_train + data.n_val = {n_train} + {n_val} exceeds the {n} frames")
        perm = rng.permutation(n)
        train, val = perm[:n_train], perm[n_train : n_train + n_val]
    else:
        labels = [a.info.get(cfg.split_key) for a in frames]
        if any(lab is None for lab in labels):
            k = labels.index(None)
            raise LegatoError(f"frame {k} has no '{cfg.split_key}' entry (data.split_key)")
        pool_t = [i for i, lab in enumerate(labels) if lab == "train"]
        pool_v = [i for i, lab in enumerate(labels) if lab in VAL_LABELS]
        n_train = split_counts(len(pool_t), cfg.n_train, 1.0, "n_train")
        n_val = split_counts(len(pool_v), cfg.n_val, 1.0, "n_val")
        train = rng.permutation(pool_t)[:n_train]
        val = rng.permutation(pool_v)[:n_val] if pool_v else []
    if len(train) < 1:
        raise LegatoError("the split gives no training frames")
    return sorted(int(i) for i in train), sorted(int(i) for i in val)


def iterate_batches(
    graphs: Sequence[Graph], batch_size: int, order: Sequence[int] | None = None
) -> Iterator[Graph]:
    """Collated batches in the given order (default: file order); the last may be short."""
    idx = list(range(len(graphs))) if order is None else list(order)
    for start in range(0, len(idx), batch_size):
        yield collate([graphs[i] for i in idx[start : start + batch_size]])


def n_batches(n: int, batch_size: int) -> int:
    return (n + batch_size - 1) // batch_size
