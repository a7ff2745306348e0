"""Report of study v2: ``runs.csv`` (one row per model × instance × size), statistics over
models and instances (:mod:`legato.stats.hierarchical`), ``results.json``/``results.md`` and
figures. Everything here reads the study folder's tables; nothing runs MD or training.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from legato.config_file import parse_number
from legato.errors import LegatoError
from legato.fileio import atomic_write_text
from legato.stats.censored_scaling import censored_beta, compare_censored_betas
from legato.stats.failures import FailureRecord, FailureTable
from legato.stats.hierarchical import (
    compare_betas,
    hierarchical_mean,
    paired_on_shared,
    pooled_beta,
    ratio_of_means,
    shape_homogeneity,
    weibull_shape,
)
from legato.stats.outliers import outlier_growth, run_outlier_summary
from legato.stats.per_model import arm_summaries, paired_by_seed, rank_correlation
from legato.stats.rates import exposure, poisson_rate, rate_ratio
from legato.workflows.plots import plot_outliers, plot_survival, save_png
from legato.workflows.staged import csv_text, json_default
from legato.workflows.study_v2_config import ARMS, arm_label, is_arm
from legato.workflows.study_v2_energy import ENERGY_COLUMNS, energy_rows, energy_stats
from legato.workflows.study_v2_grids import grid_sections
from legato.workflows.study_v2_markdown import markdown
from legato.workflows.tfail import read_outliers

if TYPE_CHECKING:
    from legato.workflows.study_v2 import StudyV2

RUN_COLUMNS = (
    "model",
    "model_seed",
    "n_atoms",
    "instance_seed",
    "stage",
    "t_failure_steps",
    "t_total_steps",
    "t_failure_fs",
    "budget_steps",
    "reason",
    "censored",
)
CLOCKS = {"production": "t_failure_steps", "total": "t_total_steps"}
OUTLIER_COLUMNS = (
    "model",
    "model_seed",
    "n_atoms",
    "instance_seed",
    "checks",
    "early",
    "late",
    "final",
    "reason",
    "censored",
)


def split_label(label: str) -> tuple[str, int]:
    """``allegro_2x_s3`` -> (``allegro_2x``, 3)."""
    arm, _, seed = label.rpartition("_s")
    if not is_arm(arm) or not seed.isdigit():
        raise LegatoError(f"run label {label!r} is not <arm>_s<seed>")
    return arm, int(seed)


def run_rows(table: FailureTable, budgets: dict[int, int], arms: list[str]) -> list[dict[str, Any]]:
    """One row per run of the merged failure tables (columns :data:`RUN_COLUMNS`), the arms in
    the order of ``arms`` (:meth:`StudyV2Config.arms`)."""
    rows = []
    for r in table:
        arm, seed = split_label(r.model)
        rows.append(
            {
                "model": arm,
                "model_seed": seed,
                "n_atoms": r.n_atoms,
                "instance_seed": r.seed,
                "stage": r.extra.get("stage", ""),
                "t_failure_steps": r.t_failure_steps,
                "t_total_steps": int(r.extra.get("t_total_steps") or r.t_failure_steps),
                "t_failure_fs": r.t_failure_fs,
                "budget_steps": budgets.get(r.n_atoms, ""),
                "reason": r.reason,
                "censored": r.censored,
            }
        )
    rank = {arm: i for i, arm in enumerate(arms)}
    rows.sort(key=lambda d: (rank[d["model"]], d["model_seed"], d["n_atoms"], d["instance_seed"]))
    return rows


# ----------------------------------------------------------------------------- statistics
def _times(rows: list[dict], clock: str) -> dict[tuple[str, int], dict[int, dict[int, tuple[float, bool]]]]:
    """(arm, n_atoms) -> model seed -> instance seed -> (time, censored); time >= 1 step
    (a run failing in NVT has 0 steps on the production clock: counted as 1 so logs exist)."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        t = max(float(r[CLOCKS[clock]]), 1.0)
        out[(r["model"], r["n_atoms"])][r["model_seed"]][r["instance_seed"]] = (t, bool(r["censored"]))
    return out


