"""Carry study v2's finished training runs across sessions (a fresh checkout has no runs/).

``save`` copies, for every seed whose SAM and Adam runs have both finished, what the later
stages need into ``docs/results/study_v2/train/``: each run's log.csv, summary.json,
stats.json, learning curves and split.json (its training frames, for sharpness; without the
machine's data path), the SAM run's best model and the Adam run's best model plus
the epoch models the three Adam arms pick (model files without the machine's paths); and each
finished run of the config's grids (``rho_grid``, ``lmax_grid``: Tables 1 and 4, best model).
``restore`` copies them back into a study folder (files already there are kept), where
``legato study --resume`` skips those trainings (their summary.json and best_model.pt exist)
and ``select`` finds its files.
On a fresh checkout, create the folder first (the data stage takes seconds):

    legato study configs/study_v2.yaml --out runs/study_v2 --stages data
    python scripts/study_v2_carry.py restore
    legato study configs/study_v2.yaml --out runs/study_v2 --resume --max-hours 2.3

and after a session's training: ``python scripts/study_v2_carry.py save``.

With ``--ensembles DIR`` (e.g. ``docs/results/study_v2_table1/tfail``) ``save`` also copies every
finished time-to-failure ensemble of the study (its failures.csv, outliers.csv, protocol.json,
models.json, runs.jsonl and each MD batch's thermo.csv, gzipped: what ``--resume`` needs to skip
it and the report needs to read it) and ``restore`` puts them back, so that a stage stopped
part-way does not lose the ensembles it finished when the machine does.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

from legato.workflows.study_v2 import pick_epochs, read_log, train_run_name
from legato.workflows.study_v2_config import load_study_v2_config
from legato.workflows.study_v2_report import portable_model_copy

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / "docs" / "results" / "study_v2" / "train"
TEXT = ("log.csv", "summary.json", "stats.json", "learning_curves.png")
#: an ensemble folder's small files that --resume and the report read (besides the gzipped
#: outliers.csv and md/*/*/thermo.csv)
ENSEMBLE = ("failures.csv", "protocol.json", "models.json", "runs.jsonl")


def _carry(run: Path, models: list[str]) -> None:
    """Copy one finished run's texts, portable split.json and ``models`` into the carry."""
    dest = CARRY / run.name
    dest.mkdir(parents=True, exist_ok=True)
    for name in TEXT:
        if (run / name).is_file():
            shutil.copyfile(run / name, dest / name)
    split = json.loads((run / "split.json").read_text())
    split["data_path"] = Path(split["data_path"]).name  # no absolute path of this machine
    (dest / "split.json").write_text(json.dumps(split, indent=1) + "\n")
    for name in models:
        portable_model_copy(run / name, dest / name)


def save(study: Path, config: Path) -> None:
    cfg = load_study_v2_config(config)
    for seed in cfg.seeds:
        sam, adam = study / "train" / f"sam_s{seed}", study / "train" / f"adam_s{seed}"
        if not ((sam / "summary.json").is_file() and (adam / "summary.json").is_file()):
            print(f"seed {seed}: not finished, not carried")
            continue
        target = min(read_log(sam), key=lambda r: r["val_loss"])["val_forces_rmse_meV_A"]
        epochs = sorted(set(pick_epochs(read_log(adam), cfg.epochs, target).values()))
        _carry(sam, ["best_model.pt"])
        _carry(adam, ["best_model.pt"] + [f"model_epoch_{e:04d}.pt" for e in epochs])
        print(f"seed {seed}: carried (Adam epochs {epochs})")
    for arm in [*cfg.rho_arms(), *cfg.lmax_arms()]:  # the grids' runs (Tables 1 and 4)
        for seed in cfg.seeds_of(arm):
            run = study / "train" / train_run_name(cfg, arm, seed)
            if (run / "summary.json").is_file():
                _carry(run, ["best_model.pt"])
                print(f"{run.name}: carried")
            else:
                print(f"{run.name}: not finished, not carried")


def save_ensembles(study: Path, config: Path, dest: Path) -> None:
    """Copy every finished ensemble's :data:`ENSEMBLE` files and gzipped thermo.csv to ``dest``."""
    from legato.workflows.study_v2 import StudyV2

    st = StudyV2(load_study_v2_config(config), study, resume=True, log=lambda _: None)
    n_done = 0
    for arm, seed in st.models():
        for reps in st.cfg.sizes_of(arm):
            if not st.ensemble_done(arm, seed, reps):
                continue
            src = st.tfail_dir(arm, seed, reps)
            out = dest / src.relative_to(study / "tfail")
            out.mkdir(parents=True, exist_ok=True)
            for name in ENSEMBLE:
                if (src / name).is_file():
                    shutil.copyfile(src / name, out / name)
            for table in [src / "outliers.csv", *sorted((src / "md").glob("*/N*_s*/thermo.csv"))]:
                if table.is_file():  # the large tables, gzipped
                    gz = out / table.relative_to(src).with_suffix(".csv.gz")
                    gz.parent.mkdir(parents=True, exist_ok=True)
                    with open(table, "rb") as fin, gzip.GzipFile(gz, "wb", mtime=0) as fout:
                        shutil.copyfileobj(fin, fout)
            n_done += 1
    print(f"{n_done} finished ensemble(s) carried to {dest}")


def restore_ensembles(study: Path, src: Path) -> None:
    """Put the ensembles :func:`save_ensembles` carried back (files already there are kept)."""
    if not src.is_dir():
        raise SystemExit(f"error: no carried ensembles in {src}")
    n_files = 0
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = f.relative_to(src)
        target = study / "tfail" / (rel.with_suffix("") if f.suffix == ".gz" else rel)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix == ".gz":
            with gzip.open(f, "rb") as fin, open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        else:
            shutil.copyfile(f, target)
        n_files += 1
    print(f"{n_files} ensemble file(s) restored to {study / 'tfail'}")


def restore(study: Path) -> None:
    if not CARRY.is_dir():
        raise SystemExit(f"error: nothing to restore in {CARRY}")
    if not (study / "study_config.yaml").is_file():
        raise SystemExit(f"error: {study} is not a study folder yet; run its data stage first (see --help)")
    for run in sorted(CARRY.iterdir()):
        dest = study / "train" / run.name
        dest.mkdir(parents=True, exist_ok=True)
        added = [f.name for f in sorted(run.iterdir()) if f.is_file() and not (dest / f.name).exists()]
        for name in added:
            shutil.copyfile(run / name, dest / name)
        print(
            f"{run.name}: {len(added)} file(s) restored to {dest}" + ("" if added else " (all present, kept)")
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("save", "restore"))
    ap.add_argument("--study", default="runs/study_v2")
    ap.add_argument("--config", default="configs/study_v2.yaml")
    ap.add_argument("--ensembles", type=Path, help="also carry the finished ensembles to/from this folder")
    args = ap.parse_args()
    if args.mode == "save":
        save(Path(args.study), Path(args.config))
        if args.ensembles:
            save_ensembles(Path(args.study), Path(args.config), args.ensembles)
    else:
        restore(Path(args.study))
        if args.ensembles:
            restore_ensembles(Path(args.study), args.ensembles)


if __name__ == "__main__":
    main()
