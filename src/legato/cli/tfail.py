"""``legato tfail MODEL --structure FILE``: time-to-failure ensemble of one model.

For every size (replication k of the base box, or AxBxC) runs ``--instances`` seeded
instances in one MD batch: Maxwell–Boltzmann velocities at T, ``--nvt-steps`` of
Nosé–Hoover NVT, then the ``--production`` stage (NVE, or NVT) until failure or
``--max-steps`` production steps. Writes ``failures.csv`` (t_failure in production steps
and fs, reason, censored) and ``outliers.csv`` into ``--out``; rerunning continues where
it stopped. The protocol flags are made from :class:`legato.workflows.protocol.TfailProtocol`
(one flag per field). See docs/study.md.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, get_args, get_origin

from legato.config_file import parse_number
from legato.errors import LegatoError

if TYPE_CHECKING:
    from legato.workflows.protocol import TfailProtocol

EXAMPLES = (
    "  legato tfail runs/small_legato/best_model.pt --structure data/nh3_liquid_gfn1.extxyz.gz "
    "--sizes 1,1x1x2 --instances 4 --nvt-steps 200 --max-steps 500 "
    "--label small_legato --out runs/tfail_small\n"
    "  legato tfail runs/small_legato/best_model.pt --structure data/nh3_liquid_gfn1.extxyz.gz "
    "--sizes 1 --instances 4 --engine lammps --ranks 2 --threads 1 --out runs/tfail_lammps\n"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model written by legato train (its best_model.pt)")
    parser.add_argument(
        "--structure",
        required=True,
        metavar="FILE",
        help="the base box: a periodic structure file ASE can read",
    )
    parser.add_argument(
        "--structure-index", type=int, default=0, metavar="I", help="frame of --structure to use"
    )
    parser.add_argument(
        "--sizes",
        default="1,2,3",
        help="box sizes, comma-separated: k for k×k×k copies of the base box, or AxBxC",
    )
    parser.add_argument("--instances", type=int, default=10, metavar="N", help="instances (seeds) per size")
    parser.add_argument("--seed", type=int, default=0, help="the instances' seeds are SEED, SEED+1, ...")
    parser.add_argument(
        "--force-sigma-eV-A",
        type=float,
        default=None,
        metavar="SIGMA",
        help="σ of the training force components in eV/Å (default: from the model's training run)",
    )
    parser.add_argument(
        "--label",
        default=None,
        help="the model's name in the tables (default: the model file's name without extension)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder; rerunning continues it")
    parser.add_argument(
        "--checkpoint-every", type=int, default=500, metavar="N", help="steps between MD checkpoints"
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    add_protocol_arguments(parser)
    parser.add_argument(
        "--engine",
        choices=("python", "lammps"),
        default="python",
        help="python: legato's batched MD; lammps: one LAMMPS run per instance with pair_style legato "
        "(same instances, stages and tables; see docs/lammps.md)",
    )
    parser.add_argument(
        "--ranks", type=int, default=1, metavar="R", help="MPI ranks per LAMMPS run (--engine lammps)"
    )


def flag(name: str) -> str:
    """The command-line flag of a protocol field: ``temperature_K`` → ``--temperature-K``."""
    return "--" + name.replace("_", "-")


def _shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`~legato.workflows.protocol.TfailProtocol` field (its default and
    description); values are checked by the protocol itself."""
    from legato.workflows.protocol import TfailProtocol

    group = parser.add_argument_group("MD protocol (the study config's tfail keys)")
    for name, field in TfailProtocol.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        help_text = f"{field.description} (default: {_shown(field.default)})"
        group.add_argument(
            flag(name), dest=name, default=field.default, metavar=extra.get("metavar"), help=help_text
        )


def _takes_dict(annotation: object) -> bool:
    return get_origin(annotation) is dict or any(_takes_dict(a) for a in get_args(annotation))


def cli_value(name: str, value: object) -> object:
    """A protocol flag's text as a config value: ``none`` → None, ``PAIR=D,...`` → a dict,
    ``A,B`` → a list, numbers → numbers; anything else is left to the protocol's checks."""
    from legato.workflows.protocol import TfailProtocol

    if not isinstance(value, str):
        return value  # the field's default
    text = value.strip()
    if text.lower() in ("none", "null"):
        return None
    if _takes_dict(TfailProtocol.model_fields[name].annotation):
        pairs = [item.partition("=") for item in text.split(",")]
        if any(not key.strip() or not eq for key, eq, _ in pairs):
            raise LegatoError(
                f"{flag(name)} must be PAIR=D items joined by ',' (e.g. H-H=1.0); got {value!r}"
            )
        return {key.strip(): parse_number(d.strip()) for key, _, d in pairs}
    if "," in text:
        return [parse_number(x.strip()) for x in text.split(",")]
    return parse_number(text)


def protocol_from_args(args: argparse.Namespace) -> TfailProtocol:
    """The :class:`TfailProtocol` of the command line; a bad value is one LegatoError line
    naming its flag, with the protocol's own message."""
    from pydantic import ValidationError

    from legato.config_file import config_error
    from legato.workflows.protocol import TfailProtocol

    values = {name: cli_value(name, getattr(args, name)) for name in TfailProtocol.model_fields}
    try:
        return TfailProtocol(**values)
    except LegatoError as err:
        exc = err.__cause__
        if not isinstance(exc, ValidationError):
            raise
        loc = exc.errors()[0]["loc"]
        raise config_error(exc, TfailProtocol, flag(str(loc[0])) if loc else "legato tfail") from None


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from legato.data import read_frames
    from legato.models import load_model
    from legato.workflows.tfail import run_ensemble

    protocol = protocol_from_args(args)
    frames = read_frames(args.structure)
    if not -len(frames) <= args.structure_index < len(frames):
        raise LegatoError(
            f"{args.structure} has {len(frames)} frames; "
            f"--structure-index {args.structure_index} is out of range"
        )
    model = load_model(args.model)
    label = args.label or Path(args.model).stem
    # the same instances, protocol and tables for both engines
    common = (model, frames[args.structure_index], args.sizes, args.instances, protocol, args.out, label)
    if args.engine == "lammps":
        from legato.lammps.tfail import run_ensemble_lammps

        res = run_ensemble_lammps(
            *common,
            seed=args.seed,
            ranks=args.ranks,
            threads=args.threads or 1,
            force_sigma_eV_A=args.force_sigma_eV_A,
        )
    else:
        if args.ranks != 1:
            raise LegatoError("--ranks applies to --engine lammps only")
        res = run_ensemble(
            *common,
            seed=args.seed,
            force_sigma_eV_A=args.force_sigma_eV_A,
            checkpoint_every=args.checkpoint_every,
            progress=not args.no_progress,
        )
    print(f"{len(res.table)} instances of {label!r} in {res.out / 'failures.csv'}")
    return 0
