"""Study v2's Table 1: time to failure, accuracy and sharpness against SAM's ρ.

The grid's points are the Allegro arm (ρ = 0), the Legato arm (the study's ``rho``) and the
``rho_grid`` arms, all trained from the same seeds (so the same training subsets and initial
weights) and run from the same starting boxes at the base size, so every SAM point is compared
with Allegro paired by seed and box. :func:`rho_grid_rows` is pure (rows in, rows out);
:func:`rho_markdown` and :func:`rho_figure` present them; :func:`rho_grid_section` is the
report's step.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from legato.stats.hierarchical import hierarchical_mean, paired_on_shared
from legato.stats.rates import exposure, poisson_rate, rate_ratio
from legato.workflows.plots import save_png

if TYPE_CHECKING:
    from legato.workflows.study_v2 import StudyV2

#: the paper's Table 1 (N = 432, mean NVE steps to failure; docs/reproduction.md)
PAPER_TABLE1 = {0.001: 4030, 0.0025: 6420, 0.005: 8480, 0.01: 4760, 0.025: 4210, 0.05: 3780}
#: failure reasons of the global window; every other reason is a local failure
GLOBAL_REASONS = ("temperature",)


def _mean_of(rows: list[dict], arm: str, seeds: list[int], column: str) -> float | None:
    vals = [
        float(r[column])
        for r in rows
        if r["model"] == arm and int(r["model_seed"]) in seeds and isinstance(r.get(column), (int, float))
    ]
    return float(np.mean(vals)) if vals else None


def rho_grid_rows(
    points: list[tuple[float, str]],
    seeds: list[int],
    runs: list[dict],
    models: list[dict],
    sharpness: list[dict],
    timestep_fs: float,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per grid point ``(rho, arm)`` (ρ = 0: the Adam arm compared against) over the
    models of ``seeds`` at the smallest size in ``runs``: failures (in NVT, local), mean NVE
    steps with a two-level bootstrap interval (a censored run counts at its budget), failures
    per atom·ns, the rate and paired time ratios against the ρ = 0 point, and the models' mean
    validation / test force RMSE and sharpness. Points without runs are left out."""
    n0 = min(r["n_atoms"] for r in runs)
    by: dict[str, dict[int, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in runs:
        if r["n_atoms"] == n0 and r["model_seed"] in seeds:
            by[r["model"]][r["model_seed"]][r["instance_seed"]] = r
    reference = next((arm for rho, arm in points if rho == 0), None)

    def steps(arm: str) -> list[dict[int, float]]:
        return [{i: max(float(r["t_failure_steps"]), 1.0) for i, r in m.items()} for m in by[arm].values()]

    def counts(arm: str) -> tuple[int, float]:
        flat = [r for m in by[arm].values() for r in m.values()]
        t_ns = [float(r["t_failure_steps"]) * timestep_fs * 1e-6 for r in flat]
        return sum(not r["censored"] for r in flat), exposure(n0, t_ns)

    out = []
    for rho, arm in points:
        if not by.get(arm):
            continue
        flat = [r for m in by[arm].values() for r in m.values()]
        failed = [r for r in flat if not r["censored"]]
        groups = [np.array(list(m.values())) for m in steps(arm)]
        events, expo = counts(arm)
        row: dict[str, Any] = {
            "rho": rho,
            "model": arm,
            "n_atoms": n0,
            "models": len(by[arm]),
            "runs": len(flat),
            "failed": len(failed),
            "failed_in_nvt": sum(r["stage"] == "nvt" for r in failed),
            "local": sum(r["reason"] not in GLOBAL_REASONS for r in failed),
            "mean_nve_steps": asdict(hierarchical_mean(groups, n_boot, seed, confidence)),
            "rate_per_atom_ns": asdict(poisson_rate(events, expo, confidence)),
            "val_forces_rmse_meV_A": _mean_of(models, arm, seeds, "val_forces_rmse_meV_A"),
            "test_forces_rmse_meV_A": _mean_of(models, arm, seeds, "forces_rmse_meV_A"),
            "sharpness_random": _mean_of(sharpness, arm, seeds, "value"),
            "sharpness_worst_case": _mean_of(sharpness, arm, seeds, "worst_case_value"),
            "paper_nve_steps": PAPER_TABLE1.get(rho),
        }
        if reference is not None and arm != reference and by.get(reference):
            ratio, p = rate_ratio(*counts(reference), events, expo, confidence)
            row["rate_ratio_vs_adam"] = {**asdict(ratio), "p_one_sided": p}
            paired = paired_on_shared(steps(reference), steps(arm), n_boot, seed, confidence)
            if paired is not None:
                row["paired_vs_adam"] = asdict(paired)
        out.append(row)
    return out


def best_rho(rows: list[dict]) -> float | None:
    """The SAM point with the longest mean NVE time (the paper's choice of ρ)."""
    sam = [r for r in rows if r["rho"] > 0]
    return max(sam, key=lambda r: r["mean_nve_steps"]["value"])["rho"] if sam else None


def _iv(d: dict | None, digits: int = 0) -> str:
    if not d:
        return "–"
    if not math.isfinite(d["value"]):
        return "n/a (no failures)"
    return f"{d['value']:,.{digits}f} [{d['lo']:,.{digits}f}, {d['hi']:,.{digits}f}]"


def _num(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def rho_markdown(rows: list[dict], seeds: list[int]) -> list[str]:
    """The Table-1 section of results.md."""
    if not rows:
        return []
    n0 = rows[0]["n_atoms"]
    lines = [
        "## Table 1: SAM's ρ",
        "",
        f"N = {n0}, models of seed(s) {', '.join(map(str, seeds))}; ρ = 0 is Allegro (Adam, same epochs). "
        "Mean NVE steps count a censored run at its budget; ratios against ρ = 0 are paired by seed "
        "and starting box (geometric mean of time ratios) and of failure rates.",
        "",
        "| ρ | runs | failed (NVT, local) | mean NVE steps [95 % CI] | failures per atom·ns "
        "| time ÷ Adam's, paired | rate ÷ Adam's (p, fewer) | val F RMSE | test F RMSE "
        "| worst-case sharpness | paper (N = 432) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paired = r.get("paired_vs_adam")
        rr = r.get("rate_ratio_vs_adam")
        rate = f"{_iv(rr, 2)} (p = {rr['p_one_sided']:.2f})" if rr else "–"
        lines.append(
            f"| {r['rho']:g} | {r['runs']} | {r['failed']} ({r['failed_in_nvt']}, {r['local']}) "
            f"| {_iv(r['mean_nve_steps'])} | {_iv(r['rate_per_atom_ns'], 2)} "
            f"| {_iv(paired['ratio'], 2) if paired else '–'} "
            f"| {rate} "
            f"| {_num(r['val_forces_rmse_meV_A'], '.1f')} | {_num(r['test_forces_rmse_meV_A'], '.1f')} "
            f"| {_num(r['sharpness_worst_case'], '.3g')} "
            f"| {r['paper_nve_steps'] if r['paper_nve_steps'] else '–'} |"
        )
    best = best_rho(rows)
    if best is not None:
        lines += ["", f"Longest mean NVE time among the SAM models: ρ = {best:g}."]
    return [*lines, ""]


def rho_figure(rows: list[dict]) -> Figure:
    """Mean NVE steps (with intervals) and force errors against ρ; Allegro as a band."""
    fig = Figure(figsize=(9.6, 4.0))
    ax_t, ax_e = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    sam = [r for r in rows if r["rho"] > 0]
    adam = next((r for r in rows if r["rho"] == 0), None)
    x = np.array([r["rho"] for r in sam])
    m = np.array([[r["mean_nve_steps"][k] for k in ("value", "lo", "hi")] for r in sam]).reshape(-1, 3)
    ax_t.errorbar(x, m[:, 0], yerr=[m[:, 0] - m[:, 1], m[:, 2] - m[:, 0]], fmt="o-", capsize=3, label="SAM")
    if adam is not None:
        a = adam["mean_nve_steps"]
        ax_t.axhline(a["value"], color="k", lw=1, label="Adam (ρ = 0)")
        ax_t.axhspan(a["lo"], a["hi"], color="k", alpha=0.12)
    ax_t.set(xscale="log", xlabel="SAM ρ", ylabel="mean NVE steps to failure", title="time to failure")
    ax_t.legend(fontsize=8)
    for key, label, style in (
        ("val_forces_rmse_meV_A", "validation", "o-"),
        ("test_forces_rmse_meV_A", "test", "s--"),
    ):
        pts = [(r["rho"], r[key]) for r in sam if r[key] is not None]
        if pts:
            ax_e.plot(*zip(*pts, strict=True), style, label=f"SAM, {label}")
        if adam is not None and adam[key] is not None:
            ax_e.axhline(adam[key], color="k", ls=style[1:], lw=1, label=f"Adam, {label}")
    ax_e.set(xscale="log", xlabel="SAM ρ", ylabel="force RMSE (meV/Å)", title="accuracy")
    ax_e.legend(fontsize=8)
    fig.tight_layout()
    return fig


def rho_grid_section(
    study: StudyV2, runs: list[dict], models: list[dict], sharpness: list[dict]
) -> list[dict]:
    """Table 1's rows when the study has a ρ grid (else none); writes ``table1_rho.png``."""
    cfg = study.cfg
    if not cfg.rho_arms():
        return []
    points = sorted([(0.0, "allegro"), (cfg.rho, "legato"), *((r, a) for a, r in cfg.rho_arms().items())])
    a = cfg.analysis
    grid = rho_grid_rows(
        points,
        cfg.grid_seeds(),
        runs,
        models,
        sharpness,
        cfg.tfail.timestep_fs,
        a.n_boot,
        a.confidence,
        a.seed,
    )
    if any(r["rho"] > 0 for r in grid):
        save_png(rho_figure(grid), study.out / "table1_rho.png", overwrite=True)
    return grid
