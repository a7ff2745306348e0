"""Statistics of the robustness study: failure tables, Kaplan–Meier, β fits, CLI, plots."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from scipy import optimize, stats

from legato.cli.main import main
from legato.errors import LegatoError
from legato.stats.failures import (
    FailureRecord,
    FailureTable,
    format_failure_table,
    merge_tables,
    parse_failure_table,
    read_failure_table,
    write_failure_table,
)
from legato.stats.scaling import analyse_table, fit_means, fit_weibull, size_summaries
from legato.stats.survival import kaplan_meier

SIZES = np.array([432, 3456, 11664, 27648])  # the paper's N = 432·k³
BETA, SHAPE, SCALE_432 = 0.3, 1.5, 5000.0


def weibull_sample(
    seed: int, n_per: int, budget: float | None = None, beta: float = BETA, shape: float = SHAPE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer failure steps with scale λ(N) = 5000·(N/432)^−β; censored at ``budget``."""
    rng = np.random.default_rng(seed)
    n = np.repeat(SIZES, n_per)
    t = np.ceil(SCALE_432 * (n / 432.0) ** (-beta) * rng.weibull(shape, n.size))
    cens = np.zeros(n.size, bool) if budget is None else t > budget
    if budget is not None:
        t = np.minimum(t, budget)
    return n, t, cens


# -- Kaplan–Meier -------------------------------------------------------------------------
def test_kaplan_meier_hand_example():
    # failures at 1, 2, 3, 5; censored at 2 (after the failure at 2) and at 4
    t = np.array([1, 2, 2, 3, 4, 5.0])
    c = np.array([0, 0, 1, 0, 1, 0], bool)
    km = kaplan_meier(t, c, transform="plain")
    np.testing.assert_array_equal(km.times, [1, 2, 3, 5])
    np.testing.assert_array_equal(km.n_at_risk, [6, 5, 3, 1])
    np.testing.assert_array_equal(km.n_events, [1, 1, 1, 1])
    np.testing.assert_allclose(km.survival, [5 / 6, 2 / 3, 4 / 9, 0.0])
    # Greenwood at t=3: (4/9)² (1/30 + 1/20 + 1/6) = (4/9)² / 4  →  se = 2/9
    np.testing.assert_allclose(
        km.se[:3], [5 / 6 * math.sqrt(1 / 30), 2 / 3 * math.sqrt(1 / 30 + 1 / 20), 2 / 9]
    )
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(km.lower[2], 4 / 9 - z * 2 / 9)
    np.testing.assert_allclose(km.upper[2], 4 / 9 + z * 2 / 9)
    np.testing.assert_allclose(km.survival_at([0.5, 1.0, 2.5, 4.9, 5.0, 9.0]), [1, 5 / 6, 2 / 3, 4 / 9, 0, 0])
    assert km.median() == 3.0
    np.testing.assert_array_equal(km.censor_times, [2, 4])
    # log-log band: S^exp(±z·sqrt(Σ)/|log S|) at t=3, and it stays inside (0, 1)
    kl = kaplan_meier(t, c)
    w = z * 0.5 / abs(math.log(4 / 9))
    np.testing.assert_allclose([kl.lower[2], kl.upper[2]], [(4 / 9) ** math.exp(w), (4 / 9) ** math.exp(-w)])
    assert np.all((kl.lower >= 0) & (kl.upper <= 1) & (kl.lower <= kl.survival) & (kl.survival <= kl.upper))


def test_kaplan_meier_uncensored_is_empirical_survival():
    t = np.random.default_rng(0).exponential(100.0, 51)
    km = kaplan_meier(t)
    grid = np.linspace(0, 400, 97)
    np.testing.assert_allclose(km.survival_at(grid), (t[None, :] > grid[:, None]).mean(1))
    assert km.median() == np.median(t)  # odd n: the middle order statistic
    lo, hi = km.median_ci()
    assert lo < km.median() < hi


def test_kaplan_meier_rejects_bad_input():
    with pytest.raises(LegatoError):
        kaplan_meier(np.array([]))
    with pytest.raises(LegatoError):
        kaplan_meier(np.array([1.0, -2.0]))
    with pytest.raises(LegatoError):
        kaplan_meier(np.array([1.0, 2.0]), np.array([True]))


