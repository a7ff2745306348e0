"""``legato demo --out DIR``: Allegro vs Allegro-Legato in a few minutes on a laptop CPU.

On the shipped dataset (``data/nh3_liquid_gfn1.extxyz.gz``: GFN1-xTB labelled liquid ND3),
trains a small Allegro (Adam) and a small Allegro-Legato (SAM, ρ = 0.005) side by side,
runs a small time-to-failure ensemble of each at two sizes, then prints and plots the
comparison (survival curves, t_failure vs N, test errors). It is the robustness study
(``legato study``) with a small built-in config; the numbers of so short a run are a
demonstration, not a measurement (see docs/study.md for the real study).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from legato.errors import LegatoError

SHIPPED_DATA = "data/nh3_liquid_gfn1.extxyz.gz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--resume", action="store_true", help="continue (or re-report) the demo already in DIR"
    )
    parser.add_argument("--data", default=None, help=f"labelled frames (default: the shipped {SHIPPED_DATA})")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="parallel processes: the two models train and run side by side (2)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a seconds-long smoke run (tiny models and MD; numbers meaningless)",
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
        "workers": workers,
        "threads_per_worker": 1,
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
    """The terminal summary: t_failure per model and size, β, test errors, figures."""
    lines = [
        "",
        "time to failure in NVE steps (mean counts runs alive at the budget as the budget;",
        "NVT = failed before NVE, t = 0; n.r. = median not reached)",
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
    for m in res["models"]:
        f = m["fits"].get("weibull")
        if f:
            lo, hi = (math.inf if x is None else x for x in f["beta_ci"])
            lines.append(f"{m['model']}: beta (Weibull ML) = {f['beta']:.2f} [{lo:.2f}, {hi:.2f}]")
        for note in m.get("notes", []):
            lines.append(f"{m['model']}: {note}")
    if not res["models"]:
        lines.append(f"no scaling fit: {res['report']}")
    if study.done("errors") and study.result("errors"):
        lines.append("")
        for r in study.result("errors")["rows"]:
            lines.append(
                f"{r['model']}: test force RMSE {r['forces_rmse_meV_A']:.1f} "
                f"[{r['forces_rmse_meV_A_lo']:.1f}, {r['forces_rmse_meV_A_hi']:.1f}] "
                f"meV/Å on {r['n_frames']} frames"
            )
    out = study.out
    pngs = [
        p
        for p in ("survival.png", "fig2_scaling.png", "fig1_outliers.png")
        if (out / "scaling" / p).is_file()
    ]
    lines += [
        "",
        "plots: " + ", ".join(str(out / "scaling" / p) for p in pngs),
        f"full report: {out / 'results.md'}",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import time

    from legato.analysis.study import run_study

    if args.workers < 1:
        raise LegatoError("--workers must be >= 1")
    data = Path(args.data) if args.data else shipped_data()
    if not data.is_file():
        raise LegatoError(f"data file not found: {data}")
    t0 = time.perf_counter()
    cfg = demo_config(str(data.resolve()), args.workers, args.quick)
    study = run_study(cfg, args.out, resume=args.resume)
    print(format_comparison(study))
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return 0
