"""``legato`` command line: a thin dispatcher over the library.

Each sub-command lives in ``legato.cli.<module>`` and provides ``add_arguments(parser)``
and ``run(args) -> int``. Modules are imported only when their command runs, so
``legato --help`` is fast. User errors become one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from legato.errors import LegatoError

#: command name -> (module under legato.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("data", "build liquid boxes, label frames with a QM method, replicate boxes"),
    "train": ("train", "train an Allegro / Allegro-Legato (SAM) model from a YAML config"),
    "evaluate": ("evaluate", "print energy/force errors of a model on a dataset"),
    "deploy": ("deploy", "export a model to a standalone TorchScript file"),
    "sharpness": ("sharpness", "loss sharpness around a trained model (paper Table 4)"),
    "landscape": ("landscape", "1-D loss surface of one or more models (paper Fig. 5)"),
    "md": ("md", "run batched molecular dynamics from a YAML config"),
    "tfail": ("tfail", "time-to-failure ensemble of one model at several sizes"),
    "scaling": ("scaling", "fit t_failure = alpha * N^-beta and plot (paper Fig. 2)"),
    "rho-search": ("rho_search", "train SAM models over a rho grid, score by t_failure"),
    "study": ("study", "run the whole robustness study (resumable)"),
    "demo": ("demo", "small end-to-end Allegro vs Legato demo on the shipped data"),
}


def _available() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (mod, helptext) in COMMANDS.items():
        if importlib.util.find_spec(f"legato.cli.{mod}") is not None:
            out[name] = (mod, helptext)
    return out


def build_parser(commands: dict[str, tuple[str, str]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="legato", description=__doc__.splitlines()[0])
    from legato import __version__

    parser.add_argument("--version", action="version", version=f"legato {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_mod, helptext) in commands.items():
        sub.add_parser(name, help=helptext, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _available()
    if not argv or argv[0] not in commands:
        parser = build_parser(commands)
        if not argv:
            parser.print_help()
            return 0
        parser.parse_args(argv)  # prints usage / unknown command and exits 2
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f"legato.cli.{commands[name][0]}")
    parser = argparse.ArgumentParser(prog=f"legato {name}", description=commands[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    from legato.perf import tune_allocator

    tune_allocator()  # long CPU jobs: reuse freed memory instead of page-faulting it back
    try:
        return int(module.run(args) or 0)
    except LegatoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: file not found: {exc.filename or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