# -- β fits -------------------------------------------------------------------------------
def test_weibull_fit_is_the_maximum_of_the_full_likelihood():
    """The profiled likelihood equals scipy's Weibull likelihood maximised over (a, β, k)."""
    n, t, c = weibull_sample(1, 30, budget=4000.0)
    fit = fit_weibull(n, t, c)

    def nll(p: np.ndarray) -> float:
        lam = np.exp(p[0] - p[1] * np.log(n))
        k = np.exp(p[2])
        return -(
            stats.weibull_min.logpdf(t[~c], k, scale=lam[~c]).sum()
            + stats.weibull_min.logsf(t[c], k, scale=lam[c]).sum()
        )

    p0 = np.array([math.log(SCALE_432) + BETA * math.log(432), BETA, math.log(SHAPE)])
    ref = optimize.minimize(
        nll, p0, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000}
    )
    assert fit.log_likelihood == pytest.approx(-ref.fun, abs=1e-7)
    assert fit.log_likelihood >= -ref.fun - 1e-9
    assert fit.beta == pytest.approx(ref.x[1], abs=1e-5)
    assert fit.shape == pytest.approx(math.exp(ref.x[2]), rel=1e-5)
    assert fit.scale_alpha == pytest.approx(math.exp(ref.x[0]), rel=1e-4)
    assert fit.alpha == pytest.approx(fit.scale_alpha * math.gamma(1 + 1 / fit.shape))
    assert (fit.n, fit.n_censored) == (120, int(c.sum())) and c.sum() > 10


def test_exponential_two_sizes_closed_form_with_censoring():
    """Two sizes, k = 1: each size's rate MLE is failures / total time, so
    β̂ = −log(λ₂/λ₁)/log(N₂/N₁) with λ = total time / failures."""
    n = np.array([100] * 5 + [800] * 4)
    t = np.array([10, 20, 30, 40, 50, 5, 7, 9, 30.0])
    c = np.array([0, 0, 1, 0, 1, 0, 0, 0, 1], bool)
    lam1, lam2 = 150 / 3, 51 / 3
    fit = fit_weibull(n, t, c, shape=1.0)
    assert fit.method == "exponential" and fit.shape == 1.0
    assert fit.beta == pytest.approx(-math.log(lam2 / lam1) / math.log(8), abs=1e-9)
    assert fit.median_at(100) == pytest.approx(lam1 * math.log(2), rel=1e-9)
    assert fit.mean_at(800) == pytest.approx(lam2, rel=1e-9)
    lo, hi = fit.beta_ci
    assert lo < fit.beta < hi
    # the profile-likelihood interval is where the likelihood ratio statistic hits χ²₁(0.95)
    assert fit.log_likelihood == pytest.approx(_exp_loglik(n, t, c, fit.beta), abs=1e-9)
    for b in (lo, hi):
        ll = _exp_loglik(n, t, c, b)
        assert 2 * (fit.log_likelihood - ll) == pytest.approx(stats.chi2.ppf(0.95, 1), abs=1e-6)


def _exp_loglik(n: np.ndarray, t: np.ndarray, c: np.ndarray, beta: float) -> float:
    """Exponential log-likelihood at β with the scale maximised (independent formula)."""
    res = optimize.minimize_scalar(
        lambda la: -(np.sum(-(la - beta * np.log(n[~c]))) - np.sum(t / np.exp(la - beta * np.log(n)))),
        bounds=(-10, 30),
        method="bounded",
        options={"xatol": 1e-12},
    )
    return -res.fun


def test_fits_recover_beta_without_censoring():
    n, t, c = weibull_sample(7, 25)
    fm = fit_means(n, t, c, n_boot=1000, seed=3)
    fw = fit_weibull(n, t, c)
    for fit in (fm, fw):
        assert fit.beta_ci[0] < BETA < fit.beta_ci[1], fit
    assert fw.shape_ci[0] < SHAPE < fw.shape_ci[1]
    # bootstrap is seeded: same seed → same interval, other seed → different
    assert fit_means(n, t, c, n_boot=1000, seed=3).beta_ci == fm.beta_ci
    assert fit_means(n, t, c, n_boot=1000, seed=4).beta_ci != fm.beta_ci