def _exposures(rows: list[dict], clock: str, timestep_fs: float) -> dict[tuple[str, int], tuple[int, float]]:
    """(arm, n_atoms) -> (failures, exposure in atom·ns) on ``clock`` (:mod:`legato.stats.rates`)."""
    runs: dict = defaultdict(list)
    for r in rows:
        runs[(r["model"], r["n_atoms"])].append(r)
    return {
        key: (
            sum(not r["censored"] for r in rs),
            exposure(key[1], [float(r[CLOCKS[clock]]) * timestep_fs * 1e-6 for r in rs]),
        )
        for key, rs in runs.items()
    }


def _rate_comparison(a: tuple[int, float], b: tuple[int, float], confidence: float) -> dict[str, Any]:
    ratio, p = rate_ratio(a[0], a[1], b[0], b[1], confidence)
    return {"ratio": asdict(ratio), "p_one_sided": p, "failures": [a[0], b[0]], "atom_ns": [a[1], b[1]]}


def analyse(
    rows: list[dict], clock: str, n_boot: int, confidence: float, seed: int = 0, timestep_fs: float = 1.0
) -> dict[str, Any]:
    """Per arm and size: counts, reasons, failure rate per atom·ns, hierarchical means, Weibull
    shapes; Legato against each Adam arm: rate ratios, independent and paired ratios of means;
    β per model and pooled with tests."""
    data = _times(rows, clock)
    expo = _exposures(rows, clock, timestep_fs)
    arms = [a for a in ARMS if any(k[0] == a for k in data)]
    sizes = sorted({k[1] for k in data})
    per_size: list[dict] = []
    for arm in arms:
        for n in sizes:
            models = data.get((arm, n))
            if not models:
                continue
            sub = [r for r in rows if r["model"] == arm and r["n_atoms"] == n]
            groups = [np.array([v[0] for v in m.values()]) for m in models.values()]
            t = np.array([v[0] for m in models.values() for v in m.values()])
            cens = np.array([v[1] for m in models.values() for v in m.values()])
            entry: dict[str, Any] = {
                "model": arm,
                "n_atoms": n,
                "models": len(models),
                "runs": int(t.size),
                "failed": int((~cens).sum()),
                "failed_in_nvt": sum(r["stage"] == "nvt" and not r["censored"] for r in sub),
                "reasons": dict(Counter(r["reason"] for r in sub if not r["censored"])),
                "atom_ns": expo[(arm, n)][1],
                "rate_per_atom_ns": asdict(poisson_rate(*expo[(arm, n)], confidence)),
                "mean": asdict(hierarchical_mean(groups, n_boot, seed, confidence)),
                "per_model_mean": {s: float(np.mean([v[0] for v in m.values()])) for s, m in models.items()},
            }
            try:
                entry["weibull_shape"] = asdict(weibull_shape(t, cens, confidence))
            except LegatoError as exc:
                entry["weibull_shape"] = str(exc)
            per_size.append(entry)
    comparisons = []
    for other in [a for a in arms if a != "legato"] if "legato" in arms else []:
        for n in sizes:
            a, b = data.get((other, n)), data.get(("legato", n))
            if not a or not b:
                continue
            ga = [np.array([v[0] for v in m.values()]) for m in a.values()]
            gb = [np.array([v[0] for v in m.values()]) for m in b.values()]
            c: dict[str, Any] = {
                "a": other,
                "b": "legato",
                "n_atoms": n,
                "rate_ratio": _rate_comparison(expo[(other, n)], expo[("legato", n)], confidence),
            }
            if expo[(other, n)][0] + expo[("legato", n)][0] == 0:  # both at the budget: no ratio
                comparisons.append(c)
                continue
            c["ratio_of_means"] = asdict(ratio_of_means(ga, gb, n_boot, seed, confidence))
            paired = paired_on_shared(
                [{i: v[0] for i, v in m.items()} for m in a.values()],
                [{i: v[0] for i, v in m.items()} for m in b.values()],
                n_boot,
                seed,
                confidence,
            )
            if paired is not None:
                c["paired"] = asdict(paired)
            comparisons.append(c)
    pooled_rates = []  # Legato against each arm over the sizes both ran (rate ∝ N^(β-1))
    for other in [a for a in arms if a != "legato"] if "legato" in arms else []:
        shared = [n for n in sizes if (other, n) in expo and ("legato", n) in expo]
        if shared:
            a, b = (
                (sum(expo[(arm, n)][0] for n in shared), sum(expo[(arm, n)][1] for n in shared))
                for arm in (other, "legato")
            )
            pooled_rates.append(
                {"a": other, "b": "legato", "sizes": shared, **_rate_comparison(a, b, confidence)}
            )
    betas: dict[str, Any] = {}
    omitted: dict[str, str] = {}
    model_runs: dict[str, list[dict[int, np.ndarray]]] = {}
    censored_runs: dict[str, list[dict[int, tuple[np.ndarray, np.ndarray]]]] = {}
    for arm in arms:
        ran = [n for n in sizes if (arm, n) in data]
        failing = [n for n in ran if expo[(arm, n)][0] > 0]
        if len(ran) >= 2 and len(failing) < 2:  # a mean of runs all at the budget is the budget
            quiet = ", ".join(str(n) for n in ran if n not in failing)
            omitted[arm] = f"every run at N = {quiet} reached its budget, so a mean there is the budget"
            continue
        # means only where runs failed (elsewhere a mean is the budget); the Weibull fit takes
        # every size, a size whose runs all reached the budget entering as censored runs
        by_seed = _fitted_models(data, arm, failing)
        if by_seed:
            censored_runs[arm] = list(_fitted_models(data, arm, ran).values())
            runs = [{n: t for n, (t, _) in m.items()} for m in by_seed.values()]
            model_runs[arm] = runs
            pb = pooled_beta(runs, n_boot, seed, confidence)
            betas[arm] = {**asdict(pb), "per_model": dict(zip(by_seed, pb.per_model, strict=True))}
            betas[arm]["sizes"] = failing
            betas[arm]["quiet_sizes"] = [n for n in ran if n not in failing]
            samples = {n: _pooled_sample(data[(arm, n)]) for n in sizes if (arm, n) in data}
            try:
                lr, p, dof = shape_homogeneity(samples)
                betas[arm]["shape_homogeneity"] = {"lr": lr, "p": p, "dof": dof}
            except LegatoError as exc:
                betas[arm]["shape_homogeneity"] = str(exc)
            try:
                betas[arm]["weibull"] = asdict(censored_beta(censored_runs[arm], n_boot, seed, confidence))
            except LegatoError as exc:
                betas[arm]["weibull"] = str(exc)
    beta_tests = []
    for other in model_runs:
        if other == "legato" or "legato" not in model_runs:
            continue
        test = compare_betas(model_runs[other], model_runs["legato"], n_boot, seed, confidence)
        entry: dict[str, Any] = {"a": other, "b": "legato", **asdict(test)}
        try:
            diff, p = compare_censored_betas(
                censored_runs[other], censored_runs["legato"], n_boot, seed, confidence
            )
            entry["weibull"] = {"difference": asdict(diff), "p_bootstrap": p}
        except LegatoError as exc:
            entry["weibull"] = str(exc)
        beta_tests.append(entry)
    return {
        "clock": clock,
        "per_size": per_size,
        "comparisons": comparisons,
        "pooled_rates": pooled_rates,
        "beta": betas,
        "beta_omitted": omitted,
        "beta_tests": beta_tests,
    }


