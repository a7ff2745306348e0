"""Analysis stages of the robustness study and its report (used by legato.workflows.study).

- :func:`scaling_outputs` — merged failure tables, the scaling fits and Figs. 1, 2 and the
  survival curves (:func:`legato.workflows.scaling.run_scaling`);
- :func:`force_errors` — energy / force errors on the test frames, with percentile-bootstrap
  CIs over frames and the paired Legato/Allegro force-RMSE ratio;
- :func:`sharpness_jobs`, :func:`landscape` — ``legato.train.sharpness`` / ``landscape``;
- :func:`write_report` — ``results.json`` and ``results.md``: our numbers next to the paper's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from legato.errors import LegatoError
from legato.fileio import atomic_write_text
from legato.stats.failures import FailureRecord, FailureTable, merge_tables, write_failure_table
from legato.stats.scaling import NOT_RESOLVED, beta_verdict, tfail_verdict
from legato.workflows.jobs import model_label, model_name, run_jobs
from legato.workflows.plots import plot_outliers, plot_survival
from legato.workflows.rho_search import ensemble_summary, format_rho_markdown
from legato.workflows.scaling import ScalingReport, run_scaling
from legato.workflows.staged import csv_text
from legato.workflows.tfail import parse_sizes, read_outliers, replication_name

if TYPE_CHECKING:
    from legato.workflows.study import Study

#: the paper's numbers (allegro-legato.md): Fig. 2, §4.3, Table 4
PAPER = {
    "beta": {"Allegro": 0.29, "Legato": 0.14},
    "t_failure_27648": {"Allegro": 5500, "Legato": 14600},
    "forces_rmse_meV_A": {"Allegro": 14.7, "Legato": 15.9},
    "forces_mae_meV_A": {"Allegro": 10.7, "Legato": 11.6},
    "sharpness": {"Allegro": 3.2e-4, "Legato": 1.2e-4},
}


def _main_models(study: Study) -> list[float | None]:
    return [None, study.legato_rho()]


def _kind(label: str) -> str:
    return "Allegro" if label == "Allegro" else "Legato"


# ----------------------------------------------------------------------------- scaling
def scaling_outputs(study: Study) -> dict:
    """Fits and figures for Allegro and the chosen Legato (all sizes)."""
    cfg = study.cfg
    out = study.out / "scaling"
    out.mkdir(parents=True, exist_ok=True)
    rhos = _main_models(study)
    table = merge_tables(study.table(rho) for rho in rhos)
    write_failure_table(table, out / "failures_all.csv", overwrite=True)
    fit = FailureTable([r for r in table if r.t_failure_steps > 0], table.extra_columns)
    nvt = len(table) - len(fit)
    write_failure_table(fit, out / "failures_fit.csv", overwrite=True)
    # Fig. 1: force-outlier counts of a few runs per model at the largest size
    largest = replication_name(max(parse_sizes(cfg.tfail.sizes), key=lambda r: r[0] * r[1] * r[2]))
    rows = []
    for rho in rhos:
        runs = read_outliers(study.tfail_dir(rho, largest) / "outliers.csv")
        seeds = sorted({int(r["seed"]) for r in runs})[: cfg.analysis.fig1_instances]
        rows += [
            {"step": r["step"], "outliers": r["outliers"], "model": model_label(rho), "run": r["run"]}
            for r in runs
            if int(r["seed"]) in seeds
        ]
    fig1 = None
    if rows:
        fig1 = out / "fig1_outliers.csv"
        atomic_write_text(fig1, csv_text(rows, ["step", "outliers", "model", "run"]), overwrite=True)
    a = cfg.analysis
    ensembles = [
        ensemble_summary(table.select(model=m, n_atoms=n), a.confidence)
        for m in table.models()
        for n in table.sizes(m)
    ]
    if fig1:
        sigma = cfg.tfail.outlier_sigma
        plot_outliers(fig1, out / "fig1_outliers.png", sigma, overwrite=True, nvt_steps=cfg.tfail.nvt_steps)
    if len(fit) == 0 or len(fit.sizes()) < 2:
        note = "no fit: fewer than two sizes have runs that reached NVE"
        plot_survival(table, out / "survival.png", confidence=a.confidence, overwrite=True)
        study.log(f"  {note}")
        return {"nvt_failures_excluded": nvt, "models": [], "ensembles": ensembles, "report": note}
    rep = _run_scaling(study, out / "failures_fit.csv", out, "NVE steps; runs that failed in NVT left out")
    # the same fits on the clock of the whole run (NVT + NVE steps): no run is left out
    total = FailureTable(
        [
            FailureRecord(
                r.model,
                r.n_atoms,
                r.seed,
                int(r.extra["t_total_steps"]),
                int(r.extra["t_total_steps"]) * cfg.tfail.timestep_fs,
                r.reason,
                r.censored,
                r.extra,
            )
            for r in table
        ],
        table.extra_columns,
    )
    (out / "total_clock").mkdir(exist_ok=True)
    write_failure_table(total, out / "total_clock" / "failures_total.csv", overwrite=True)
    # figures labelled with this clock (tfail tables count NVE steps)
    rep_total = _run_scaling(
        study, out / "total_clock" / "failures_total.csv", out / "total_clock", "NVT+NVE steps", relabel=True
    )
    return {
        "nvt_failures_excluded": nvt,
        "models": rep.doc["models"],
        "models_total_clock": rep_total.doc["models"],
        "ensembles": ensembles,
        "report": rep.printed,
    }


def _run_scaling(study: Study, table: Path, out: Path, clock: str, relabel: bool = False) -> ScalingReport:
    """:func:`run_scaling` on one table with the study's analysis settings; its report (the
    text of ``legato scaling``) goes to ``out/report.txt`` and the log, under a line naming
    its clock. With ``relabel`` the figures' time axes name ``clock``."""
    a = study.cfg.analysis
    rep = run_scaling(
        [table],
        out,
        confidence=a.confidence,
        n_boot=a.n_boot,
        seed=a.seed,
        weibull_ci=a.weibull_ci,
        outliers=None,  # Fig. 1 is drawn by scaling_outputs (it marks the switch to NVE)
        overwrite=True,
        clock=clock if relabel else None,
    )
    atomic_write_text(out / "report.txt", rep.printed, overwrite=True)
    study.log(f"  -- clock: {clock} --")
    study.log(rep.printed.rstrip())
    return rep