def test_censoring_biases_means_fit_but_not_survival_fit():
    """Budget 3000 steps: ~half the N=432 runs survive it, almost none at N=27648.
    The means fit (censored runs counted at the budget) flattens the curve; the Weibull
    fit recovers β within its CI."""
    n, t, c = weibull_sample(11, 40, budget=3000.0)
    assert c[n == 432].mean() > 0.4 and c[n == 27648].mean() < 0.2
    fm = fit_means(n, t, c, n_boot=1000, seed=0)
    fw = fit_weibull(n, t, c)
    assert fm.beta_ci[1] < BETA  # biased low, beyond its own CI
    assert fw.beta_ci[0] < BETA < fw.beta_ci[1]
    assert fw.n_censored == int(c.sum())


def test_survival_fit_ci_coverage_under_censoring():
    """Over 40 independent censored data sets the 95 % profile CI holds the true β in
    ≥ 34 (expected 38; P(≤ 33 | p = 0.95) < 1 %), the naive means fit's almost never."""
    hits_w = hits_m = 0
    betas = []
    for seed in range(100, 140):
        n, t, c = weibull_sample(seed, 30, budget=3000.0)
        fw = fit_weibull(n, t, c)
        fm = fit_means(n, t, c, n_boot=300, seed=seed)
        hits_w += fw.beta_ci[0] <= BETA <= fw.beta_ci[1]
        hits_m += fm.beta_ci[0] <= BETA <= fm.beta_ci[1]
        betas.append(fw.beta)
    assert hits_w >= 34
    assert hits_m <= 8
    assert abs(np.mean(betas) - BETA) < 0.03  # nearly unbiased


def test_exponential_is_the_k1_special_case():
    n, t, c = weibull_sample(5, 30, budget=6000.0, shape=1.0)
    fw, fe = fit_weibull(n, t, c), fit_weibull(n, t, c, shape=1.0)
    assert fw.shape_ci[0] < 1.0 < fw.shape_ci[1]
    assert fe.log_likelihood <= fw.log_likelihood + 1e-9
    assert fe.beta_ci[0] < BETA < fe.beta_ci[1]
    # with the Weibull shape fixed at its MLE, the β estimate is the free fit's
    assert fit_weibull(n, t, c, shape=fw.shape).beta == pytest.approx(fw.beta, abs=1e-8)


def test_weibull_bootstrap_ci_agrees_with_profile():
    n, t, c = weibull_sample(3, 20, budget=4000.0)
    fp = fit_weibull(n, t, c)
    fb = fit_weibull(n, t, c, ci="bootstrap", n_boot=150, seed=1)
    assert fb.beta == fp.beta and fb.ci_method == "bootstrap"
    wp, wb = fp.beta_ci[1] - fp.beta_ci[0], fb.beta_ci[1] - fb.beta_ci[0]
    assert 0.6 < wb / wp < 1.6
    assert fb.beta_ci[0] < fp.beta < fb.beta_ci[1]


def test_fits_refuse_unidentifiable_data():
    n, t, c = weibull_sample(0, 5)
    with pytest.raises(LegatoError, match="two system sizes"):
        fit_means(n[n == 432], t[n == 432])
    with pytest.raises(LegatoError, match="censored"):
        fit_weibull(n, t, np.ones_like(c))
    with pytest.raises(LegatoError, match="only one size"):
        fit_weibull(n, t, n != 432)
    with pytest.raises(LegatoError, match="t_failure > 0"):
        fit_weibull(n, np.where(n == 432, 0.0, t), c)


def test_size_summaries_median_and_mean():
    n, t, c = weibull_sample(2, 15, budget=5000.0)
    for s in size_summaries(n, t, c):
        ts, cs = t[n == s.n_atoms], c[n == s.n_atoms]
        assert s.n == 15 and s.n_censored == cs.sum()
        assert s.mean == pytest.approx(ts.mean())
        assert s.sem == pytest.approx(ts.std(ddof=1) / math.sqrt(15))
        if not cs.any():
            assert s.median == np.sort(ts)[7]


