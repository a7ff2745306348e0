"""``legato`` command line: a thin dispatcher over the library.

Each sub-command lives in ``legato.cli.<module>`` and provides ``add_arguments(parser)``,
``run(args) -> int`` and ``EXAMPLES`` (shown at the end of its help). Modules are imported
only when their command runs, so ``legato --help`` is fast. User errors become one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from legato.errors import LegatoError

#: command name -> (module under legato.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("data", "build liquid boxes, label frames with a QM method, replicate boxes"),
    "train": ("train", "train an Allegro / Allegro-Legato (SAM) model from a YAML config"),
    "evaluate": ("evaluate", "print energy/force errors of a model on a dataset"),
    "deploy": ("deploy", "export a model to a standalone TorchScript file"),
    "lammps": ("lammps", "run a deployed model in LAMMPS (pair_style legato) on several MPI ranks"),
    "sharpness": ("sharpness", "loss sharpness around a trained model (paper Table 4)"),
    "landscape": ("landscape", "1-D loss surface of one or more models (paper Fig. 5)"),
    "md": ("md", "run batched molecular dynamics from a YAML config"),
    "pimd": ("pimd", "path-integral MD (ring polymers, PILE / TRPMD) from a YAML config"),
    "spectrum": ("spectrum", "vibrational spectra from velocity autocorrelations (meV, cm-1)"),
    "bands": (
        "bands",
        "band positions with block errors: harmonic vs classical vs PIMD spectra (paper Fig. 6)",
    ),
    "rdf": ("rdf", "radial distribution functions from PIMD bead (or centroid, MD) trajectories"),
    "phonons": ("phonons", "harmonic reference: relax, phonon DOS (phonopy) or molecular normal modes"),
    "tfail": ("tfail", "time-to-failure ensemble of one model at several sizes"),
    "starts": ("starts", "independent starting boxes: tiled pool frames healed by a Langevin run"),
    "scaling": ("scaling", "fit t_failure = alpha * N^-beta and plot (paper Fig. 2)"),
    "rho-search": ("rho_search", "train SAM models over a rho grid, score by t_failure"),
    "study": ("study", "run the whole robustness study (resumable)"),
    "demo": ("demo", "small end-to-end Allegro vs Legato demo on the shipped data"),
}

#: commands that evaluate a model without training it: they take ``--no-compile``
COMPILED = {"evaluate", "md", "pimd", "phonons", "tfail", "starts", "rho-search", "study", "demo"}

#: commands that run torch for long: they all take ``--threads``
THREADED = {
    "train",
    "evaluate",
    "sharpness",
    "landscape",
    "md",
    "pimd",
    "phonons",
    "tfail",
    "starts",
    "rho-search",
    "study",
    "demo",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and appends each option's default to its help
    (unless the help already states one, or there is none to state)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower():
            return text
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return text
        if not action.option_strings:
            return text
        if isinstance(action, (argparse._StoreConstAction, argparse._HelpAction, argparse._VersionAction)):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def _available() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (mod, helptext) in COMMANDS.items():
        if importlib.util.find_spec(f"legato.cli.{mod}") is not None:
            out[name] = (mod, helptext)
    return out


def build_parser(commands: dict[str, tuple[str, str]]) -> argparse.ArgumentParser:
    from legato import __version__

    parser = argparse.ArgumentParser(
        prog="legato",
        description="legato: robust neural-network molecular dynamics (Allegro / Allegro-Legato).",
        epilog="Run 'legato COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"legato {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_mod, helptext) in commands.items():
        sub.add_parser(name, help=helptext, add_help=False)
    return parser


def command_parser(name: str, module, helptext: str) -> argparse.ArgumentParser:
    """The parser of one command: its own options, ``--threads`` if it runs torch for
    long, and its examples as the epilog."""
    examples = getattr(module, "EXAMPLES", "").strip("\n")
    parser = argparse.ArgumentParser(
        prog=f"legato {name}",
        description=helptext,
        formatter_class=HelpFormatter,
        epilog=f"example:\n{examples}" if examples else None,
    )
    module.add_arguments(parser)
    if name in THREADED:
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            metavar="N",
            help="torch threads of this process, or of each worker for commands with --workers; "
            "default: the free cores (divided among the workers), or OMP_NUM_THREADS if set",
        )
    if name in COMPILED:
        parser.add_argument(
            "--no-compile",
            action="store_true",
            help="evaluate the model eagerly (the reference path) instead of the fast compiled one; "
            "the same as LEGATO_COMPILE=0",
        )
    return parser


def set_threads(n: int | None) -> int:
    """Set torch's intra-op threads: ``n``, or a default that does not oversubscribe."""
    import torch

    from legato.perf import default_threads

    if n is not None and n < 1:
        raise LegatoError(f"--threads must be >= 1, got {n}")
    n = default_threads() if n is None else n
    torch.set_num_threads(n)
    return n


def _one_line(exc: BaseException) -> str:
    """The error line for an exception that is the user's to fix (a file, a value)."""
    from pydantic import ValidationError

    if isinstance(exc, LegatoError):
        return str(exc)
    if isinstance(exc, ValidationError):
        from legato.config_file import config_error

        return str(config_error(exc, source=None))
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, IsADirectoryError):
        return f"is a folder, not a file: {exc.filename or exc}"
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return str(exc)


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
    parser = command_parser(name, module, commands[name][1])
    args = parser.parse_args(rest)
    from pydantic import ValidationError

    from legato.perf import tune_allocator

    tune_allocator()  # long CPU jobs: reuse freed memory instead of page-faulting it back
    try:
        if name in THREADED:
            set_threads(args.threads)
        if getattr(args, "no_compile", False):
            os.environ["LEGATO_COMPILE"] = "0"  # this process and its workers
        return int(module.run(args) or 0)
    except (LegatoError, ValidationError, OSError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
