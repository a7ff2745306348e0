"""Do ``legato tfail --engine lammps`` and the Python engine give the same t_failure
distribution? Reads the two ``failures.csv`` tables of one model and protocol (same seeds)
and prints, per size: instances, failures, Kaplan–Meier median with its band, the log-rank
test (scipy.stats.logrank, censoring respected) and, on the whole-run clock (t_total_steps,
NVT failures included), the two-sample KS test of the uncensored times. On demand.

    python benchmarks/lammps_tfail_compare.py PY_OUT/failures.csv LAMMPS_OUT/failures.csv
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import CensoredData, ks_2samp, logrank

from legato.stats.failures import read_failure_table
from legato.stats.survival import kaplan_meier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("python_table", help="failures.csv of the Python engine")
    ap.add_argument("lammps_table", help="failures.csv of the LAMMPS engine")
    args = ap.parse_args()
    tables = {
        "python": read_failure_table(args.python_table),
        "lammps": read_failure_table(args.lammps_table),
    }
    sizes = sorted({r.n_atoms for t in tables.values() for r in t})
    print("| N | engine | instances | failed (in NVT) | censored | KM median total steps [95 %] | mean |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        data = {}
        for name, table in tables.items():
            rows = sorted((r for r in table if r.n_atoms == n), key=lambda r: r.seed)
            t = np.array([float(r.extra["t_total_steps"]) for r in rows])
            c = np.array([r.censored for r in rows])
            nvt = sum(r.extra.get("stage") == "nvt" and not r.censored for r in rows)
            km = kaplan_meier(t, c)
            lo, hi = km.median_ci()
            data[name] = (t, c, [r.seed for r in rows])
            print(
                f"| {n} | {name} | {len(rows)} | {int((~c).sum())} ({nvt}) | {int(c.sum())} | "
                f"{km.median():.0f} [{lo:.0f}, {hi:.0f}] | {t.mean():.0f} |"
            )
        (t1, c1, s1), (t2, c2, s2) = data["python"], data["lammps"]
        if s1 != s2:
            print(f"note: N={n}: the engines ran different seeds ({len(s1)} vs {len(s2)})")
        x = CensoredData(uncensored=t1[~c1], right=t1[c1])
        y = CensoredData(uncensored=t2[~c2], right=t2[c2])
        lr = logrank(x, y)
        ks = ks_2samp(t1[~c1], t2[~c2]) if (~c1).any() and (~c2).any() else None
        ks_text = f"KS (failed runs) D = {ks.statistic:.3f}, p = {ks.pvalue:.3f}" if ks else "KS: no failures"
        print(f"\nN={n}: log-rank statistic {lr.statistic:.3f}, p = {lr.pvalue:.3f}; {ks_text}\n")


if __name__ == "__main__":
    main()
