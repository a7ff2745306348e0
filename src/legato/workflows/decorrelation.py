"""Decorrelation time τ and interface healing time of tiled starting boxes (docs/starts.md).

:func:`measure_decorrelation` runs replicated copies of a pool frame, a tiled box
(:func:`legato.workflows.starts.tile_box`) and the untiled pool frames in one Langevin batch;
τ is the time the inter-copy neighbour-identity overlap (:func:`copy_overlap`) takes to fall
to 1/e of its excess over chance, the healing time the time the tiled box's energy takes to
reach the untiled reference. The healing length of :mod:`legato.workflows.starts` is judged
against both (:data:`legato.workflows.starts.DEFAULT_HEAL_STEPS`).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from matplotlib.figure import Figure
from scipy.spatial import cKDTree

from legato.errors import LegatoError
from legato.fileio import atomic_write_text
from legato.md.fingerprint import model_fingerprint
from legato.md.runner import MDRunner
from legato.md.state import MDState
from legato.workflows.plots import save_png
from legato.workflows.starts import ATOMS_PER_MOLECULE, Langevin, heal, molecules, tile_box
from legato.workflows.tfail import derived_seed, eval_model


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
    model = eval_model(model)
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
