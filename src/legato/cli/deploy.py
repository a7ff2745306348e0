"""``legato deploy MODEL OUT``: a standalone model file for MD engines and other programs."""

from __future__ import annotations

import argparse

EXAMPLES = """\
  legato deploy runs/small_legato/best_model.pt small_legato.pth
  legato deploy --format aoti runs/small_legato/best_model.pt small_legato.pt2
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file written by legato train (for example best_model.pt)")
    parser.add_argument(
        "out",
        help="file to write; it must not exist yet. It runs without legato installed: "
        "torch.jit.load (torchscript) or torch._inductor.aoti_load_package (aoti, name ending .pt2)",
    )
    parser.add_argument(
        "--format",
        choices=("torchscript", "aoti"),
        default="torchscript",
        help="torchscript: the whole model (graph dict in, energies/forces/stress out) plus "
        "edge_forward, loaded by the LAMMPS plugin; aoti: an AOTInductor package of edge_forward, "
        "compiled for this CPU (takes about a minute), with dynamic edge and atom counts and "
        "checked against the eager model before it is written",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from legato import load_model
    from legato.errors import LegatoError
    from legato.fileio import ensure_writable_file
    from legato.models import export_torchscript

    out = Path(args.out)
    if out.exists():
        raise LegatoError(f"{out} exists; refusing to overwrite it")
    if args.format == "aoti" and out.suffix != ".pt2":
        raise LegatoError(f"{out}: an AOTInductor package's name must end in .pt2")
    ensure_writable_file(out)
    model = load_model(args.model)
    n = sum(p.numel() for p in model.parameters())
    if args.format == "aoti":
        import sys

        from legato.models.aoti import export_aoti

        print("legato: compiling an AOTInductor package (about a minute)...", file=sys.stderr, flush=True)
        errors = export_aoti(model, out)
        worst = max(errors.values())
        print(f"checked against the eager model: largest relative difference {worst:.1e}")
    else:
        export_torchscript(model, out)
    print(f"wrote {out} ({n} parameters, types {' '.join(model.type_names)}, r_max {model.r_max} Å)")
    return 0
