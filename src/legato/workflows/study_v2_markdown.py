"""Markdown of study v2's report (``results.md``): the tables of :func:`.study_v2_report.analyse`'s
statistics, the models and the force-outlier summary. Pure formatting of numbers."""

from __future__ import annotations

import math
from typing import Any


def _f(x: Any, nd: int = 0) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def _iv(d: dict, nd: int = 0) -> str:
    return f"{_f(d['value'], nd)} [{_f(d['lo'], nd)}, {_f(d['hi'], nd)}]"


def _ivx(d: dict | str, nd: int = 0) -> str:
    """:func:`_iv` of an interval, or n/a for a quantity that could not be estimated."""
    return _iv(d, nd) if isinstance(d, dict) else "n/a"


def _ivg(d: dict) -> str:
    """An interval in 2 significant digits (rates and their ratios span decades)."""
    return f"{d['value']:.2g} [{d['lo']:.2g}, {d['hi']:.2g}]"


def markdown(
    stats: dict[str, dict],
    models: list[dict],
    outliers: list[dict] | None = None,
    energy: dict[str, list] | None = None,
    per_model: list[dict] | None = None,
) -> str:
    lines = ["# Study v2 results", ""]
    if models:
        lines += [
            "## Models",
            "",
            "| model | seed | epoch | grad. evals (epochs) | val F RMSE | test F RMSE |",
            "|---|---|---|---|---|---|",
        ]
        for m in models:
            lines.append(
                f"| {m['model']} | {m['model_seed']} | {m['epoch']} | {m['gradient_evaluations_epochs']} | "
                f"{_f(float(m['val_forces_rmse_meV_A']), 1)} | {_f(m.get('forces_rmse_meV_A'), 1)} |"
            )
        lines.append("")
    for clock, st in stats.items():
        lines += [
            f"## Clock: {clock}",
            "",
            "| model | N | models | runs | failed (NVT) | atom·ns | failures per atom·ns [95 % CI] "
            "| mean t [95 % CI] | Weibull k |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for e in st["per_size"]:
            k = e["weibull_shape"]
            ks = _iv(k["shape"], 2) if isinstance(k, dict) else "n/a"
            lines.append(
                f"| {e['model']} | {e['n_atoms']} | {e['models']} | {e['runs']} | "
                f"{e['failed']} ({e['failed_in_nvt']}) | {e['atom_ns']:.3g} | "
                f"{_ivg(e['rate_per_atom_ns'])} | {_iv(e['mean'])} | {ks} |"
            )
        lines += [
            "",
            "| Legato vs | N | rate ratio L/A [95 % CI] | p (L fails less) | ratio of means | paired ratio "
            "| wins L/A | p (sign) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        rate_rows = [(c, str(c["n_atoms"])) for c in st["comparisons"]]
        rate_rows += [(c, "all: " + ", ".join(map(str, c["sizes"]))) for c in st.get("pooled_rates", [])]
        for c, size in rate_rows:
            rr = c.get("rate_ratio", c)
            p = c.get("paired")
            no_failures = sum(rr.get("failures") or [1]) == 0  # a ratio of 0/0: undefined
            lines.append(
                f"| {c['a']} | {size} | "
                + (
                    "n/a (no failures) | | "
                    if no_failures
                    else f"{_ivg(rr['ratio'])} | {rr['p_one_sided']:.2g} | "
                )
                + ("n/a | " if "ratio_of_means" not in c else f"{_iv(c['ratio_of_means'], 2)} | ")
                + (
                    f"{_iv(p['ratio'], 2)} | {p['wins_b']}/{p['wins_a']} | {p['p_sign']:.2g} |"
                    if p
                    else "n/a | | |"
                )
            )
        lines += (
            ["", "| model | β per model | pooled β [95 % CI] | shape homogeneity p |", "|---|---|---|---|"]
            if st["beta"]
            else ["", "No β: it needs an arm's runs at two or more sizes."]
            if not st.get("beta_omitted")
            else []
        )
        for arm, b in st["beta"].items():
            per = ", ".join(f"{v:.2f}" for v in b["per_model"].values())
            sh = b.get("shape_homogeneity")
            lines.append(
                f"| {arm} | {per} | {_iv(b['pooled'], 2)} | {sh['p']:.2g} |"
                if isinstance(sh, dict)
                else f"| {arm} | {per} | {_iv(b['pooled'], 2)} | n/a |"
            )
        lines += [f"\nNo β for {arm}: {why}." for arm, why in st.get("beta_omitted", {}).items()]
        lines += [
            f"\nβ of {arm} from means at N = {', '.join(map(str, b['sizes']))} only: every run at "
            f"N = {', '.join(map(str, b['quiet_sizes']))} reached its budget (the Weibull fit takes "
            "those as censored runs)."
            for arm, b in st["beta"].items()
            if b.get("quiet_sizes")
        ]
        for arm, b in st["beta"].items():
            w = b.get("weibull")
            lines.append(
                f"\nWeibull β ({arm}, censored runs as survivors): {_iv(w['beta'], 2)}, shape "
                f"{w['shape']:.2f}, {w['failures']} failures in {w['runs']} runs"
                if isinstance(w, dict)
                else f"\nWeibull β ({arm}): {w}"
            )
        for t in st["beta_tests"]:
            g = t["hedges_g"]
            lines.append(
                f"\nβ_legato − β_{t['a']} (means) = {_iv(t['difference'], 2)}; one-sided p (bootstrap) "
                f"{t['p_bootstrap']:.2g}, p (Welch) {_f(t['p_welch'], 3)}, Hedges g {_f(g, 2)}"
            )
            w = t.get("weibull")
            if isinstance(w, dict):
                lines.append(
                    f"\nβ_legato − β_{t['a']} (Weibull) = {_iv(w['difference'], 2)}; "
                    f"one-sided p (bootstrap) {w['p_bootstrap']:.2g}"
                )
        lines.append("")
    if outliers:
        lines += [
            "## Force outliers (> 5σ) per 1,000 atoms, NVE checks (Fig. 1)",
            "",
            "| model | N | runs | first quarter | last quarter | late/early | runs grown "
            "| last check, failed runs |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for o in outliers:
            if not o.get("runs"):
                continue
            lines.append(
                f"| {o['model']} | {o['n_atoms']} | {o['runs']} | {_f(o['early'], 2)} | {_f(o['late'], 2)} | "
                f"{_f(o['late_over_early'], 2)} | {o['share_grown']:.0%} | "
                f"{_f(o['final_failed'], 2)} ({o['failed']}) |"
            )
        lines.append("")
    if energy and energy["per_size"]:
        lines += [
            "## Energy conservation over the production stage (per run, then mean over models)",
            "",
            "| model | N | runs | fluctuation (meV/atom) | abs. drift (meV/atom/ps) | hottest check (K) |",
            "|---|---|---|---|---|---|",
        ]
        for e in energy["per_size"]:
            lines.append(
                f"| {e['model']} | {e['n_atoms']} | {e['runs']} | {_ivx(e['fluct_meV_atom'], 3)} | "
                f"{_ivx(e['abs_drift_meV_atom_ps'], 4)} | {_ivx(e['t_max_K'])} |"
            )
        lines += [
            "",
            "| Legato vs | N | fluctuation ratio L/A [95 % CI] | paired ratio | L lower / higher "
            "| p (sign) |",
            "|---|---|---|---|---|---|",
        ]
        for c in energy["comparisons"]:
            p = c.get("paired")
            lines.append(
                f"| {c['a']} | {c['n_atoms']} | {_iv(c['fluct_ratio'], 2)} | "
                + (
                    f"{_iv(p['ratio'], 2)} | {p['wins_a']}/{p['wins_b']} | {p['p_sign']:.2g} |"
                    if p
                    else "n/a | | |"
                )
            )
        lines.append("")
    if per_model:
        lines += [
            "## Per-model measures (mean over models; Legato against each arm paired by seed)",
            "",
            "| measure | model | models | mean [95 % CI] | Legato ÷ model [95 % CI] | L lower / higher "
            "| p (sign) |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in per_model:
            vs = {c["other"]: c for c in m["legato_vs"]}
            for arm, e in m["arms"].items():
                c = vs.get(arm)
                m3 = e["mean"]  # 3 significant digits: errors are ~10^2, sharpness ~10^-5
                mean = (
                    f"{m3['value']:.3g} [{m3['lo']:.3g}, {m3['hi']:.3g}]"
                    if m3
                    else f"{next(iter(e['values'].values())):.3g}"
                )
                lines.append(
                    f"| {m['label']} | {arm} | {e['models']} | {mean} | "
                    + (
                        f"{_iv(c['ratio'], 2)} | {c['reference_lower']}/{c['reference_higher']} "
                        f"| {c['p_sign']:.2g} |"
                        if c
                        else "| | |"
                    )
                )
        lines.append("")
        corr = [m for m in per_model if m.get("vs_survival")]
        kinds = ("mean_steps", "failed_fraction")
        n0 = corr[0]["vs_survival"]["n_atoms"] if corr else None
        if corr and all(m["vs_survival"][k] is None for m in corr for k in kinds):
            lines += [
                f"No rank correlation with survival at N = {n0}: every model's runs survived alike.",
                "",
            ]
        elif corr:
            lines += [
                f"Over all models: rank correlation (Spearman, p) of each measure with survival at N = {n0}",
                "",
                "| measure | vs mean production steps | vs fraction of runs failed |",
                "|---|---|---|",
            ]
            for m in corr:
                cells = [
                    f"{c['spearman']:.2f} (p = {c['p']:.2g}, {c['models']} models)" if c else "n/a"
                    for c in (m["vs_survival"][k] for k in kinds)
                ]
                lines.append(f"| {m['label']} | {cells[0]} | {cells[1]} |")
            lines.append("")
    return "\n".join(lines) + "\n"
