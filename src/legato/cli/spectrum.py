"""``legato spectrum RUN_OR_FILES``: vibrational densities of states from velocity
autocorrelation functions of trajectories (PIMD centroids or beads, or classical MD),
per species and neutron-weighted (incoherent cross-sections), in meV and cm⁻¹.

See docs/pimd.md; the numerics are in :mod:`legato.spectra.vacf`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from legato.errors import LegatoError

EXAMPLES = """\
  legato spectrum runs/pimd_example
  legato spectrum runs/pimd_example --source beads --max-lag-fs 20
  legato spectrum runs/md_quick --source md --skip-fs 200 --output runs/md_quick/spectrum
"""

PATTERNS = {"centroid": "centroid_*.extxyz", "beads": "beads_*.extxyz", "md": "traj_*.extxyz"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", help="a legato pimd / md output folder, or trajectory files (extxyz or .traj)"
    )
    parser.add_argument(
        "--source",
        choices=sorted(PATTERNS),
        default="centroid",
        help="trajectories to read from a folder: PIMD centroids, PIMD beads, or legato md replicas",
    )
    parser.add_argument("--skip-fs", type=float, default=0.0, metavar="T", help="leave out the first T fs")
    parser.add_argument(
        "--max-lag-fs",
        type=float,
        metavar="T",
        help="longest correlation time (default: half the trajectory)",
    )
    parser.add_argument("--window", choices=["hann", "none"], default="hann", help="lag window")
    parser.add_argument("--timestep-fs", type=float, metavar="DT", help="time between frames if not recorded")
    parser.add_argument("--max-mev", type=float, default=500.0, metavar="E", help="upper limit of the plot")
    parser.add_argument(
        "--output", "-o", metavar="DIR", help="output folder (default: INPUT/spectrum_SOURCE)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing spectrum files")


def trajectory_files(inputs: list[str], source: str) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.glob(PATTERNS[source]))
            if not found:
                raise LegatoError(f"{p} holds no {PATTERNS[source]} (source {source})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise LegatoError(f"no such file or folder: {p}")
    return files


def read_velocities(path: Path, timestep_fs: float | None, skip_fs: float):
    """(velocities [T, n, 3] in Å/fs, labels [n], masses by label, frame spacing in fs)."""
    import ase.io
    import numpy as np

    from legato.spectra.vacf import isotope_label
    from legato.units import FS

    frames = ase.io.read(path, ":")
    if len(frames) < 4:
        raise LegatoError(f"{path}: {len(frames)} frames; a spectrum needs a trajectory")
    times = [f.info.get("time_fs") for f in frames]
    if timestep_fs is None:
        if any(t is None for t in times):
            raise LegatoError(f"{path} records no time_fs per frame; give --timestep-fs")
        steps = np.diff(np.asarray(times, dtype=float))
        if not np.allclose(steps, steps[0], rtol=1e-6) or steps[0] <= 0:
            raise LegatoError(f"{path}: frames are not equally spaced in time")
        timestep_fs = float(steps[0])
    first = int(np.ceil(skip_fs / timestep_fs - 1e-9))
    if len(frames) - first < 4:
        raise LegatoError(f"{path}: {len(frames) - first} frames left after --skip-fs {skip_fs:g}")
    frames = frames[first:]
    if frames[0].get_momenta() is None or not frames[0].has("momenta"):
        raise LegatoError(f"{path} holds no velocities (momenta)")
    v = np.stack([f.get_velocities() for f in frames]) * FS  # Å/fs
    masses = frames[0].get_masses()
    labels = [isotope_label(s, m) for s, m in zip(frames[0].get_chemical_symbols(), masses, strict=True)]
    by_label = {lab: float(m) for lab, m in zip(labels, masses, strict=True)}
    return v, labels, by_label, timestep_fs


def read_all_velocities(files: list[Path], timestep_fs: float | None, skip_fs: float):
    """:func:`read_velocities` of every file, which must hold the same atoms at the same frame
    spacing: (velocities per file, labels, masses by label, frame spacing in fs)."""
    vels, labels, masses, dt = [], None, {}, None
    for f in files:
        v, lab, m, step = read_velocities(f, timestep_fs, skip_fs)
        if labels is not None and (lab != labels or step != dt):
            raise LegatoError(f"{f} has other atoms or another frame spacing than {files[0]}")
        vels.append(v)
        labels, dt = lab, step
        masses.update(m)
    return vels, labels, masses, dt


def run(args: argparse.Namespace) -> int:
    from legato.fileio import ensure_writable_dir
    from legato.spectra.report import write_dos
    from legato.spectra.vacf import CM1_PER_THZ, MEV_PER_THZ, neutron_weights, peak_THz, vdos

    files = trajectory_files(args.inputs, args.source)
    vels, labels, masses, dt = read_all_velocities(files, args.timestep_fs, args.skip_fs)
    try:
        weights = neutron_weights(labels, masses)
        spec = vdos(vels, labels, dt, args.max_lag_fs, args.window, weights)
    except ValueError as exc:
        raise LegatoError(str(exc)) from None
    curves = {k: spec.dos[k] for k in spec.dos if k != "weighted"}
    curves["neutron_weighted"] = spec.dos["weighted"]
    res_thz = spec.resolution_THz
    meta = {
        "files": [str(f) for f in files],
        "source": args.source,
        "frame_spacing_fs": dt,
        "frames_used": int(min(v.shape[0] for v in vels)),
        "skip_fs": args.skip_fs,
        "max_lag_fs": spec.max_lag_fs,
        "window": spec.window,
        "resolution_fwhm": {"THz": res_thz, "meV": res_thz * MEV_PER_THZ, "cm-1": res_thz * CM1_PER_THZ},
        "sum_rule": spec.sum_rule,
        "neutron_weights_barn_per_amu": weights,
        "cross_sections": "incoherent, Sears, Neutron News 3(3), 26 (1992)",
        # a peak closer to 0 than the resolution cannot be told from diffusion (ν = 0)
        "peak_meV": {
            k: peak_THz(spec, "weighted" if k == "neutron_weighted" else k, res_thz) * MEV_PER_THZ
            for k in curves
        },
    }
    out = Path(args.output) if args.output else Path(args.inputs[0]) / f"spectrum_{args.source}"
    if not args.output and not Path(args.inputs[0]).is_dir():
        out = Path(args.inputs[0]).parent / f"spectrum_{args.source}"
    ensure_writable_dir(out, "spectrum output folder")
    note = f"{spec.window} window, {spec.max_lag_fs:g} fs lag: FWHM {res_thz * MEV_PER_THZ:.2f} meV"
    title = f"VACF spectrum ({args.source}, {len(files)} trajectories)"
    paths = write_dos(
        out, "spectrum", spec.frequency_THz, curves, meta, title, args.max_mev, note, args.overwrite
    )
    print(
        f"{len(files)} trajectories, {meta['frames_used']} frames every {dt:g} fs; {spec.window} window, "
        f"max lag {spec.max_lag_fs:g} fs: resolution (FWHM) {res_thz * MEV_PER_THZ:.2f} meV = "
        f"{res_thz * CM1_PER_THZ:.1f} cm-1"
    )
    peaks = ", ".join(f"{k} {v:.1f} meV" for k, v in meta["peak_meV"].items())
    print(f"highest peak above the resolution: {peaks}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
