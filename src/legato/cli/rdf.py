"""``legato rdf RUN_OR_FILES``: radial distribution functions per species pair from the beads
of a PIMD bead trajectory (each bead index is one configuration of the whole system; g(r)
averaged over beads and frames), or from centroid or classical MD trajectories.

See docs/pimd.md; the numerics are in :mod:`legato.pimd.rdf`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from legato.errors import LegatoError

EXAMPLES = """\
  legato rdf runs/pimd_example
  legato rdf runs/pimd_example --source centroid --r-max-A 8 --skip-fs 20
  legato rdf runs/md_quick --source md --output runs/md_quick/rdf
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", help="a legato pimd / md output folder, or trajectory files (extxyz or .traj)"
    )
    parser.add_argument(
        "--source",
        choices=["beads", "centroid", "md"],
        default="beads",
        help="trajectories to read from a folder: PIMD beads (beads_every > 0), PIMD centroids, "
        "or legato md replicas",
    )
    parser.add_argument("--r-max-A", type=float, default=6.0, metavar="R", help="largest distance (Å)")
    parser.add_argument("--bins", type=int, default=120, metavar="N", help="histogram bins up to r-max")
    parser.add_argument(
        "--skip-fs", type=float, default=0.0, metavar="T", help="leave out frames before T fs (their time_fs)"
    )
    parser.add_argument("--every", type=int, default=1, metavar="K", help="use every K-th frame")
    parser.add_argument("--output", "-o", metavar="DIR", help="output folder (default: INPUT/rdf_SOURCE)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing rdf files")


def run(args: argparse.Namespace) -> int:
    import ase.io

    from legato.cli.spectrum import trajectory_files
    from legato.fileio import ensure_writable_dir
    from legato.pimd.rdf import bead_rdf, first_peaks, write_rdf

    if args.every < 1:
        raise LegatoError("--every must be >= 1")
    files = trajectory_files(args.inputs, args.source)
    frames = []
    for f in files:
        read = ase.io.read(f, ":")
        frames.extend(a for a in read[:: args.every] if float(a.info.get("time_fs", 0.0)) >= args.skip_fs)
    if not frames:
        raise LegatoError(f"no frames at or after {args.skip_fs:g} fs in {', '.join(map(str, files))}")
    r, g = bead_rdf(frames, args.r_max_A, args.bins)
    beads = sorted({int(a.info.get("n_beads", 1)) if "bead" in a.arrays else 1 for a in frames})
    meta = {
        "files": [str(f) for f in files],
        "source": args.source,
        "frames": len(frames),
        "beads_per_frame": beads,
        "skip_fs": args.skip_fs,
        "every": args.every,
        "r_max_A": args.r_max_A,
        "bins": args.bins,
        "bin_width_A": args.r_max_A / args.bins,
        "first_peak_A": first_peaks(r, g),
    }
    out = Path(args.output) if args.output else Path(args.inputs[0]) / f"rdf_{args.source}"
    if not args.output and not Path(args.inputs[0]).is_dir():
        out = Path(args.inputs[0]).parent / f"rdf_{args.source}"
    ensure_writable_dir(out, "rdf output folder")
    title = f"RDF ({args.source}, {len(frames)} frames x {'/'.join(map(str, beads))} beads)"
    paths = write_rdf(out, r, g, meta, title, args.overwrite)
    print(
        f"{len(files)} trajectories, {len(frames)} frames of {'/'.join(map(str, beads))} beads; "
        f"bins of {meta['bin_width_A']:.3g} Å up to {args.r_max_A:g} Å"
    )
    print("highest g(r) at: " + ", ".join(f"{p} {x:.2f} Å" for p, x in meta["first_peak_A"].items()))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
