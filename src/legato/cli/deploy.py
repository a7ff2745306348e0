"""``legato deploy MODEL OUT``: standalone TorchScript file for MD engines."""

from __future__ import annotations

import argparse

EXAMPLES = """\
  legato deploy runs/small_legato/best_model.pt small_legato.pth
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file written by legato train (for example best_model.pt)")
    parser.add_argument(
        "out",
        help="TorchScript file to write; it must not exist yet. It runs with torch.jit.load, "
        "without legato installed",
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
    ensure_writable_file(out)
    model = load_model(args.model)
    export_torchscript(model, out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out} ({n} parameters, types {' '.join(model.type_names)}, r_max {model.r_max} Å)")
    return 0
