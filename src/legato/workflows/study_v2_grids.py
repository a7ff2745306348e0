"""Study v2's grids: Table 1 (time to failure, accuracy, sharpness against SAM's ρ) and
Table 4 (sharpness, accuracy, time to failure against Allegro's l_max).

A grid's points are arms trained from the same seeds (so the same training subsets and initial
weights) and run from the same starting boxes at the base size: Table 1 is the Allegro arm
(ρ = 0), the Legato arm (the study's ``rho``) and the ``rho_grid`` arms; Table 4 is the
``lmax_grid`` arms, the Allegro arm (the arms' own l_max) and the Legato arm. Every point is
compared with the Allegro arm, paired by seed (per-model measures) and by box (times).
:func:`grid_rows` is pure (rows in, rows out); the markdown and figure functions present them;
:func:`grid_sections` is the report's step.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from legato.stats.hierarchical import hierarchical_mean, paired_on_shared
from legato.stats.per_model import arm_summaries, paired_by_seed, rank_correlation
from legato.stats.rates import exposure, poisson_rate, rate_ratio
from legato.workflows.plots import save_png
from legato.workflows.study_v2_config import arm_label

if TYPE_CHECKING:
    from legato.workflows.study_v2 import StudyV2

#: the paper's Table 1 (N = 432, mean NVE steps to failure; docs/reproduction.md)
PAPER_TABLE1 = {0.001: 4030, 0.0025: 6420, 0.005: 8480, 0.01: 4760, 0.025: 4210, 0.05: 3780}
#: the paper's Table 4 (max over 1,000 random directions in the 0.05-ball): (l_max, SAM) -> value
PAPER_TABLE4 = {(0, False): 5.0e-4, (1, False): 3.2e-4, (2, False): 9.8e-5, (1, True): 1.2e-4}
#: failure reasons of the global window; every other reason is a local failure
GLOBAL_REASONS = ("temperature",)
#: per-model measures of a grid row: (row key, table, column)
MEASURES = (
    ("val_forces_rmse_meV_A", "models", "val_forces_rmse_meV_A"),
    ("test_forces_rmse_meV_A", "models", "forces_rmse_meV_A"),
    ("sharpness_random", "sharpness", "value"),
    ("sharpness_worst_case", "sharpness", "worst_case_value"),
)


def _per_model(
    table: list[dict], column: str, arms: set[str], seeds: list[int]
) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for r in table:
        if r["model"] in arms and int(r["model_seed"]) in seeds and isinstance(r.get(column), (int, float)):
            out.setdefault(str(r["model"]), {})[int(r["model_seed"])] = float(r[column])
    return out


def grid_rows(
    points: list[tuple[float, str]],
    reference: str,
    seeds: list[int],
    runs: list[dict],
    models: list[dict],
    sharpness: list[dict],
    timestep_fs: float,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per grid point ``(x, arm)`` (x: the grid's value, ρ or l_max) over the models of
    ``seeds`` at the smallest size in ``runs``: failures (in NVT, local), mean NVE steps with a
    two-level bootstrap interval (a censored run counts at its budget), failures per atom·ns,
    the rate and box-paired time ratios against the ``reference`` arm, and each per-model
    measure (validation / test force RMSE, random and worst-case sharpness): its mean over the
    models (bootstrap interval from 2 models) and its ratio to the reference paired by seed.
    Points without runs are left out."""
    n0 = min(r["n_atoms"] for r in runs)
    by: dict[str, dict[int, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in runs:
        if r["n_atoms"] == n0 and r["model_seed"] in seeds:
            by[r["model"]][r["model_seed"]][r["instance_seed"]] = r
    arms = {arm for _, arm in points}
    tables = {"models": models, "sharpness": sharpness}
    measures = {key: _per_model(tables[t], col, arms, seeds) for key, t, col in MEASURES}

    def steps(arm: str) -> list[dict[int, float]]:
        return [{i: max(float(r["t_failure_steps"]), 1.0) for i, r in m.items()} for m in by[arm].values()]

    def counts(arm: str) -> tuple[int, float]:
        flat = [r for m in by[arm].values() for r in m.values()]
        t_ns = [float(r["t_failure_steps"]) * timestep_fs * 1e-6 for r in flat]
        return sum(not r["censored"] for r in flat), exposure(n0, t_ns)

    out = []
    for x, arm in points:
        if not by.get(arm):
            continue
        flat = [r for m in by[arm].values() for r in m.values()]
        failed = [r for r in flat if not r["censored"]]
        events, expo = counts(arm)
        row: dict[str, Any] = {
            "x": x,
            "model": arm,
            "label": arm_label(arm),
            "n_atoms": n0,
            "models": len(by[arm]),
            "runs": len(flat),
            "failed": len(failed),
            "failed_in_nvt": sum(r["stage"] == "nvt" for r in failed),
            "local": sum(r["reason"] not in GLOBAL_REASONS for r in failed),
            "mean_nve_steps": asdict(
                hierarchical_mean([np.array(list(m.values())) for m in steps(arm)], n_boot, seed, confidence)
            ),
            "rate_per_atom_ns": asdict(poisson_rate(events, expo, confidence)),
        }
        for key, values in measures.items():
            summary = (
                arm_summaries({arm: values[arm]}, n_boot, seed, confidence)[arm] if arm in values else None
            )
            row[key] = float(np.mean(list(values[arm].values()))) if summary else None
            row[f"{key}_ci"] = summary["mean"] if summary else None
            vs = [c for c in paired_by_seed(values, arm, n_boot, seed, confidence) if c["other"] == reference]
            row[f"{key}_vs_reference"] = vs[0] if vs else None
        if arm != reference and by.get(reference):
            ratio, p = rate_ratio(*counts(reference), events, expo, confidence)
            row["rate_ratio_vs_reference"] = {**asdict(ratio), "p_one_sided": p}
            paired = paired_on_shared(steps(reference), steps(arm), n_boot, seed, confidence)
            if paired is not None:
                row["paired_vs_reference"] = asdict(paired)
        out.append(row)
    return out


def grid_trends(
    points: list[tuple[float, str]],
    seeds: list[int],
    runs: list[dict],
    models: list[dict],
    sharpness: list[dict],
) -> dict[str, dict | None]:
    """Spearman rank correlations over a grid's models ((arm, seed) of ``points`` × ``seeds``) at
    the smallest size in ``runs``: of the grid value x with each model's mean NVE steps (a
    censored run at its budget), test force RMSE and worst-case sharpness, and of the mean NVE
    steps with the force error and the sharpness (None where fewer than 4 models have both)."""
    n0 = min(r["n_atoms"] for r in runs)
    x_of = dict((arm, x) for x, arm in points)
    steps: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in runs:
        if r["n_atoms"] == n0 and r["model"] in x_of and r["model_seed"] in seeds:
            steps[(r["model"], r["model_seed"])].append(float(r["t_failure_steps"]))
    per_model = {
        "x": {(arm, s): x_of[arm] for arm in x_of for s in seeds},
        "mean_nve_steps": {k: float(np.mean(v)) for k, v in steps.items()},
    }
    for key, table, column in MEASURES:
        if key not in ("test_forces_rmse_meV_A", "sharpness_worst_case"):
            continue
        tab = models if table == "models" else sharpness
        by_arm = _per_model(tab, column, set(x_of), seeds)
        per_model[key] = {(arm, s): v for arm, vals in by_arm.items() for s, v in vals.items()}
    return {
        f"{a}_vs_{b}": rank_correlation(per_model[a], per_model[b])
        for a, b in (
            ("x", "mean_nve_steps"),
            ("x", "test_forces_rmse_meV_A"),
            ("x", "sharpness_worst_case"),
            ("test_forces_rmse_meV_A", "mean_nve_steps"),
            ("sharpness_worst_case", "mean_nve_steps"),
        )
    }


def trend_markdown(trends: dict[str, dict | None], x_name: str) -> list[str]:
    """The rank correlations of :func:`grid_trends` as a markdown table."""
    names = {
        "x": x_name,
        "mean_nve_steps": "mean NVE steps",
        "test_forces_rmse_meV_A": "test F RMSE",
        "sharpness_worst_case": "worst-case sharpness",
    }
    lines = ["| over the grid's models | Spearman (p, models) |", "|---|---|"]
    for key, c in trends.items():
        a, _, b = key.partition("_vs_")
        cell = f"{c['spearman']:.2f} (p = {c['p']:.2g}, {c['models']})" if c else "n/a"
        lines.append(f"| {names[a]} vs {names[b]} | {cell} |")
    return lines


def best_rho(rows: list[dict]) -> float | None:
    """The SAM point of Table 1 with the longest mean NVE time (the paper's choice of ρ)."""
    sam = [r for r in rows if r["x"] > 0]
    return max(sam, key=lambda r: r["mean_nve_steps"]["value"])["x"] if sam else None


def _iv(d: dict | None, digits: int = 0, fmt: str = "f") -> str:
    if not d:
        return "–"
    if not math.isfinite(d["value"]):
        return "n/a (no failures)"
    f = f",.{digits}{fmt}" if fmt == "f" else f".{digits}{fmt}"
    return f"{d['value']:{f}} [{d['lo']:{f}}, {d['hi']:{f}}]"


def _num(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _vs(r: dict, key: str) -> str:
    """A per-model measure's ratio to the reference, paired by seed, with its win count."""
    c = r.get(f"{key}_vs_reference")
    if not c:
        return "–"
    return f"{_iv(c['ratio'], 2)}, lower in {c['reference_lower']} of {c['seeds']}"


def _common(r: dict) -> tuple[str, str, str, str]:
    paired, rr = r.get("paired_vs_reference"), r.get("rate_ratio_vs_reference")
    return (
        f"{r['failed']} ({r['failed_in_nvt']}, {r['local']})",
        _iv(r["mean_nve_steps"]),
        _iv(paired["ratio"], 2) if paired else "–",
        f"{_iv(rr, 2)} (p = {rr['p_one_sided']:.2f})" if rr else "–",
    )


def rho_markdown(rows: list[dict], seeds: list[int]) -> list[str]:
    """The Table-1 section of results.md."""
    if not rows:
        return []
    lines = [
        "## Table 1: SAM's ρ",
        "",
        f"N = {rows[0]['n_atoms']}, models of seed(s) {', '.join(map(str, seeds))}; ρ = 0 is Allegro (Adam, "
        "same epochs). Mean NVE steps count a censored run at its budget; time ratios against ρ = 0 "
        "are paired by seed and starting box (geometric mean), rate ratios pool the runs; "
        "per-model measures are means over the seeds.",
        "",
        "| ρ | runs | failed (NVT, local) | mean NVE steps [95 % CI] | failures per atom·ns "
        "| time ÷ Adam's, paired | rate ÷ Adam's (p, fewer) | val F RMSE | test F RMSE "
        "| worst-case sharpness | paper (N = 432) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        failed, mean, paired, rate = _common(r)
        lines.append(
            f"| {r['x']:g} | {r['runs']} | {failed} | {mean} | {_iv(r['rate_per_atom_ns'], 2)} | {paired} "
            f"| {rate} | {_num(r['val_forces_rmse_meV_A'], '.1f')} "
            f"| {_num(r['test_forces_rmse_meV_A'], '.1f')} "
            f"| {_num(r['sharpness_worst_case'], '.3g')} | {PAPER_TABLE1.get(r['x'], '–')} |"
        )
    best = best_rho(rows)
    if best is not None:
        lines += ["", f"Longest mean NVE time among the SAM models: ρ = {best:g}."]
    return [*lines, ""]


def lmax_markdown(rows: list[dict], seeds: list[int]) -> list[str]:
    """The Table-4 section of results.md."""
    if not rows:
        return []
    lines = [
        "## Table 4: Allegro's l_max",
        "",
        f"N = {rows[0]['n_atoms']}, models of seed(s) {', '.join(map(str, seeds))}. Sharpness at the "
        "study's radius: the worst case in the ball (gradient ascent) and the maximum over random "
        "directions (the paper's estimate); ratios to Allegro at the arms' own l_max are paired by "
        "seed (per-model measures) or by seed and box (times).",
        "",
        "| model | l_max | worst-case sharpness [95 % CI] | ÷ Allegro's, paired | random-direction max "
        "| ÷ Allegro's, paired | val F RMSE | test F RMSE | failed (NVT, local) | mean NVE steps [95 % CI] "
        "| time ÷ Allegro's, paired | paper (random max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        failed, mean, paired, _ = _common(r)
        sam = r["model"].startswith("legato")
        wc = (
            _iv(r["sharpness_worst_case_ci"], 2, "e")
            if r["sharpness_worst_case_ci"]
            else _num(r["sharpness_worst_case"], ".2e")
        )
        rnd = _num(r["sharpness_random"], ".2e")
        paper = PAPER_TABLE4.get((int(r["x"]), sam))
        lines.append(
            f"| {r['label']} | {int(r['x'])} | {wc} | {_vs(r, 'sharpness_worst_case')} | {rnd} "
            f"| {_vs(r, 'sharpness_random')} | {_num(r['val_forces_rmse_meV_A'], '.1f')} "
            f"| {_num(r['test_forces_rmse_meV_A'], '.1f')} | {failed} | {mean} | {paired} "
            f"| {'–' if paper is None else f'{paper:.1e}'} |"
        )
    return [*lines, ""]


def rho_figure(rows: list[dict]) -> Figure:
    """Mean NVE steps (with intervals) and force errors against ρ; Allegro as a band."""
    fig = Figure(figsize=(9.6, 4.0))
    ax_t, ax_e = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    sam = [r for r in rows if r["x"] > 0]
    adam = next((r for r in rows if r["x"] == 0), None)
    x = np.array([r["x"] for r in sam])
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
        pts = [(r["x"], r[key]) for r in sam if r[key] is not None]
        if pts:
            ax_e.plot(*zip(*pts, strict=True), style, label=f"SAM, {label}")
        if adam is not None and adam[key] is not None:
            ax_e.axhline(adam[key], color="k", ls=style[1:], lw=1, label=f"Adam, {label}")
    ax_e.set(xscale="log", xlabel="SAM ρ", ylabel="force RMSE (meV/Å)", title="accuracy")
    ax_e.legend(fontsize=8)
    fig.tight_layout()
    return fig


def lmax_figure(rows: list[dict]) -> Figure:
    """Sharpness (per model and mean) and mean NVE steps against l_max; Legato marked apart."""
    fig = Figure(figsize=(9.6, 4.0))
    ax_s, ax_t = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    adam = sorted((r for r in rows if not r["model"].startswith("legato")), key=lambda r: r["x"])
    sam = [r for r in rows if r["model"].startswith("legato")]
    for key, label, style in (
        ("sharpness_worst_case", "worst case", "o-"),
        ("sharpness_random", "random max", "s--"),
    ):
        pts = [(r["x"], r[key]) for r in adam if r[key] is not None]
        if pts:
            ax_s.plot(*zip(*pts, strict=True), style, color="tab:red", label=f"Allegro, {label}")
        pts = [(r["x"], r[key]) for r in sam if r[key] is not None]
        if pts:
            ax_s.plot(*zip(*pts, strict=True), style[0], color="tab:blue", ms=9, label=f"Legato, {label}")
    ax_s.set(
        yscale="log", xlabel="l_max", ylabel="sharpness (loss increase)", title="sharpness (mean over seeds)"
    )
    ax_s.legend(fontsize=8)
    for group, color, label in ((adam, "tab:red", "Allegro"), (sam, "tab:blue", "Legato")):
        if group:
            x = np.array([r["x"] for r in group], float) + (0.06 if color == "tab:blue" else 0.0)
            m = np.array([[r["mean_nve_steps"][k] for k in ("value", "lo", "hi")] for r in group])
            ax_t.errorbar(
                x,
                m[:, 0],
                yerr=[m[:, 0] - m[:, 1], m[:, 2] - m[:, 0]],
                fmt="o",
                capsize=3,
                color=color,
                label=label,
            )
    ax_t.set(xlabel="l_max", ylabel="mean NVE steps to failure", title="time to failure")
    ax_t.legend(fontsize=8)
    for ax in (ax_s, ax_t):
        ax.set_xticks(sorted({int(r["x"]) for r in rows}))
    fig.tight_layout()
    return fig


def grid_sections(
    study: StudyV2, runs: list[dict], models: list[dict], sharpness: list[dict]
) -> tuple[dict[str, list[dict]], list[str]]:
    """The report's Table 1 and Table 4 (each when the study has its grid): rows by table,
    markdown lines; writes ``table1_rho.png`` / ``table4_lmax.png``."""
    cfg, a = study.cfg, study.cfg.analysis
    base = cfg.base_lmax()
    tables = {
        "rho_grid": (
            [(0.0, "allegro"), (cfg.rho, "legato"), *((r, arm) for arm, r in cfg.rho_arms().items())],
            rho_markdown,
            rho_figure,
            "table1_rho.png",
        ),
        "lmax_grid": (
            [*((float(v), arm) for arm, v in cfg.lmax_arms().items()), (base, "allegro"), (base, "legato")],
            lmax_markdown,
            lmax_figure,
            "table4_lmax.png",
        ),
    }
    rows_by, lines = {}, []
    for grid, (points, to_markdown, to_figure, png) in tables.items():
        if not (cfg.rho_arms() if grid == "rho_grid" else cfg.lmax_arms()):
            continue
        seeds = cfg.grid_seeds(grid)
        points = sorted(points, key=lambda p: (p[0], p[1] == "legato"))
        rows = grid_rows(
            points,
            "allegro",
            seeds,
            runs,
            models,
            sharpness,
            cfg.tfail.timestep_fs,
            a.n_boot,
            a.confidence,
            a.seed,
        )
        trends = grid_trends(points, seeds, runs, models, sharpness)
        rows_by[grid], rows_by[f"{grid}_trends"] = rows, trends
        lines += to_markdown(rows, seeds)
        lines += [*trend_markdown(trends, "ρ" if grid == "rho_grid" else "l_max"), ""]
        if len(rows) > 1:
            save_png(to_figure(rows), study.out / png, overwrite=True)
    return rows_by, lines
