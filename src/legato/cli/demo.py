"""``legato demo --out DIR``: Allegro vs Allegro-Legato, end to end, on a laptop CPU.

On the shipped dataset (``data/nh3_liquid_gfn1.extxyz.gz``: GFN1-xTB labelled liquid ND3),
trains a small Allegro (Adam) and a small Allegro-Legato (SAM, ρ = 0.005) side by side,
runs a small time-to-failure ensemble of each at two sizes, then prints and plots the
comparison (survival curves, t_failure vs N, test errors). It is the robustness study
(``legato study``) with a small built-in config; the numbers of so short a run are a
demonstration, not a measurement (see docs/study.md for the real study), and the summary
says so whenever its intervals overlap or point the wrong way.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from legato.errors import LegatoError

SHIPPED_DATA = "data/nh3_liquid_gfn1.extxyz.gz"

EXAMPLES = """\
  legato demo --out runs/demo
  legato demo --out runs/demo_quick --quick
"""

#: wall times measured on this project's 2-core machine shared with other jobs (load average
#: about 4; OMP_NUM_THREADS=1, 2 workers): 288 s and 67 s
MEASURED = {"full": "about 5 minutes", "quick": "about a minute"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (must be new or empty)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted demo in DIR, or print the results of a finished one again",
    )
    parser.add_argument(
        "--data",
        default=None,
        metavar="FILE",
        help=f"labelled frames to use (default: the shipped {SHIPPED_DATA})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="parallel processes; with 2 the two models train and run side by side "
        "(default: 2, or 1 on a one-core machine)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run with tiny models and a few MD steps ({MEASURED['quick']}); "
        "it checks that everything runs, its numbers mean nothing",
    )


def shipped_data() -> Path:
    """The dataset shipped with the repository (found from the package or the cwd)."""
    import legato

    for root in (Path(legato.__file__).resolve().parents[2], Path.cwd()):
        p = root / SHIPPED_DATA
        if p.is_file():
            return p
    raise LegatoError(f"shipped dataset {SHIPPED_DATA} not found; pass --data FILE")


def demo_config(data: str, workers: int = 2, quick: bool = False) -> dict:
    """The demo's study config (see docs/study.md for the choices)."""
    model = {
        "type_names": ["H", "N"],
        "r_max": 4.0,
        "l_max": 1,
        "num_layers": 1,
        "env_embed_multiplicity": 8,
        "two_body_latent_mlp_latent_dimensions": [16, 32],
        "latent_mlp_latent_dimensions": [32],
        "edge_eng_mlp_latent_dimensions": [16],
    }
    cfg = {
        "data": data,
        "data_index": "::2",
        "test_fraction": 0.1,
        # a two-minute model learns the 200 – 250 K liquid it will simulate, not the whole set
        "train_frames": {"source": ["md"], "temperature_K": [200.0, 250.0]},
        "train": {
            # the shipped data's time-block split: train frames for training, validation for
            # validation (test frames are held out by the study's data stage)
            "data": {"n_train": 64, "n_val": 16, "split_key": "split"},
            "model": model,
            "optimizer": {"name": "Adam", "lr": 0.004},
            "lr_scheduler": {"patience": 3},
            "early_stopping": {"patience": 10, "delta": 0.0},
            "training": {
                "max_epochs": 10,  # the same for Adam and SAM (SAM takes twice as long)
                "max_time_minutes": 6,
                "batch_size": 1,
                "dtype": "float32",
                "seed": 1,
            },
        },
        "rho_grid": [],
        "legato_rho": 0.005,
        "tfail": {
            "sizes": [1, "1x1x2"],
            "instances": 6,
            "temperature_K": 200.0,
            "timestep_fs": 2.5,
            "nvt_steps": 50,
            "thermostat_tau_fs": 62.5,
            "max_steps": 300,
            "check_every": 10,
            "checkpoint_every": 100,
        },
        "errors": {"max_frames": 16, "n_boot": 500},
        "sharpness": {"enabled": False},
        "landscape": {"enabled": False},
        "analysis": {"n_boot": 500, "fig1_instances": 2},
        "workers": workers,  # threads_per_worker: set by --threads or the free cores
    }
    if quick:
        cfg["data_index"] = ":"
        cfg["train_frames"] = {}
        cfg["test_fraction"] = 0.25
        cfg["train"]["data"] = {"n_train": 8, "n_val": 4}  # random split (any data)
        cfg["train"]["model"].update(
            r_max=3.0,
            env_embed_multiplicity=4,
            two_body_latent_mlp_latent_dimensions=[8, 16],
            latent_mlp_latent_dimensions=[16],
            edge_eng_mlp_latent_dimensions=[8],
            num_bessel=4,
        )
        cfg["train"]["training"].update(max_epochs=1, dtype="float64")
        cfg["train"]["ema"] = {"enabled": False}
        cfg["tfail"].update(
            instances=3, nvt_steps=5, max_steps=20, check_every=5, checkpoint_every=10, temperature_K=200.0
        )
        cfg["errors"] = {"max_frames": 4, "n_boot": 50}
        cfg["analysis"] = {"n_boot": 50, "fig1_instances": 1}
    return cfg