# -- failure tables -----------------------------------------------------------------------
def _table(seed: int = 0, model: str = "Allegro") -> FailureTable:
    n, t, c = weibull_sample(seed, 3, budget=4000.0)
    return FailureTable(
        FailureRecord(
            model,
            int(ni),
            i,
            int(ti),
            ti * 0.5 + 1e-3 * i,
            "budget reached" if ci else 'T left [100 K, 300 K], "hot"',
            bool(ci),
        )
        for i, (ni, ti, ci) in enumerate(zip(n, t, c, strict=True))
    )


def test_failure_table_round_trip(tmp_path):
    table = _table()
    path = write_failure_table(table, tmp_path / "t.csv")
    back = read_failure_table(path)
    assert back == table
    assert format_failure_table(back) == path.read_text()
    assert back.records[0].t_failure_fs == table.records[0].t_failure_fs  # exact floats
    n, t, c = back.arrays()
    assert n.dtype == np.int64 and c.dtype == bool and len(t) == 12
    # extra columns survive byte for byte
    text = (
        "model,n_atoms,seed,t_failure_steps,t_failure_fs,reason,censored,note\n"
        'L,432,1,10,20.0,x,TRUE,"a, b"\n'
    )
    tab2 = parse_failure_table(text)
    assert tab2.records[0].censored and tab2.records[0].extra == {"note": "a, b"}
    assert parse_failure_table(format_failure_table(tab2)) == tab2
    with pytest.raises(LegatoError, match="exists"):
        write_failure_table(table, path)
    write_failure_table(_table(1), path, overwrite=True)
    assert read_failure_table(path) == _table(1)


def test_merge_tables():
    a, b = _table(0, "Allegro"), _table(1, "Legato")
    merged = merge_tables([a, b, a])  # a repeated identically is kept once
    assert len(merged) == 24 and merged.models() == ["Allegro", "Legato"]
    assert merged.select("Legato") == b
    r = a.records[0]
    clash = FailureTable(
        [
            FailureRecord(
                r.model, r.n_atoms, r.seed, r.t_failure_steps + 1, r.t_failure_fs, r.reason, r.censored
            )
        ]
    )
    with pytest.raises(LegatoError, match="conflicting"):
        merge_tables([a, clash])
    with pytest.raises(LegatoError, match="duplicate"):
        a.append(r)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty"),
        ("model,n_atoms\nA,3\n", "missing column"),
        (
            "model,n_atoms,seed,t_failure_steps,t_failure_fs,reason,censored\nA,x,1,2,3.0,r,false\n",
            "line 2.*n_atoms",
        ),
        (
            "model,n_atoms,seed,t_failure_steps,t_failure_fs,reason,censored\nA,4,1,2,3.0,r,maybe\n",
            "censored",
        ),
        ("model,n_atoms,seed,t_failure_steps,t_failure_fs,reason,censored\nA,4,1,-2,3.0,r,no\n", ">= 0"),
        ("model,n_atoms,seed,t_failure_steps,t_failure_fs,reason,censored\nA,4,1,2\n", "fields"),
    ],
)
def test_failure_table_parse_errors(text, match):
    with pytest.raises(LegatoError, match=match):
        parse_failure_table(text)


