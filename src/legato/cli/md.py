"""``legato md CONFIG.yaml``: batched MD of R replicas with failure detection.

Relative paths in the config (structure, model) are taken from the current directory, or,
if not found there, from the config file's directory. See docs/md.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from legato.errors import LegatoError

EXAMPLES = """\
  legato md configs/md_quick.yaml
  legato md configs/md_quick.yaml --resume --steps 1000
  legato md configs/md_nh3.yaml --model runs/small_legato/best_model.pt   (needs ../shared)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="MD config file (YAML; see docs/md.md)")
    parser.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        help="output folder of the run, instead of the config's output.directory",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the output folder from its last checkpoint, with the same model "
        "and settings (only the number of steps may be raised)",
    )
    parser.add_argument(
        "--steps", type=int, metavar="N", help="total number of MD steps, instead of the config's steps"
    )
    parser.add_argument(
        "--model",
        metavar="FILE",
        help="model file written by legato train (e.g. a run's best_model.pt), instead of the config's model",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def _resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    alt = base / p
    return alt if alt.exists() else p


def load_structures(paths: str | list[str], index: int, base: Path):
    from legato.data import read_frames

    out = []
    for path in [paths] if isinstance(paths, str) else paths:
        frames = read_frames(_resolve(path, base))
        if not -len(frames) <= index < len(frames):
            raise LegatoError(f"{path} has {len(frames)} frames; structure_index {index} is out of range")
        out.append(frames[index])
    return out


def build_potential(cfg, base: Path):
    """The model named in the config (eval mode) or a reference pair potential."""
    if cfg.model is not None:
        from legato.models import load_model

        return load_model(_resolve(cfg.model, base), map_location=cfg.device)
    from legato.md.potentials import HarmonicPairs, LennardJones

    ref = cfg.reference_potential
    if ref.kind == "lennard_jones":
        return LennardJones(epsilon_eV=ref.epsilon_eV, sigma_A=ref.sigma_A, r_max=ref.r_max)
    return HarmonicPairs(k_eV_per_A2=ref.k_eV_per_A2, r0_A=ref.r0_A, r_max=ref.r_max)


def run_inputs(args: argparse.Namespace, load, validate, **overrides):
    """(config, structures, potential) of a run command (``legato md``, ``legato pimd``).

    ``load(path)`` reads the config file, ``validate(dict)`` checks it; the command line's
    --output, --steps, --model, --no-progress and the ``overrides`` that are not None
    (config keys) take precedence over the file.
    """
    import torch

    cfg_path = Path(args.config)
    data = load(cfg_path).model_dump(mode="json")
    if args.output:
        data["output"]["directory"] = args.output
    if args.steps is not None:
        data["steps"] = args.steps
    data.update({k: v for k, v in overrides.items() if v is not None})
    if args.model:
        if not Path(args.model).is_file():
            raise LegatoError(f"model file not found: {args.model}")
        data["model"] = str(Path(args.model).resolve())
        data["reference_potential"] = None
    if args.no_progress:
        data["output"]["progress"] = False
    cfg = validate(data)
    base = cfg_path.resolve().parent
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise LegatoError(f"device {cfg.device} requested but CUDA is not available")
    return cfg, load_structures(cfg.structure, cfg.structure_index, base), build_potential(cfg, base)


def run(args: argparse.Namespace) -> int:
    from legato.md.config import load_config, validate_config
    from legato.md.runner import MDRunner, format_summary

    cfg, structures, potential = run_inputs(args, load_config, validate_config)
    runner = MDRunner(potential, structures, cfg, output_dir=cfg.output.directory)
    result = runner.run(resume=args.resume)
    print(format_summary(result.summary))
    print(f"outputs in {cfg.output.directory}")
    return 0