def outlier_rows(study: StudyV2, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per run: its 5σ force-outlier counts per 1,000 atoms (:func:`run_outlier_summary`)
    with its outcome; and Fig. 1's curves (two runs of each arm's first model at the largest
    size, columns step, outliers, model, run)."""
    outcome = {(r["model"], r["model_seed"], r["n_atoms"], r["instance_seed"]): r for r in rows}
    largest = max(r["n_atoms"] for r in rows)
    summaries, curves = [], []
    for arm, seed in study.models():
        for reps in study.cfg.sizes_of(arm):
            by_run: dict[tuple[int, int], list[dict]] = defaultdict(list)
            for r in read_outliers(study.tfail_dir(arm, seed, reps) / "outliers.csv"):
                by_run[(int(r["n_atoms"]), int(r["seed"]))].append(r)
            shown = sorted(by_run)[:2]  # one size per folder: its first two instances
            for (n, inst), checks in sorted(by_run.items()):
                steps = [float(c["nve_step"]) for c in checks]
                s = run_outlier_summary(steps, [float(c["outliers"]) for c in checks], n)
                o = outcome.get((arm, seed, n, inst), {})
                summaries.append(
                    {"model": arm, "model_seed": seed, "n_atoms": n, "instance_seed": inst, **s}
                    | {"reason": o.get("reason", ""), "censored": o.get("censored", "")}
                )
                if n == largest and seed == min(study.cfg.seeds) and (n, inst) in shown:
                    curves += [
                        {"step": c["step"], "outliers": c["outliers"], "model": arm_label(arm), "run": inst}
                        for c in checks
                    ]
    return summaries, curves


def outlier_table(summaries: list[dict]) -> list[dict]:
    """Per arm and size: :func:`outlier_growth` of all runs, and the mean last count of the
    failed runs (a cascade shows as a final count far above the early one)."""
    out = []
    for arm in ARMS:
        for n in sorted({s["n_atoms"] for s in summaries if s["model"] == arm}):
            sub = [s for s in summaries if s["model"] == arm and s["n_atoms"] == n]
            failed = [s["final"] for s in sub if s["censored"] is False and s["checks"] > 0]
            out.append(
                {"model": arm, "n_atoms": n, **outlier_growth(sub)}
                | {"final_failed": float(np.mean(failed)) if failed else None, "failed": len(failed)}
            )
    return out


def _fitted_models(
    data: dict, arm: str, sizes: list[int]
) -> dict[int, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """The arm's models with runs at >= 2 of ``sizes`` (those a β can be fitted to), by seed
    in order: n_atoms -> (times, censored)."""
    by_seed: dict[int, dict] = defaultdict(dict)
    for (a, n), models in data.items():
        if a == arm and n in sizes:
            for s, m in models.items():
                by_seed[s][n] = (np.array([v[0] for v in m.values()]), np.array([v[1] for v in m.values()]))
    return {s: by_seed[s] for s in sorted(by_seed) if len(by_seed[s]) >= 2}


def _pooled_sample(models: dict[int, dict[int, tuple[float, bool]]]) -> tuple[np.ndarray, np.ndarray]:
    vals = [v for m in models.values() for v in m.values()]
    return np.array([v[0] for v in vals]), np.array([v[1] for v in vals])


# ----------------------------------------------------------------------------- figures
def scaling_figure(rows: list[dict], stats: dict, clock: str) -> Figure:
    """Mean t_failure against N: each model's means (thin), arm means with intervals (thick)."""
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.add_subplot()
    colors = {
        "allegro": "tab:red",
        "legato": "tab:blue",
        "allegro_2x": "tab:orange",
        "allegro_matched": "tab:purple",
    }
    censored_only: list[tuple[float, float, str]] = []
    for arm in ARMS:
        entries = [e for e in stats["per_size"] if e["model"] == arm]
        if not entries:
            continue
        ns = np.array([e["n_atoms"] for e in entries], float)
        for s in entries[0]["per_model_mean"]:
            pts = [(e["n_atoms"], e["per_model_mean"][s]) for e in entries if s in e["per_model_mean"]]
            ax.plot(*zip(*pts, strict=True), color=colors[arm], lw=0.6, alpha=0.4, marker=".")
        m = np.array([e["mean"]["value"] for e in entries])
        lo = np.array([e["mean"]["lo"] for e in entries])
        hi = np.array([e["mean"]["hi"] for e in entries])
        beta = stats["beta"].get(arm, {}).get("pooled")
        lab = arm_label(arm) + (
            f", β = {beta['value']:.2f} [{beta['lo']:.2f}, {beta['hi']:.2f}]" if beta else ""
        )
        ax.errorbar(ns, m, yerr=[m - lo, hi - m], color=colors[arm], lw=2, capsize=3, marker="o", label=lab)
        quiet = np.array([e["failed"] == 0 for e in entries])
        censored_only += [(n, v, colors[arm]) for n, v in zip(ns[quiet], m[quiet], strict=True)]
    for n, v, color in censored_only:  # every run at its budget: a lower bound (open marker, on top)
        ax.plot([n], [v], "o", mfc="white", mec=color, mew=2, ms=7, zorder=5)
    if censored_only:
        ax.text(
            0.02,
            0.02,
            "open: every run reached its budget (a lower bound)",
            transform=ax.transAxes,
            fontsize=7,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("atoms N")
    ax.set_ylabel(f"mean t_failure ({'NVE' if clock == 'production' else 'total'} steps)")
    ax.legend(fontsize=7)
    ax.set_title("time to failure: models (thin) and arm means with 95 % intervals", fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- report
#: per-model measures the report compares across arms: (table, column, label); the models
#: table carries errors.csv's columns too (merged by :func:`write_report`)
MODEL_MEASURES = (
    ("models.csv", "val_forces_rmse_meV_A", "validation force RMSE (meV/Å)"),
    ("models.csv", "forces_rmse_meV_A", "test force RMSE (meV/Å)"),
    ("sharpness.csv", "value", "sharpness, max over random directions"),
    ("sharpness.csv", "worst_case_value", "sharpness, worst case (gradient ascent)"),
)


def model_survival(rows: list[dict]) -> dict[str, Any]:
    """Per model at the base (smallest) size: mean production steps (a censored run counts at
    its budget, so a lower bound) and the fraction of runs that failed; keys ``arm_s<seed>``."""
    n0 = min(r["n_atoms"] for r in rows)
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["n_atoms"] == n0:
            by[f"{r['model']}_s{r['model_seed']}"].append(r)
    return {
        "n_atoms": n0,
        "mean_steps": {k: float(np.mean([r["t_failure_steps"] for r in v])) for k, v in by.items()},
        "failed_fraction": {k: float(np.mean([not r["censored"] for r in v])) for k, v in by.items()},
    }


def model_measures(
    out: Path, models: list[dict], n_boot: int, confidence: float, seed: int, rows: list[dict] | None = None
) -> list[dict]:
    """Each per-model measure the study has (accuracy, sharpness): arm means over models,
    Legato against every Adam arm paired by seed (:mod:`legato.stats.per_model`) and, given the
    runs, the rank correlation over all models with survival at the base size (the four arms'
    models; the Table-1 grid has its own section)."""
    rows = [r for r in rows or [] if r["model"] in ARMS]
    survival = model_survival(rows) if rows else None
    tables = {"models.csv": models, "sharpness.csv": _read_csv(out / "sharpness.csv")}
    res = []
    for table, column, label in MODEL_MEASURES:
        values: dict[str, dict[int, float]] = {}
        for r in tables[table]:
            if r["model"] in ARMS and isinstance(r.get(column), (int, float)):
                values.setdefault(str(r["model"]), {})[int(r["model_seed"])] = float(r[column])
        if values:
            entry = {
                "measure": column,
                "label": label,
                "arms": arm_summaries(values, n_boot, seed, confidence),
                "legato_vs": paired_by_seed(values, "legato", n_boot, seed, confidence),
            }
            if survival:
                flat = {f"{arm}_s{sd}": v for arm, by_seed in values.items() for sd, v in by_seed.items()}
                entry["vs_survival"] = {
                    "n_atoms": survival["n_atoms"],
                    "mean_steps": rank_correlation(flat, survival["mean_steps"]),
                    "failed_fraction": rank_correlation(flat, survival["failed_fraction"]),
                }
            res.append(entry)
    return res


def write_report(study: StudyV2) -> dict:
    cfg = study.cfg
    table = study.table()
    if len(table) == 0:
        raise LegatoError("no time-to-failure runs to report")
    n0 = study.result("data")["base_n_atoms"]
    budgets = {}
    for arm in cfg.arms():
        for reps in cfg.sizes_of(arm):
            budgets[n0 * reps[0] * reps[1] * reps[2]] = cfg.tfail.budget(reps)
    rows = run_rows(table, budgets, cfg.arms())
    atomic_write_text(study.out / "runs.csv", csv_text(rows, RUN_COLUMNS), overwrite=True)
    a = cfg.analysis
    dt = cfg.tfail.timestep_fs
    stats = {clock: analyse(rows, clock, a.n_boot, a.confidence, a.seed, dt) for clock in CLOCKS}
    models = _read_csv(study.out / "models.csv")
    errors = {(r["model"], r["model_seed"]): r for r in _read_csv(study.out / "errors.csv")}
    for m in models:
        m.update({k: v for k, v in errors.get((m["model"], m["model_seed"]), {}).items() if k not in m})
    summaries, curves = outlier_rows(study, rows)
    atomic_write_text(study.out / "outliers.csv", csv_text(summaries, OUTLIER_COLUMNS), overwrite=True)
    outliers = outlier_table(summaries)
    if curves:
        fig1 = study.out / "fig1_outliers.csv"
        atomic_write_text(fig1, csv_text(curves, ["step", "outliers", "model", "run"]), overwrite=True)
        sigma, nvt = cfg.tfail.outlier_sigma, cfg.tfail.nvt_steps
        plot_outliers(fig1, study.out / "fig1_outliers.png", sigma, overwrite=True, nvt_steps=nvt)
    per_model = model_measures(study.out, models, a.n_boot, a.confidence, a.seed, rows)
    grids, grid_lines = grid_sections(study, rows, models, _read_csv(study.out / "sharpness.csv"))
    runs_energy = energy_rows(study)
    atomic_write_text(study.out / "energy.csv", csv_text(runs_energy, ENERGY_COLUMNS), overwrite=True)
    energy = energy_stats(runs_energy, a.n_boot, a.confidence, a.seed)
    atomic_write_text(
        study.out / "results.json",
        json.dumps(
            {
                "stats": stats,
                "models": models,
                "outliers": outliers,
                "energy": energy,
                "per_model": per_model,
                **grids,
            },
            indent=1,
            default=json_default,
        )
        + "\n",
    )
    text = markdown(stats, models, outliers, energy, per_model)
    text += "\n".join(grid_lines)
    missing = study.missing_ensembles()
    if missing:  # an interim report (``--stages report`` before the tfail stage has finished)
        note = (
            f"**Interim report:** {len(missing)} time-to-failure ensemble(s) have no results yet "
            f"({', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''}); every number below "
            "covers the finished ones only.\n\n"
        )
        text = text.replace("\n\n", "\n\n" + note, 1)
    atomic_write_text(study.out / "results.md", text)
    for clock, st in stats.items():
        save_png(scaling_figure(rows, st, clock), study.out / f"tfail_scaling_{clock}.png", overwrite=True)
    pooled = FailureTable(
        [
            FailureRecord(
                r.model.rpartition("_s")[0],
                r.n_atoms,
                r.seed * 1000 + split_label(r.model)[1],
                r.t_failure_steps,
                r.t_failure_fs,
                r.reason,
                r.censored,
            )
            for r in table
            if split_label(r.model)[0] in ARMS
        ]
    )
    plot_survival(pooled, study.out / "survival.png", overwrite=True, clock="production")
    study.log((study.out / "results.md").read_text())
    files = ["runs.csv", "outliers.csv", "energy.csv", "results.json", "results.md", "survival.png"]
    return {
        "runs": len(rows),
        "missing_ensembles": len(missing),
        "files": files
        + (["fig1_outliers.png"] if curves else [])
        + [p for p in ("table1_rho.png", "table4_lmax.png") if (study.out / p).is_file()],
    }


#: what ``export_results`` copies: the tables, the report, the figures and the model files
EXPORT_FILES = (
    "models.csv",
    "runs.csv",
    "errors.csv",
    "sharpness.csv",
    "results.json",
    "results.md",
    "tfail_scaling_production.png",
    "tfail_scaling_total.png",
    "survival.png",
    "outliers.csv",
    "energy.csv",
    "fig1_outliers.csv",
    "fig1_outliers.png",
    "table1_rho.png",
    "table4_lmax.png",
)


def export_results(study: StudyV2, dest: str | Path) -> list[Path]:
    """Copy the study's tables, report, figures and model files to ``dest`` (e.g. under
    docs/results/), refusing any text file that names an absolute path of this machine."""
    import shutil

    dest = Path(dest)
    sources = [study.out / name for name in EXPORT_FILES if (study.out / name).is_file()]
    sources += sorted((study.out / "models").glob("*.pt"))
    if not any(p.name == "runs.csv" for p in sources):
        raise LegatoError(f"{study.out} has no runs.csv yet: run the report stage first")
    roots = {str(Path.home()), str(study.out.resolve()), str(Path.cwd().resolve())}
    for src in sources:
        if src.suffix in (".csv", ".json", ".md", ".yaml"):
            text = src.read_text(encoding="utf-8")
            bad = [r for r in roots if r and r != "/" and r in text]
            if bad:
                raise LegatoError(f"{src} names the absolute path {bad[0]}; not exported")
    out = []
    for src in sources:
        target = dest / ("models" if src.suffix == ".pt" else "") / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".pt":
            portable_model_copy(src, target)
        else:
            shutil.copyfile(src, target)
        out.append(target)
    return out


def portable_model_copy(src: Path, target: Path) -> None:
    """Save the model at ``src`` to ``target`` without the training run's folder (an absolute
    path of this machine) in its metadata."""
    from legato.models import load_model, save_model

    model = load_model(src)
    extra = {k: v for k, v in (getattr(model, "extra", None) or {}).items() if k != "run_dir"}
    save_model(model, target, extra)


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: parse_number(v) for k, v in r.items()} for r in rows]