# -- CLI and plots ------------------------------------------------------------------------
def _write_study(tmp_path):
    rows = []
    for model, beta, seed0 in (("Allegro", 0.3, 0), ("Allegro-Legato", 0.1, 50)):
        n, t, c = weibull_sample(seed0, 12, budget=6000.0, beta=beta)
        rows += [
            FailureRecord(model, int(ni), i, int(ti), 2.0 * ti, "r", bool(ci))
            for i, (ni, ti, ci) in enumerate(zip(n, t, c, strict=True))
        ]
    p1 = write_failure_table(FailureTable(rows[:48]), tmp_path / "allegro.csv")
    p2 = write_failure_table(FailureTable(rows[48:]), tmp_path / "legato.csv")
    out = tmp_path / "outliers.csv"
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "outliers", "model", "run"])
        for step in range(0, 500, 10):
            w.writerow([step, 3 + step // 50, "Allegro", 0])
            w.writerow([step, 3, "Allegro-Legato", 0])
    return p1, p2, out


def test_cli_scaling_end_to_end(tmp_path, capsys):
    p1, p2, outliers = _write_study(tmp_path)
    out = tmp_path / "res"
    rc = main(
        ["scaling", str(p1), str(p2), "--out", str(out), "--n-boot", "200", "--outliers", str(outliers)]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    assert "Allegro-Legato" in printed and "Weibull" in printed
    doc = json.loads((out / "scaling_fits.json").read_text())
    fits = {m["model"]: m["fits"] for m in doc["models"]}
    assert set(fits) == {"Allegro", "Allegro-Legato"}
    assert set(fits["Allegro"]) == {"means", "weibull", "exponential"}
    assert f"{fits['Allegro']['weibull']['beta']:6.3f}" in printed
    with open(out / "scaling_fits.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 6
    for png in ("fig2_scaling.png", "survival.png", "fig1_outliers.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # a second run refuses to overwrite, and says so in one line
    rc = main(["scaling", str(p1), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "exists" in err


def test_run_scaling_is_the_cli_without_printing(tmp_path, capsys):
    from legato.workflows.scaling import OUTPUTS, run_scaling

    p1, p2, _ = _write_study(tmp_path)
    rep = run_scaling([p1, p2], tmp_path / "lib", n_boot=50)
    assert capsys.readouterr().out == ""
    assert [p.name for p in rep.paths] == list(OUTPUTS) and all(p.is_file() for p in rep.paths)
    assert {r.model for r in rep.results} == {"Allegro", "Allegro-Legato"}
    assert rep.doc == json.loads((tmp_path / "lib" / "scaling_fits.json").read_text())
    assert rep.printed == f"{rep.text}\nwrote {', '.join(OUTPUTS)} to {tmp_path / 'lib'}\n"
    main(["scaling", str(p1), str(p2), "--out", str(tmp_path / "cli"), "--n-boot", "50"])
    assert capsys.readouterr().out == rep.printed.replace(str(tmp_path / "lib"), str(tmp_path / "cli"))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"confidence": 1.0}, "confidence"),
        ({"n_boot": 1}, "n-boot"),
        ({"time_unit": "ps"}, "time unit"),
        ({"weibull_ci": "exact"}, "weibull_ci"),
        ({"outliers": "missing.csv"}, "not found"),
    ],
)
def test_run_scaling_checks_inputs_before_writing(tmp_path, kw, match):
    from legato.workflows.scaling import run_scaling

    p1, _, _ = _write_study(tmp_path)
    if "outliers" in kw:
        kw = {"outliers": tmp_path / kw["outliers"]}
    with pytest.raises(LegatoError, match=match):
        run_scaling([p1], tmp_path / "o", **kw)
    with pytest.raises(LegatoError, match="no failure tables"):
        run_scaling([], tmp_path / "o")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content", [None, "not,a,table\n1,2,3\n", "\x00\xff\xfe"])
def test_cli_bad_file_one_error_line(tmp_path, capsys, content):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    rc = main(["scaling", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_analyse_table_notes_missing_fits():
    table = _table(0)  # one model, four sizes, 3 runs each
    single = table.select(n_atoms=432)
    res = analyse_table(single, n_boot=50)[0]
    assert res.fits == {} and any("two system sizes" in s for s in res.notes)
    assert len(res.sizes) == 1


def test_read_outlier_csv_columns(tmp_path):
    from legato.workflows.plots import read_outlier_csv

    p = tmp_path / "checks.csv"
    p.write_text("step,replica,n_force_outliers,model\n20,0,4,A\n10,0,2,A\n10,1,7,A\n")
    runs = read_outlier_csv(p)
    np.testing.assert_array_equal(runs[("A", "0")][0], [10, 20])  # sorted by step
    np.testing.assert_array_equal(runs[("A", "0")][1], [2, 4])
    assert set(runs) == {("A", "0"), ("A", "1")}
    p.write_text("step,outliers\n1,2\n")
    with pytest.raises(LegatoError, match="model"):
        read_outlier_csv(p)