# ----------------------------------------------------------------------------- errors
def frame_errors(model, frames: list, batch_size: int = 4) -> dict[str, np.ndarray]:
    """Per-frame error sums [n_frames]: force squared / absolute component errors and their
    count, per-atom energy error (meV, meV/Å units applied later)."""
    import torch

    from legato.data import keys as K
    from legato.train.evaluation import model_batches

    f_sq, f_abs, f_n, e_err = [], [], [], []
    for batch in model_batches(model, frames, batch_size, progress=False):
        out = model(batch)
        n_fr = int(batch[K.NUM_ATOMS].numel())
        d = (out[K.FORCES].detach() - batch[K.FORCES]).double()  # [n_atoms, 3]
        b = batch[K.BATCH]
        f_sq.append(torch.zeros(n_fr, dtype=torch.float64).index_add_(0, b, d.pow(2).sum(1)))
        f_abs.append(torch.zeros(n_fr, dtype=torch.float64).index_add_(0, b, d.abs().sum(1)))
        f_n.append(3.0 * batch[K.NUM_ATOMS].double())
        de = out[K.TOTAL_ENERGY].detach().double() - batch[K.TOTAL_ENERGY].double()
        e_err.append(de / batch[K.NUM_ATOMS].double())
    cat = lambda xs: torch.cat(xs).numpy()  # noqa: E731
    return {"f_sq": cat(f_sq), "f_abs": cat(f_abs), "f_n": cat(f_n), "e_err": cat(e_err)}


