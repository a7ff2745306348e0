"""``legato pimd CONFIG.yaml``: path-integral MD of R ring polymers in one batch.

Relative paths in the config (structure, model) are taken from the current directory, or,
if not found there, from the config file's directory. See docs/pimd.md.
"""

from __future__ import annotations

import argparse

EXAMPLES = """\
  legato pimd configs/pimd_example.yaml
  legato pimd configs/pimd_example.yaml --resume --steps 200
  legato pimd configs/pimd_example.yaml --output runs/pimd_nh3 --beads 16
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="PIMD config file (YAML; see docs/pimd.md)")
    parser.add_argument(
        "--output", "-o", metavar="DIR", help="output folder of the run, instead of output.directory"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the output folder from its last checkpoint, with the same model "
        "and settings (only the number of steps may be raised)",
    )
    parser.add_argument("--steps", type=int, metavar="N", help="total number of steps (instead of steps)")
    parser.add_argument("--beads", type=int, metavar="P", help="beads per ring polymer (instead of beads)")
    parser.add_argument(
        "--model",
        metavar="FILE",
        help="model file written by legato train (e.g. a run's best_model.pt), instead of the config's model",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def run(args: argparse.Namespace) -> int:
    from legato.cli.md import run_inputs
    from legato.pimd.config import load_pimd_config, validate_pimd_config
    from legato.pimd.runner import PIMDRunner, format_pimd_summary

    cfg, structures, potential = run_inputs(args, load_pimd_config, validate_pimd_config, beads=args.beads)
    result = PIMDRunner(potential, structures, cfg, output_dir=cfg.output.directory).run(resume=args.resume)
    print(format_pimd_summary(result.summary))
    print(f"outputs in {cfg.output.directory} (estimators: summary.json)")
    return 0
