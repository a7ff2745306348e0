"""The study's figures, inspected as matplotlib objects: a lone ρ is one point, axes name
their clock, legends stay off the data and have one entry per run, ticks span the data."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from legato.errors import LegatoError
from legato.stats.failures import FailureRecord, FailureTable
from legato.stats.scaling import analyse_table
from legato.workflows.plots import (
    log_ticks,
    outliers_figure,
    plot_outliers,
    read_outlier_csv,
    scaling_figure,
)
from legato.workflows.rho_search import rho_figure


def _table(means: dict[str, dict[int, float]], n: int = 8) -> FailureTable:
    rng = np.random.default_rng(0)
    recs = []
    for model, by_size in means.items():
        for size, mean in by_size.items():
            for seed, t in enumerate(rng.exponential(mean, n).astype(int) + 1):
                recs.append(FailureRecord(model, size, seed, int(t), 2.5 * int(t), "temperature", False, {}))
    return FailureTable(recs)


def _rows(rhos: list[float | None]) -> list[dict]:
    return [
        {
            "rho": r,
            "label": "Allegro" if r is None else f"Legato rho={r:g}",
            "n_atoms": 128,
            "n": 6,
            "failed": 6,
            "censored": 0,
            "mean": 55.0 + 10 * k,
            "sem": 8.0,
            "median": 60.0,
            "median_lo": 30.0,
            "median_hi": 70.0,
        }
        for k, r in enumerate(rhos)
    ]


def _tick_values(axis, lim: tuple[float, float]) -> list[float]:
    lo, hi = sorted(lim)
    return [t for t in axis.get_majorticklocs() if lo <= t <= hi]


def test_table1_figure_with_one_rho_shows_one_rho():
    fig = rho_figure(_rows([None, 0.005]), budget=300)
    ax = fig.axes[0]
    marked = [ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "", " ")]
    xs = np.concatenate([np.atleast_1d(ln.get_xdata()) for ln in marked])  # points and caps
    assert np.all(np.abs(np.log(xs / 0.005)) < np.log(1.1))  # every marker sits at its ρ
    assert _tick_values(ax.xaxis, ax.get_xlim()) == [0.005]  # one labelled ρ
    lo, hi = ax.get_xlim()
    assert lo <= 0.005 / 2 and hi >= 0.005 * 2  # the median beside it is not a second ρ
    fig = rho_figure(_rows([None, 0.001, 0.005, 0.01]), budget=300)
    assert _tick_values(fig.axes[0].xaxis, fig.axes[0].get_xlim()) == [0.001, 0.005, 0.01]


def _data_bbox_overlaps(fig, ax) -> bool:
    FigureCanvasAgg(fig).draw()
    leg = ax.get_legend().get_window_extent()
    return bool(leg.overlaps(ax.get_window_extent()))


@pytest.mark.parametrize(("clock", "label"), [(None, "NVE steps"), ("NVT+NVE steps", "NVT+NVE steps")])
def test_fig2_names_its_clock_keeps_the_legend_off_the_axes_and_ticks_span_the_data(clock, label):
    table = _table(
        {"Allegro": {128: 90.0, 256: 80.0, 432: 60.0}, "Legato": {128: 150.0, 256: 140.0, 432: 130.0}}
    )
    results = analyse_table(table, n_boot=50)
    fig = scaling_figure(results, clock=clock)
    ax = fig.axes[0]
    assert f"({label})" in ax.get_ylabel()
    assert not _data_bbox_overlaps(fig, ax)
    assert len(ax.get_legend().get_texts()) == 2 * 4  # mean, median, two fits per model
    lo = min(s.mean - np.nan_to_num(s.sem) for r in results for s in r.sizes)
    hi = max(max(s.mean + np.nan_to_num(s.sem), s.median_ci[1]) for r in results for s in r.sizes)
    y0, y1 = ax.get_ylim()
    assert y0 <= lo and y1 >= hi
    ticks = _tick_values(ax.yaxis, (y0, y1))
    assert len(ticks) >= 2 and ticks[0] <= lo and ticks[-1] >= hi  # labelled ticks span the data
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(labels) == len(ticks)


def test_log_ticks_cover_short_and_long_ranges():
    assert log_ticks(82.0, 171.0) == [80.0, 100.0, 150.0, 200.0]
    t = log_ticks(3.0, 900.0)
    assert t[0] <= 3.0 and t[-1] >= 900.0 and set(t) <= {m * 10.0**k for k in range(-1, 4) for m in (1, 2, 5)}
    assert log_ticks(100.0, 100.0) == [100.0]
    with pytest.raises(LegatoError):
        log_ticks(0.0, 10.0)


def test_fig1_has_one_legend_entry_per_run_names_its_clock_and_defines_sigma(tmp_path):
    csv = tmp_path / "out.csv"
    rows = ["step,outliers,model,run"]
    for model in ("Allegro", "Legato"):
        for run in ("s0", "s1", "s2"):
            rows += [f"{step},{step // 20},{model},{run}" for step in range(0, 101, 10)]
    csv.write_text("\n".join(rows) + "\n")
    fig = outliers_figure(read_outlier_csv(csv), sigma=5.0, nvt_steps=50)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(texts) == 6 and "Allegro, run s0" in texts and "Legato, run s2" in texts
    assert "NVT" in ax.get_xlabel() and "NVE" in ax.get_xlabel()
    assert "5σ" in ax.get_ylabel() and "σ = standard deviation of the training force" in ax.get_title()
    assert not _data_bbox_overlaps(fig, ax)
    png = plot_outliers(csv, tmp_path / "fig1.png", nvt_steps=50)
    assert png.stat().st_size > 0
    with pytest.raises(LegatoError, match="refusing to overwrite"):
        plot_outliers(csv, png)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
