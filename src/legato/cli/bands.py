"""``legato bands NAME=PATH ...``: band positions (centroids ± block errors, peaks) of the
spectra of several sources, e.g. a harmonic phonon DOS, classical MD and TRPMD (paper Fig. 6),
their shifts from the first source, and a two-panel comparison figure.

See docs/pimd.md; the numerics are in :mod:`legato.spectra.bands`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from legato.errors import LegatoError

EXAMPLES = """\
  legato bands harmonic=runs/fig6/phonons classical=runs/fig6/md pimd=runs/fig6/pimd --skip-fs 500 \
--output runs/fig6/bands
  legato bands classical=runs/md_quick pimd=runs/pimd_example --blocks 2 --band lib=30:90 --output runs/bands
"""

DEFAULT_BANDS = "translational=2:30 librational=30:90 umbrella=90:160 bend=160:240 stretch=350:480".split()
OUTPUTS = ["bands.csv", "shifts.csv", "spectra.csv", "bands.json", "bands.png"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="NAME=PATH",
        help="at least two sources: a legato phonons folder (or its phonon_dos.csv), a legato md folder "
        "(traj_*.extxyz) or a legato pimd folder (centroid_*.extxyz); the first is the shifts' reference",
    )
    parser.add_argument("--skip-fs", type=float, default=0.0, metavar="T", help="leave out the first T fs")
    parser.add_argument(
        "--max-lag-fs", type=float, default=1000.0, metavar="T", help="longest correlation time"
    )
    parser.add_argument(
        "--blocks", type=int, default=4, metavar="B", help="blocks per trajectory for the errors"
    )
    parser.add_argument("--window", choices=["hann", "none"], default="hann", help="lag window")
    parser.add_argument(
        "--curve",
        default="neutron_weighted",
        help="which density of states to compare: neutron_weighted or a species label (H, N, D)",
    )
    parser.add_argument(
        "--band",
        action="append",
        metavar="NAME=LO:HI",
        help="a band window in meV, repeatable (replaces the defaults: " + ", ".join(DEFAULT_BANDS) + ")",
    )
    parser.add_argument("--title", help="figure title (default: the sources and the curve)")
    parser.add_argument("--output", "-o", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")


@dataclass
class Source:
    """One compared spectrum: the curve [n] per meV on its own grid, and block samples."""

    name: str
    energy_meV: np.ndarray
    curve: np.ndarray
    resolution_meV: float | None
    samples: list[tuple[np.ndarray, np.ndarray]]
    meta: dict  # kind (phonons, md, pimd), path, files, ... for bands.json


def parse_inputs(items: list[str]) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise LegatoError(f"input {item!r} is not NAME=PATH")
        if name in [n for n, _ in out]:
            raise LegatoError(f"source name {name!r} given twice")
        out.append((name, Path(path)))
    if len(out) < 2:
        raise LegatoError(f"give at least two sources NAME=PATH to compare, got {len(out)}")
    for _, path in out:
        if not path.exists():
            raise LegatoError(f"no such file or folder: {path}")
    return out


def parse_bands(items: list[str]) -> dict[str, tuple[float, float]]:
    bands: dict[str, tuple[float, float]] = {}
    for item in items:
        name, sep, rng = item.partition("=")
        lo, sep2, hi = rng.partition(":")
        try:
            lo_f, hi_f = float(lo), float(hi)
        except ValueError:
            lo_f = hi_f = float("nan")
        if not (sep and sep2 and name and math.isfinite(lo_f) and math.isfinite(hi_f)):
            raise LegatoError(f"--band {item!r} is not NAME=LO:HI (meV)")
        if not 0 <= lo_f < hi_f:
            raise LegatoError(f"--band {item}: needs 0 <= LO < HI")
        if name in bands:
            raise LegatoError(f"--band {name} given twice")
        bands[name] = (lo_f, hi_f)
    return bands


def source_kind(path: Path) -> str:
    """phonons, pimd or md, from the files present."""
    if path.is_file():
        if path.name.endswith(".csv"):
            return "phonons"
        raise LegatoError(f"{path}: give a folder, or a phonon_dos.csv file")
    patterns = {"phonons": "phonon_dos.csv", "pimd": "centroid_*.extxyz", "md": "traj_*.extxyz"}
    kinds = [k for k, pat in patterns.items() if any(path.glob(pat))]
    if not kinds:
        raise LegatoError(f"{path} holds neither phonon_dos.csv nor centroid_*.extxyz / traj_*.extxyz")
    if len(kinds) > 1:
        raise LegatoError(f"{path} holds outputs of {' and '.join(kinds)}; give a folder of one kind")
    return kinds[0]


def load_phonons(name: str, path: Path, curve: str) -> Source:
    csv_path = path if path.is_file() else path / "phonon_dos.csv"
    with open(csv_path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0] if rows else [], rows[1:]
    col = f"dos_{curve}_per_meV"
    if "energy_meV" not in header or col not in header:
        have = [h[4:-8] for h in header if h.startswith("dos_") and h.endswith("_per_meV")]
        raise LegatoError(f"{csv_path} has no curve {curve!r} (energy_meV and {col}); it has {have}")
    try:
        table = np.array([[float(r[header.index("energy_meV")]), float(r[header.index(col)])] for r in body])
    except (ValueError, IndexError):
        raise LegatoError(f"{csv_path}: a row is not numbers") from None
    if len(table) < 2 or not np.all(np.diff(table[:, 0]) > 0):
        raise LegatoError(f"{csv_path}: needs two or more rows of increasing energy_meV")
    js = csv_path.with_suffix(".json")
    try:
        sigma = json.loads(js.read_text()).get("sigma_meV") if js.is_file() else None
    except (ValueError, AttributeError):
        raise LegatoError(f"{js} is not the JSON legato phonons writes") from None
    ok = isinstance(sigma, (int, float)) and sigma > 0
    fwhm = 2.0 * math.sqrt(2.0 * math.log(2.0)) * sigma if ok else None  # Gaussian smearing
    meta = {"kind": "phonons", "path": str(path), "files": [str(csv_path)], "resolution_fwhm_meV": fwhm}
    return Source(name, table[:, 0], table[:, 1], fwhm, [], meta | {"n_samples": 0})


def load_trajectories(name: str, path: Path, kind: str, args: argparse.Namespace) -> Source:
    from legato.cli.spectrum import read_all_velocities, trajectory_files
    from legato.spectra.bands import block_lag_fs, block_spectra
    from legato.spectra.vacf import MEV_PER_THZ, neutron_weights, vdos

    files = trajectory_files([str(path)], "centroid" if kind == "pimd" else "md")
    vels, labels, masses, dt = read_all_velocities(files, None, args.skip_fs)
    weighted = args.curve == "neutron_weighted"
    if not weighted and args.curve not in labels:
        raise LegatoError(
            f"{path}: no curve {args.curve!r}; it has neutron_weighted, {', '.join(sorted(set(labels)))}"
        )
    key = "weighted" if weighted else args.curve
    n_frames = [v.shape[0] for v in vels]
    try:
        weights = neutron_weights(labels, masses) if weighted else None
        block_lag = block_lag_fs(n_frames, dt, args.blocks, args.max_lag_fs)
        spec = vdos(vels, labels, dt, min(args.max_lag_fs, (min(n_frames) // 2) * dt), args.window, weights)
        blocks = block_spectra(vels, labels, dt, args.blocks, args.max_lag_fs, args.window, weights)
    except ValueError as exc:
        raise LegatoError(f"{name}={path}: {exc}") from None
    res = spec.resolution_THz * MEV_PER_THZ
    meta = {
        "kind": kind,
        "path": str(path),
        "files": [str(f) for f in files],
        "resolution_fwhm_meV": res,
        "n_samples": len(blocks),
        "frame_spacing_fs": dt,
        "frames_per_trajectory": n_frames,
        "frames_per_block": min(n_frames) // args.blocks,
        "max_lag_fs": spec.max_lag_fs,
        "block_max_lag_fs": block_lag,
        "block_resolution_fwhm_meV": blocks[0].resolution_THz * MEV_PER_THZ,
    }
    samples = [(b.energy_meV, b.dos[key] / MEV_PER_THZ) for b in blocks]
    return Source(name, spec.energy_meV, spec.dos[key] / MEV_PER_THZ, res, samples, meta)


def _cell(x: float, err: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.2f}" + (f" ± {err:.2f}" if math.isfinite(err) else "")


def run(args: argparse.Namespace) -> int:
    from legato.fileio import atomic_save, atomic_write_text, ensure_writable_dir
    from legato.spectra.bands import band_row, bands_figure, rows_csv, shift_rows, table_csv
    from legato.spectra.report import refuse_existing

    inputs = parse_inputs(args.inputs)
    bands = parse_bands(args.band or DEFAULT_BANDS)
    if args.blocks < 1 or not args.max_lag_fs > 0 or args.skip_fs < 0:
        raise LegatoError("--blocks must be >= 1, --max-lag-fs > 0 and --skip-fs >= 0")
    kinds = [source_kind(p) for _, p in inputs]
    out = ensure_writable_dir(args.output, "bands output folder")
    paths = [out / n for n in OUTPUTS]
    refuse_existing(paths, args.overwrite)
    sources = [
        load_phonons(n, p, args.curve) if k == "phonons" else load_trajectories(n, p, k, args)
        for (n, p), k in zip(inputs, kinds, strict=True)
    ]
    rows = [
        band_row(s.name, b, *w, (s.energy_meV, s.curve), s.samples) for b, w in bands.items() for s in sources
    ]
    grid = np.arange(2001) * 0.25  # 0..500 meV
    curves = {s.name: np.interp(grid, s.energy_meV, s.curve, left=0.0, right=0.0) for s in sources}
    table = [[f"{e:g}", *(f"{curves[n][k]:.6g}" for n in curves)] for k, e in enumerate(grid)]
    atomic_write_text(paths[0], rows_csv(rows))
    atomic_write_text(paths[1], rows_csv(shift_rows(rows)))
    atomic_write_text(paths[2], table_csv(["energy_meV", *curves], table))
    settings = {k: getattr(args, k) for k in ("skip_fs", "max_lag_fs", "blocks", "window", "curve")}
    meta = {
        "settings": {**settings, "bands_meV": bands, "reference": sources[0].name},
        "errors": "centroid: mean and standard error over blocks x trajectories; phonons: a fixed curve",
        "sources": {s.name: s.meta for s in sources},
    }
    atomic_write_text(paths[3], json.dumps(meta, indent=2))
    title = args.title or f"{' vs '.join(s.name for s in sources)} ({args.curve})"
    fig = bands_figure(grid, curves, bands, rows, title)
    atomic_save(paths[4], lambda fh: fig.savefig(fh, format="png", dpi=150))

    print(f"band centroids in meV ({args.curve}; ± standard error over blocks x trajectories)")
    width = max(16, *(len(s.name) for s in sources)) + 2  # every name and "123.45 ± 0.12" fits
    print(f"{'band':<16}{'window':>9}" + "".join(f"{s.name:>{width}}" for s in sources))
    for b, (lo, hi) in bands.items():
        cells = [_cell(r.centroid_meV, r.centroid_err_meV) for r in rows if r.band == b]
        print(f"{b:<16}{f'{lo:g}-{hi:g}':>9}" + "".join(f"{c:>{width}}" for c in cells))
    res = [f"{s.name} {s.resolution_meV:.2f} meV" for s in sources if s.resolution_meV is not None]
    print("resolution (FWHM): " + ", ".join(res))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