def error_metrics(e: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    """[..., 4]: force RMSE, force MAE (meV/Å), energy RMSE, MAE (meV/atom) over frames idx."""
    n = e["f_n"][idx].sum(-1)
    return 1000.0 * np.stack(
        [
            np.sqrt(e["f_sq"][idx].sum(-1) / n),
            e["f_abs"][idx].sum(-1) / n,
            np.sqrt((e["e_err"][idx] ** 2).mean(-1)),
            np.abs(e["e_err"][idx]).mean(-1),
        ],
        -1,
    )


def force_errors(study: Study) -> dict:
    """Test-set errors of every trained model with 95 % bootstrap CIs (frames resampled)."""
    from legato.data import read_frames
    from legato.models import load_model

    cfg = study.cfg
    frames = read_frames(study.data_dir / "test.extxyz")
    if cfg.errors.max_frames:
        frames = frames[: cfg.errors.max_frames]
    rng = np.random.default_rng(cfg.analysis.seed)
    boot = rng.integers(0, len(frames), size=(cfg.errors.n_boot, len(frames)))
    q = [(1 - cfg.analysis.confidence) / 2, (1 + cfg.analysis.confidence) / 2]
    per_frame, rows = {}, []
    for rho in study.models():
        model = load_model(study.model_path(rho))
        e = frame_errors(model, frames, cfg.errors.batch_size)
        per_frame[rho] = e
        point = error_metrics(e, np.arange(len(frames)))
        lo, hi = np.quantile(error_metrics(e, boot), q, axis=0)
        names = ["forces_rmse_meV_A", "forces_mae_meV_A", "energy_rmse_meV_atom", "energy_mae_meV_atom"]
        row = {"model": model_label(rho), "name": model_name(rho), "rho": rho, "n_frames": len(frames)}
        for k, name in enumerate(names):
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = point[k], lo[k], hi[k]
        rows.append(row)
        study.log(
            f"  {model_label(rho)}: test force RMSE {point[0]:.1f} "
            f"[{lo[0]:.1f}, {hi[0]:.1f}] meV/Å, MAE {point[1]:.1f} meV/Å"
        )
    a, lg = per_frame[None], per_frame[study.legato_rho()]
    ratio = error_metrics(lg, np.arange(len(frames)))[0] / error_metrics(a, np.arange(len(frames)))[0]
    r_boot = error_metrics(lg, boot)[:, 0] / error_metrics(a, boot)[:, 0]
    r_lo, r_hi = np.quantile(r_boot, q)
    atomic_write_text(study.out / "force_errors.csv", csv_text(rows), overwrite=True)
    return {"rows": rows, "legato_over_allegro_rmse": float(ratio), "ratio_ci": [float(r_lo), float(r_hi)]}


# ----------------------------------------------------------------------------- sharpness
def sharpness_job(
    model_path: str,
    data: str,
    max_frames: int,
    batch_size: int,
    rho: float,
    samples: int,
    stat: str,
    dist: str,
    seed: int,
    pga_steps: int = 0,
    run_dir: str | None = None,
) -> dict:
    """Sharpness of one model on (up to ``max_frames``) of its training frames (the split in
    ``run_dir``, by default the run folder the model file records): the
    random-direction estimate and, with ``pga_steps`` > 0, the worst case in the same ball
    (projected gradient ascent; keys ``worst_case_value``, ``worst_case_eps_norm``)."""
    from legato.models import load_model
    from legato.train.evaluation import model_batches, model_loss_spec, select_frames
    from legato.train.sharpness import sharpness, worst_case_sharpness

    model = load_model(model_path)
    frames = select_frames(model, data, subset="train", run_dir=run_dir)
    batches = model_batches(model, frames, batch_size, max_frames=max_frames, progress=False)
    res = sharpness(
        model,
        batches,
        model_loss_spec(model),
        rho=rho,
        samples=samples,
        stat=stat,
        dist=dist,
        seed=seed,
        progress=False,
    )
    out = res.as_dict()
    if pga_steps > 0:
        wc = worst_case_sharpness(
            model, batches, model_loss_spec(model), rho=rho, steps=pga_steps, seed=seed, progress=False
        ).as_dict()
        out.update(
            {"worst_case_value": wc["value"], "worst_case_eps_norm": wc["eps_norm"], "pga_steps": pga_steps}
        )
    return out


def sharpness_kwargs(cfg: Any, model_path: Path, data: Path, run_dir: Path | None = None) -> dict:
    """Arguments of :func:`sharpness_job` from a study config's sharpness section."""
    s = cfg.sharpness
    return {
        "run_dir": None if run_dir is None else str(run_dir),
        "model_path": str(model_path),
        "data": str(data),
        "max_frames": s.max_frames,
        "batch_size": cfg.errors.batch_size,
        "rho": s.rho,
        "samples": s.samples,
        "stat": s.stat,
        "dist": s.dist,
        "seed": s.seed,
        "pga_steps": s.pga_steps,
    }


def sharpness_jobs(study: Study) -> dict:
    cfg, s = study.cfg, study.cfg.sharpness
    rhos = study.models() if s.all_models else _main_models(study)
    jobs = [
        (
            f"sharpness_{model_name(rho)}",
            sharpness_job,
            sharpness_kwargs(cfg, study.model_path(rho), study.data_dir / "train_val.extxyz"),
        )
        for rho in rhos
    ]
    res = run_jobs(jobs, cfg.workers, cfg.threads_per_worker, study.logs, study.log)
    rows = []
    for rho in rhos:
        r = res[f"sharpness_{model_name(rho)}"]
        rows.append({"model": model_label(rho), "rho_sam": rho, **r})
        study.log(
            f"  {model_label(rho)}: sharpness ({r['stat']}, {r['dist']}, radius "
            f"{r['rho']:g}) {r['value']:.3g} ± {r['stderr']:.2g}, mean {r['mean']:.3g}"
        )
    atomic_write_text(study.out / "sharpness.csv", csv_text(rows), overwrite=True)
    return {"rows": rows}


def landscape(study: Study) -> dict:
    """L(w + t·d) of Allegro and Legato along the same seeded random direction."""
    from legato.models import load_model
    from legato.train import landscape as ls
    from legato.train.evaluation import model_batches, model_loss_spec, select_frames

    c = study.cfg.landscape
    ts = np.linspace(-c.t_max, c.t_max, c.points)
    curves = {}
    for rho in _main_models(study):
        model = load_model(study.model_path(rho))
        frames = select_frames(model, study.data_dir / "train_val.extxyz", subset="train")
        batches = model_batches(
            model, frames, study.cfg.errors.batch_size, max_frames=c.max_frames, progress=False
        )
        d = ls.random_direction(model, seed=c.seed, normalize=c.normalize, scale=c.scale)
        curves[model_label(rho)] = ls.loss_curve(
            model, batches, model_loss_spec(model), d, ts, progress=False
        )
    ls.write_csv(study.out / "landscape.csv", ts, curves)
    ls.plot(
        study.out / "landscape.png",
        ts,
        curves,
        f"Loss along a random direction ({c.normalize} normalised, seed {c.seed})",
    )
    return {"t": ts.tolist(), "curves": {k: v.tolist() for k, v in curves.items()}}


# ----------------------------------------------------------------------------- report
def _f(x: Any, nd: int = 1) -> str:
    """A number for the report; inf (e.g. a median not reached) is "n.r."."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "n.r."
    return f"{x:.{nd}f}"


def _ci(v: float | None, ci: list | tuple | None, nd: int = 2) -> str:
    if v is None:
        return "—"
    return f"{_f(v, nd)} [{_f(ci[0], nd)}, {_f(ci[1], nd)}]" if ci else _f(v, nd)


def _beta(models: list[dict], label: str, method: str) -> tuple[float, list] | None:
    for m in models:
        if m["model"] == label and method in m["fits"]:
            f = m["fits"][method]
            lo, hi = (math.inf if x is None else x for x in f["beta_ci"])
            return f["beta"], [lo, hi]
    return None


def verdicts(study: Study) -> list[tuple[bool, str]]:
    """Time to failure per size and β by each fit, Legato against Allegro: (resolved in the
    paper's direction, one line with the numbers and the verdict)."""

    if not study.done("scaling") or not study.result("scaling")["ensembles"]:
        return []
    la, ll = model_label(None), model_label(study.legato_rho())
    conf = study.cfg.analysis.confidence
    res = study.result("scaling")
    sizes: dict[str, dict[int, dict]] = {}
    for e in res["ensembles"]:
        sizes.setdefault(e["label"], {})[e["n_atoms"]] = e
    out = []
    for n, sa in sorted(sizes.get(la, {}).items()):
        sl = sizes.get(ll, {}).get(n)
        if sl is not None:
            ok, text = tfail_verdict(sa, sl, conf)
            out.append(
                (
                    ok,
                    f"mean t_failure at N = {n}: Legato {_f(sl['mean'], 0)} ± {_f(sl['sem'], 0)} vs "
                    f"Allegro {_f(sa['mean'], 0)} ± {_f(sa['sem'], 0)} NVE steps (± s.e.) — {text}.",
                )
            )
    for fits, method, name in (
        (res["models"], "weibull", "Weibull ML (uses censored runs), NVE clock"),
        (res["models"], "means", "log-log fit of means (the paper's), NVE clock"),
        (res.get("models_total_clock", []), "weibull", "Weibull ML, NVT+NVE clock (no run left out)"),
    ):
        ba, bl = _beta(fits, la, method), _beta(fits, ll, method)
        if ba is None or bl is None:
            out.append((False, f"β by {name}: not available for both models."))
            continue
        ok, text = beta_verdict(ba, bl)
        out.append(
            (
                ok,
                f"β by {name}: Legato {_ci(bl[0], bl[1])} vs Allegro {_ci(ba[0], ba[1])} "
                f"(paper 0.14 vs 0.29) — {text}.",
            )
        )
    return out


def claims(study: Study) -> list[str]:
    """Plain statements of which of the paper's claims our numbers support, each computed
    from the numbers (sign and order of the estimates, overlap of their intervals)."""

    out = [text for _, text in verdicts(study)]
    la, ll = model_label(None), model_label(study.legato_rho())
    if study.done("errors") and study.result("errors"):
        e = study.result("errors")
        r, (lo, hi) = e["legato_over_allegro_rmse"], e["ratio_ci"]
        out.append(
            f"Accuracy cost of SAM (paper: Legato's force RMSE ≈ 8 % higher): "
            f"Legato/Allegro test force RMSE = {r:.3f} [{lo:.3f}, {hi:.3f}]."
        )
    if study.done("sharpness") and study.result("sharpness"):
        rows = {r["model"]: r for r in study.result("sharpness")["rows"]}
        if la in rows and ll in rows:
            a, b = rows[la], rows[ll]
            verdict = (
                "holds"
                if b["value"] + 2 * b["stderr"] < a["value"] - 2 * a["stderr"]
                else (
                    f"{NOT_RESOLVED}: same direction, within 2 s.e."
                    if b["value"] < a["value"]
                    else "does not hold"
                )
            )
            out.append(
                f"Lower sharpness with SAM (paper Table 4: 1.2e-4 vs 3.2e-4): "
                f"{b['value']:.3g} vs {a['value']:.3g} — {verdict}."
            )
    if study.done("rho") and study.result("rho")["best_rho"] is not None:
        out.append(
            f"Best ρ of the grid by mean t_failure: {study.result('rho')['best_rho']:g} (paper: 0.005)."
        )
    return out


def write_report(study: Study) -> dict:
    """``results.json`` (every stage's result and wall time) and ``results.md``."""
    cfg = study.cfg
    st = study.state
    t = cfg.tfail
    lines = ["# Robustness study: Allegro vs Allegro-Legato", ""]
    d = st["data"]["result"]
    lines += [
        f"Data: `{d['data']}` ({d['frames']} frames: {d['train_val']} train+validation, "
        f"{d['test']} test; {d['split']}). Base box: {d['base']}, {d['base_n_atoms']} atoms.",
        f"MD: T = {t.temperature_K:g} K, Δt = {t.timestep_fs:g} fs, {t.nvt_steps} NVT steps "
        f"then NVE up to {t.max_steps} steps "
        f"(per size: {t.max_steps_by_size or 'the same'}); failure = T outside "
        f"{t.temperature_window_K} (auto = [T/2, 3T/2]), closest pair < {t.min_distance_A} Å, "
        f"non-finite; checks every {t.check_every} steps; {t.instances} instances per size; "
        f"sizes {t.sizes}. t_failure in NVE steps.",
        "",
    ]
    if "rho" in st:
        lines += [
            "## Table 1: SAM ρ vs t_failure at the base size",
            "",
            format_rho_markdown(st["rho"]["result"]["rows"]),
            "",
        ]
    if "scaling" in st:
        res = st["scaling"]["result"]
        lines += [
            "## Fig. 2: t_failure per size (NVE steps)",
            "",
            "| model | N | runs | failed in NVT / NVE | alive at budget | mean ± s.e. "
            "| KM median [95 % CI] |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in res["ensembles"]:
            lines.append(
                f"| {e['label']} | {e['n_atoms']} | {e['n']} | {e['nvt_failures']} / "
                f"{e['failed'] - e['nvt_failures']} | {e['censored']} | {_f(e['mean'], 0)} ± "
                f"{_f(e['sem'], 0)} | {_f(e['median'], 0)} [{_f(e['median_lo'], 0)}, "
                f"{_f(e['median_hi'], 0)}] |"
            )
        lines += [
            "",
            "Fidelity-scaling exponent β (t_failure = α·N^−β), 95 % CI:",
            "",
            "| model | clock | means fit (paper's method) | Weibull ML | shape k | exponential ML | paper |",
            "|---|---|---|---|---|---|---|",
        ]
        clocks = (("NVE steps", res["models"]), ("NVT+NVE steps", res.get("models_total_clock", [])))
        for clock, models in clocks:
            for m in models:
                f = m["fits"]

                def cell(name: str, f: dict = f) -> str:
                    return _ci(f[name]["beta"], f[name]["beta_ci"]) if name in f else "—"

                k = f["weibull"]["shape"] if "weibull" in f else None
                lines.append(
                    f"| {m['model']} | {clock} | {cell('means')} | {cell('weibull')} | {_f(k, 2)} | "
                    f"{cell('exponential')} | {PAPER['beta'][_kind(m['model'])]} |"
                )
        if res["nvt_failures_excluded"]:
            lines.append(
                f"\n{res['nvt_failures_excluded']} run(s) failed during NVT (t = 0 NVE steps) and "
                "are left out of the NVE-clock fits; the NVT+NVE clock counts every step of every "
                "run."
            )
        lines.append("")
    if st.get("errors", {}).get("result"):
        e = st["errors"]["result"]
        lines += [
            "## Test-set errors (paper §4.3; 95 % bootstrap CI over frames)",
            "",
            "| model | force RMSE (meV/Å) | force MAE (meV/Å) | energy RMSE (meV/atom) | paper RMSE / MAE |",
            "|---|---|---|---|---|",
        ]
        for r in e["rows"]:
            kind = _kind(r["model"])
            lines.append(
                f"| {r['model']} | {_ci(r['forces_rmse_meV_A'], [r['forces_rmse_meV_A_lo'], r['forces_rmse_meV_A_hi']], 1)} | "  # noqa: E501
                f"{_ci(r['forces_mae_meV_A'], [r['forces_mae_meV_A_lo'], r['forces_mae_meV_A_hi']], 1)} | "  # noqa: E501
                f"{_ci(r['energy_rmse_meV_atom'], [r['energy_rmse_meV_atom_lo'], r['energy_rmse_meV_atom_hi']], 2)} | "  # noqa: E501
                f"{PAPER['forces_rmse_meV_A'][kind]} / {PAPER['forces_mae_meV_A'][kind]} |"
            )
        lines.append("")
    if st.get("sharpness", {}).get("result"):
        lines += [
            "## Sharpness (paper Table 4)",
            "",
            "| model | statistic | value ± s.e. | mean | samples | paper |",
            "|---|---|---|---|---|---|",
        ]
        for r in st["sharpness"]["result"]["rows"]:
            lines.append(
                f"| {r['model']} | {r['stat']} over {r['dist']} radius {r['rho']:g} | "
                f"{r['value']:.3g} ± {r['stderr']:.2g} | {r['mean']:.3g} | "
                f"{r['samples']} | {PAPER['sharpness'][_kind(r['model'])]:.1e} |"
            )
        lines.append("")
    lines += ["## What holds", ""] + [f"- {c}" for c in claims(study)] + [""]
    lines += ["## Wall time per stage", "", "| stage | s |", "|---|---|"]
    lines += [f"| {k} | {v['wall_s']:.0f} |" for k, v in st.items() if study.enabled(k.removesuffix("_grid"))]
    pngs = sorted(
        p.relative_to(study.out).as_posix() for p in study.out.rglob("*.png") if "models" not in p.parts
    )
    lines += ["", "Figures: " + ", ".join(f"`{p}`" for p in pngs), ""]
    text = "\n".join(lines)
    atomic_write_text(study.out / "results.md", text, overwrite=True)
    atomic_write_text(
        study.out / "results.json",
        json.dumps(_finite(st), indent=1, default=_default, allow_nan=False) + "\n",
        overwrite=True,
    )
    return {"results_md": str(study.out / "results.md"), "claims": claims(study)}


def _finite(obj: Any) -> Any:
    """Copy with non-finite floats as None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise LegatoError(f"cannot serialise {type(x).__name__}")