def _num(x: float | None, nd: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "n.r."
    return f"{x:.{nd}f}"


def format_comparison(study) -> str:
    """The terminal summary: t_failure per model and size, β, test errors, a verdict computed
    from these numbers, and where the figures and logs are."""
    from legato.workflows.study_report import verdicts
    from legato.workflows.tfail import parse_sizes

    t = study.cfg.tfail
    budgets = sorted({t.budget(r) for r in parse_sizes(t.sizes)})
    conf = f"{study.cfg.analysis.confidence:.0%}"
    lines = [
        "",
        f"Time to failure, counted in NVE steps after {t.nvt_steps} NVT steps at {t.temperature_K:g} K",
        "one row per model and system size N (atoms); runs: MD runs; NVT: failed during NVT (t = 0);",
        f"NVE: failed during NVE; alive: still running at the budget of {'/'.join(map(str, budgets))} "
        "NVE steps;",
        "mean ± s.e. in NVE steps, alive runs counted at the budget; KM median: Kaplan–Meier median",
        "(n.r. = not reached).",
        f"{'model':<18} {'N':>6} {'runs':>5} {'NVT':>4} {'NVE':>4} {'alive':>6} "
        f"{'mean ± s.e.':>16} {'KM median':>10}",
    ]
    res = study.result("scaling")
    for e in res["ensembles"]:
        lines.append(
            f"{e['label']:<18} {e['n_atoms']:>6} {e['n']:>5} {e['nvt_failures']:>4} "
            f"{e['failed'] - e['nvt_failures']:>4} {e['censored']:>6} "
            f"{_num(e['mean']):>8} ± {_num(e['sem']):<6} {_num(e['median']):>10}"
        )
    lines.append("")
    lines.append(f"Fidelity-scaling exponent beta in t_failure = alpha * N^-beta (NVE steps, {conf} CI):")
    for m in res["models"]:
        f = m["fits"].get("weibull")
        if f:
            lo, hi = (math.inf if x is None else x for x in f["beta_ci"])
            lines.append(f"  {m['model']}: beta (Weibull ML) = {f['beta']:.2f} [{lo:.2f}, {hi:.2f}]")
        for note in m.get("notes", []):
            lines.append(f"  {m['model']}: {note}")
    if not res["models"]:
        lines.append(f"  no fit: {res['report']}")
    if study.done("errors") and study.result("errors"):
        lines += ["", f"Force error on the held-out test frames (RMSE in meV/Å, {conf} bootstrap CI):"]
        for r in study.result("errors")["rows"]:
            lines.append(
                f"  {r['model']}: {r['forces_rmse_meV_A']:.1f} "
                f"[{r['forces_rmse_meV_A_lo']:.1f}, {r['forces_rmse_meV_A_hi']:.1f}] "
                f"on {r['n_frames']} frames"
            )
    lines += ["", f"Verdict (computed from the numbers above; intervals are {conf}):"]
    found = verdicts(study)
    lines += [f"  {text}" for _, text in found]
    if found and all(ok for ok, _ in found):
        lines.append("At this size the demo shows the paper's direction in every comparison above.")
    else:
        lines.append(
            "This demo is too small to show the paper's effect (Legato lasting longer, a smaller beta):"
        )
        lines.append(
            "the comparisons marked 'not resolved' are not evidence either way. The real measurement is"
        )
        lines.append("'legato study configs/study.yaml' (hours; docs/study.md, docs/reproduction_v1.md).")
    out = study.out
    pngs = [
        p
        for p in ("survival.png", "fig2_scaling.png", "fig1_outliers.png")
        if (out / "scaling" / p).is_file()
    ]
    lines += [
        "",
        "plots: " + ", ".join(str(out / "scaling" / p) for p in pngs),
        f"full report: {out / 'results.md'}; per-job logs: {out / 'logs'}",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import time

    from legato.perf import available_cores
    from legato.workflows.study import run_study
    from legato.workflows.study_config import set_worker_threads, validate_study_config

    workers = min(2, available_cores()) if args.workers is None else args.workers
    if workers < 1:
        raise LegatoError("--workers must be >= 1")
    data = Path(args.data) if args.data else shipped_data()
    if not data.is_file():
        raise LegatoError(f"data file not found: {data}")
    t0 = time.perf_counter()
    cfg = validate_study_config(demo_config(str(data.resolve()), workers, args.quick), "demo config")
    note = set_worker_threads(cfg, getattr(args, "threads", None))
    kind = "quick" if args.quick else "full"
    print(
        f"legato demo{' --quick' if args.quick else ''}: train Allegro (Adam) and Allegro-Legato (SAM), "
        f"then time-to-failure MD of both at {len(cfg.tfail.sizes)} sizes.\n"
        f"Measured on a 2-core machine: {MEASURED[kind]}. Progress is shown below; "
        f"each job's full output goes to {Path(args.out) / 'logs'}."
    )
    if note:
        print(note)
    study = run_study(cfg, args.out, resume=args.resume)
    print(format_comparison(study))
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return 0
