"""Study v2: several trained models per arm, controls, independent starts (docs/reproduction.md).

Stages (recorded in ``OUT/stages.json``; ``--resume`` skips finished ones, interrupted
trainings and MD batches continue from their checkpoints, and ``max_hours`` stops launching
new time-to-failure jobs after that many hours so that each session's stage stays bounded):

``data``      train+validation / test split and the base box (as study v1);
``train``     per seed one SAM run and one Adam run (every epoch's model kept), and the
              grids' runs (``rho_grid``: SAM per ρ, Table 1; ``lmax_grid``: Adam per l_max,
              Table 4);
``select``    the arms' model files (``models/<arm>_s<seed>.pt``) and ``models.csv``;
``starts``    independent starting boxes per instance and size (``legato.workflows.starts``);
``tfail``     time-to-failure ensembles of every model at its arm's sizes;
``errors``    test-set energy and force errors of every model;
``sharpness`` random-direction and worst-case sharpness of every model;
``report``    ``runs.csv``, ``results.md``/``.json`` and figures (:mod:`.study_v2_report`).
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from legato.config_file import validate_model
from legato.errors import LegatoError
from legato.fileio import atomic_write_text
from legato.stats.failures import FailureTable, merge_tables, read_failure_table
from legato.workflows.jobs import run_jobs, train_job
from legato.workflows.staged import CONFIG_NAME, StagedWorkflow, csv_text, write_json
from legato.workflows.starts import build_starts, read_starts, select_pool, write_starts
from legato.workflows.study import prepare_data, tfail_job
from legato.workflows.study_report import error_metrics, frame_errors, sharpness_job, sharpness_kwargs
from legato.workflows.study_v2_config import ARMS, StudyV2Config, arm_label, train_config
from legato.workflows.study_v2_report import write_report
from legato.workflows.tfail import replication_name

STAGES_V2 = ("data", "train", "select", "starts", "tfail", "errors", "sharpness", "report")
TITLES_V2 = {
    "data": "split the frames into training and test files, pick the base box",
    "train": "train one SAM and one Adam run per seed (and the grids' runs)",
    "select": "pick the models of the arms",
    "starts": "independent starting boxes per instance and size",
    "tfail": "time-to-failure ensembles of every model",
    "errors": "energy and force errors on the test frames",
    "sharpness": "loss sharpness of every model (random directions and worst case)",
    "report": "write runs.csv, results.md and results.json",
}
RUNTIME_KEYS_V2 = ("workers", "threads_per_worker")
#: config sections that only these stages use (with their output folders or files): a resumed
#: study may change such a section as long as none of its stages has started
SECTION_STAGES = {
    "starts": (("starts", "starts"),),
    "tfail": (("starts", "starts"), ("tfail", "tfail")),
    "arm_sizes": (("starts", "starts"), ("tfail", "tfail")),
    "rho_grid": (("train", "train"), ("select", "models.csv"), ("tfail", "tfail")),
    "lmax_grid": (("train", "train"), ("select", "models.csv"), ("tfail", "tfail")),
    "errors": (("errors", "errors.csv"),),
    "sharpness": (("sharpness", "sharpness.csv"),),
    "analysis": (("report", "results.json"),),
}
#: config sections that add models (Table 1, Table 4)
GRIDS = ("rho_grid", "lmax_grid")
#: tfail keys the data stage uses (choice of the base box): fixed once it has run
DATA_TFAIL_KEYS = ("structure", "structure_index", "temperature_K")


def ensembles(cfg: StudyV2Config) -> dict[tuple[str, int, tuple[int, int, int]], dict]:
    """Every time-to-failure ensemble a config asks for, per arm, model seed and replication:
    the settings its runs depend on (a grid model's ρ or l_max, instances, seed, base-box
    choice and MD protocol)."""
    t = cfg.tfail
    base = {k: getattr(t, k, None) for k in DATA_TFAIL_KEYS}
    rhos, lmaxs = cfg.rho_arms(), cfg.lmax_arms()
    return {
        (arm, seed, reps): {
            **base,
            "rho": rhos.get(arm),
            "l_max": lmaxs.get(arm),
            "instances": t.instances_of(reps),
            "seed": t.seed,
            **t.protocol(reps).to_dict(),
        }
        for arm in cfg.arms()
        for seed in cfg.seeds_of(arm)
        for reps in cfg.sizes_of(arm)
    }


def extends(old: StudyV2Config, new: StudyV2Config) -> bool:
    """Does ``new`` only add time-to-failure ensembles (sizes, arms at sizes, or grid models)
    to ``old``, leaving every ensemble ``old`` ran exactly as it was? Then a resumed study keeps
    its finished ensembles and models and runs the new ones."""
    before, after = ensembles(old), ensembles(new)
    return set(before) < set(after) and all(after[k] == v for k, v in before.items())


def train_run_name(cfg: StudyV2Config, arm: str, seed: int) -> str:
    """Folder (under ``train/``) of the run an arm's model comes from: ``sam_s<seed>`` (Legato),
    ``adam_s<seed>`` (the three Adam arms), ``sam_rho<ρ>_s<seed>``, ``adam_lmax<l>_s<seed>``."""
    if arm in ARMS:
        return f"{'sam' if arm == 'legato' else 'adam'}_s{seed}"
    if arm in cfg.lmax_arms():
        return f"adam_lmax{cfg.lmax_arms()[arm]}_s{seed}"
    return f"sam_rho{cfg.rho_arms()[arm]:g}_s{seed}"


class DeadlineReached(LegatoError):
    """The session's time budget ran out; rerun with --resume to continue."""


def model_key(arm: str, seed: int) -> str:
    return f"{arm}_s{seed}"


def read_log(run_dir: Path) -> list[dict[str, float]]:
    """Rows of a training run's ``log.csv`` as floats."""
    with open(run_dir / "log.csv", newline="", encoding="utf-8") as fh:
        return [
            {k: float(v) if v not in ("", None) else float("nan") for k, v in r.items()}
            for r in csv.DictReader(fh)
        ]


def pick_epochs(adam_log: list[dict], epochs: int, target_force_rmse: float) -> dict[str, int]:
    """Epochs of the Adam run that make the three Adam arms: best validation loss within
    ``epochs`` (``allegro``) and within the whole run (``allegro_2x``), and the epoch whose
    validation force RMSE is closest to ``target_force_rmse`` (``allegro_matched``)."""
    ep = np.array([r["epoch"] for r in adam_log], dtype=int)
    loss = np.array([r["val_loss"] for r in adam_log])
    frmse = np.array([r["val_forces_rmse_meV_A"] for r in adam_log])
    first = ep <= epochs
    if not first.any():
        raise LegatoError("the Adam run has no epoch within the SAM run's epochs")
    return {
        "allegro": int(ep[first][np.argmin(loss[first])]),
        "allegro_2x": int(ep[np.argmin(loss)]),
        "allegro_matched": int(ep[np.argmin(np.abs(frmse - target_force_rmse))]),
    }


class StudyV2(StagedWorkflow):
    """Study v2 in folder ``out``; ``run()`` does what is left (see the module docstring)."""

    TITLES = TITLES_V2

    def __init__(
        self,
        cfg: StudyV2Config,
        out: str | Path,
        resume: bool = False,
        log: Callable[[str], None] = print,
        max_hours: float | None = None,
    ) -> None:
        text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        #: finished stages a config change reopens (popped from the state below)
        self.cfg, self.reopened = cfg, set()
        #: the study's saved config, validated (set by :meth:`normalized` on a resumed study)
        self.saved_cfg: StudyV2Config | None = None
        super().__init__(text, out, resume, log, RUNTIME_KEYS_V2)
        if self.reopened:
            for stage in sorted(self.reopened):
                self.state.pop(stage, None)
            write_json(self.state_path, self.state)
        self.data_dir, self.logs = self.out / "data", self.out / "logs"
        if max_hours is not None and not max_hours > 0:
            raise LegatoError(f"--max-hours must be > 0, got {max_hours}")
        self.deadline = None if max_hours is None else time.monotonic() + 3600.0 * max_hours

    def normalized(self, saved: dict[str, Any]) -> dict[str, Any]:
        where = f"the study's saved config {self.out / CONFIG_NAME}"
        self.saved_cfg = validate_model(StudyV2Config, saved, where)
        return self.saved_cfg.model_dump(mode="json")

    def changeable(self, section: str, old: Any, new: Any) -> bool:
        stages = SECTION_STAGES.get(section)
        if stages is None:
            return False
        # a stage the config had switched off is recorded done with nothing made: it may be
        # switched on (its section changed) and then runs
        skipped = {
            st
            for st, path in stages
            if self.done(st) and not self.result(st) and not (self.out / path).exists()
        }
        if skipped and section in ("errors", "sharpness"):
            self.reopened |= skipped
            return True
        if any(self.done(st) or (self.out / path).exists() for st, path in stages):
            if section in ("tfail", "arm_sizes", *GRIDS) and self.saved_cfg is not None:
                if not extends(self.saved_cfg, self.cfg):
                    return False
                # new ensembles: their starts, runs and the report are still to do
                if "tfail" not in self.reopened:
                    self.log("  new sizes, arms or models added to the study; they will be trained and run")
                self.reopened |= {"starts", "tfail", "report"}
                if section in GRIDS:  # new models: trained, picked, measured
                    self.reopened |= {"train", "select", "errors", "sharpness"}
                return True
            return False
        if section == "tfail" and self.done("data"):
            return all((old or {}).get(k) == (new or {}).get(k) for k in DATA_TFAIL_KEYS)
        return True

    def enabled(self, stage: str) -> bool:
        if stage in ("errors", "sharpness", "starts"):
            return bool(getattr(self.cfg, stage).enabled)
        return True

    def run(self, stages: tuple[str, ...] = STAGES_V2) -> dict[str, Any]:
        """Run the stages not done yet; stops cleanly (stage left open) at the deadline. The
        report is derived from the tables, so it is rewritten whenever it is asked for."""
        if "report" in stages:
            self.state.pop("report", None)
        for stage in stages:
            try:
                self.run_stage(stage)
            except DeadlineReached as exc:
                self.log(f"[{stage}] {exc}")
                return {"stopped_at": stage}
        return {k: v["result"] for k, v in self.state.items()}

    # --------------------------------------------------------------- paths
    def run_dir(self, kind: str, seed: int) -> Path:
        return self.out / "train" / f"{kind}_s{seed}"

    def arm_run_dir(self, arm: str, seed: int) -> Path:
        """The training run an arm's model comes from."""
        return self.out / "train" / train_run_name(self.cfg, arm, seed)

    def model_path(self, arm: str, seed: int) -> Path:
        return self.out / "models" / f"{model_key(arm, seed)}.pt"

    def tfail_dir(self, arm: str, seed: int, reps: tuple[int, int, int]) -> Path:
        return self.out / "tfail" / model_key(arm, seed) / f"size_{replication_name(reps)}"

    def starts_path(self, n_atoms: int) -> Path:
        return self.out / "starts" / f"N{n_atoms}.extxyz"

    def models(self) -> list[tuple[str, int]]:
        return [(arm, seed) for arm in self.cfg.arms() for seed in self.cfg.seeds_of(arm)]

    def _jobs_until_deadline(self, jobs: list[tuple], what: str) -> dict:
        """Run jobs ``workers`` at a time; no new group starts after the deadline."""
        cfg, results = self.cfg, {}
        for i in range(0, len(jobs), cfg.workers):
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise DeadlineReached(
                    f"time budget reached with {len(jobs) - i} {what} job(s) left; "
                    "rerun with --resume to continue"
                )
            results.update(
                run_jobs(jobs[i : i + cfg.workers], cfg.workers, cfg.threads_per_worker, self.logs, self.log)
            )
        return results

    # --------------------------------------------------------------- stages
    def stage_data(self) -> dict:
        return prepare_data(self.cfg, self.data_dir, self.log)

    def stage_train(self) -> dict:
        cfg, data = self.cfg, str(self.data_dir / "train_val.extxyz")
        runs = [(self.run_dir(k, seed), k == "sam", {}) for seed in cfg.seeds for k in ("sam", "adam")]
        for arm, rho in cfg.rho_arms().items():
            runs += [(self.arm_run_dir(arm, seed), True, {"rho": rho}) for seed in cfg.seeds_of(arm)]
        for arm, lmax in cfg.lmax_arms().items():
            runs += [(self.arm_run_dir(arm, seed), False, {"l_max": lmax}) for seed in cfg.seeds_of(arm)]
        jobs, finished = [], {}
        for run_dir, sam, grid in runs:
            name = f"train_{run_dir.name}"
            if (run_dir / "summary.json").is_file() and (run_dir / "best_model.pt").is_file():
                finished[name] = json.loads((run_dir / "summary.json").read_text())
                continue
            seed = int(run_dir.name.rpartition("_s")[2])
            conf = train_config(cfg, sam, seed, str(run_dir), data, **grid)
            jobs.append((name, train_job, {"config": conf}))
        self.log(
            f"  {len(cfg.seeds)} seed(s): SAM rho={cfg.rho:g} for {cfg.epochs} epochs and Adam for "
            f"{cfg.adam_factor * cfg.epochs} epochs each"
            + (f"; rho grid {', '.join(f'{r:g}' for r in cfg.rho_grid.rhos)}" if cfg.rho_grid.rhos else "")
            + (f"; l_max grid {', '.join(map(str, cfg.lmax_grid.l_max))}" if cfg.lmax_grid.l_max else "")
            + f"; {len(finished)} run(s) finished before, {len(jobs)} to train"
        )
        res = {**finished, **self._jobs_until_deadline(jobs, "training")}
        return {
            name: {
                k: s.get(k) for k in ("epochs", "stop_reason", "elapsed_s", "mean_epoch_time_s", "best_epoch")
            }
            for name, s in res.items()
        }

    def stage_select(self) -> dict:
        """Copy each arm's model file and write ``models.csv`` (one row per model)."""
        cfg, rows = self.cfg, []
        for seed in cfg.seeds:
            sam_dir, adam_dir = self.run_dir("sam", seed), self.run_dir("adam", seed)
            sam_log, adam_log = read_log(sam_dir), read_log(adam_dir)
            sam_best = min(sam_log, key=lambda r: r["val_loss"])
            picks = pick_epochs(adam_log, cfg.epochs, sam_best["val_forces_rmse_meV_A"])
            chosen = {"legato": (sam_dir / "best_model.pt", sam_best, True)}
            for arm, epoch in picks.items():
                row = next(r for r in adam_log if int(r["epoch"]) == epoch)
                chosen[arm] = (adam_dir / f"model_epoch_{epoch:04d}.pt", row, False)
            for arm in [*cfg.rho_arms(), *cfg.lmax_arms()]:
                if seed in cfg.seeds_of(arm):
                    run = self.arm_run_dir(arm, seed)
                    chosen[arm] = (
                        run / "best_model.pt",
                        min(read_log(run), key=lambda r: r["val_loss"]),
                        arm in cfg.rho_arms(),  # SAM (Table 1) or Adam (Table 4)
                    )
            for arm in [a for a in cfg.arms() if a in chosen]:
                src, row, sam = chosen[arm]
                dst = self.model_path(arm, seed)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                epoch = int(row["epoch"])
                rows.append(
                    {
                        "model": arm,
                        "model_seed": seed,
                        "label": arm_label(arm),
                        "optimizer": "SAM" if sam else "Adam",
                        "epoch": epoch,
                        # SAM: two forward/backward passes per step
                        "gradient_evaluations_epochs": epoch * (2 if sam else 1),
                        "val_forces_rmse_meV_A": row["val_forces_rmse_meV_A"],
                        "val_energy_rmse_meV_atom": row.get("val_energy_rmse_meV_atom", float("nan")),
                        "val_loss": row["val_loss"],
                        "train_elapsed_s": row.get("elapsed_s", float("nan")),
                    }
                )
            parts = [
                f"{r['model']} {r['val_forces_rmse_meV_A']:.1f} (epoch {r['epoch']})"
                for r in rows
                if r["model_seed"] == seed
            ]
            self.log(f"  seed {seed}: val force RMSE (meV/Å): " + ", ".join(parts))
        atomic_write_text(self.out / "models.csv", csv_text(rows), overwrite=True)
        return {"rows": rows}

    def stage_starts(self) -> dict:
        """One starts file per size: independent boxes, shared by every model (paired runs)."""
        from legato.data import read_frames

        cfg, st = self.cfg, self.cfg.starts
        pool = select_pool(read_frames(cfg.data, cfg.data_index), st.pool_temperatures_K)
        n0 = self.result("data")["base_n_atoms"]
        sizes = sorted({r for arm in cfg.arms() for r in cfg.sizes_of(arm)}, key=lambda r: r[0] * r[1] * r[2])
        done = {}
        for reps in sizes:
            n_atoms = n0 * reps[0] * reps[1] * reps[2]
            path = self.starts_path(n_atoms)
            if not path.is_file():
                self.log(
                    f"  N={n_atoms}: {cfg.tfail.instances_of(reps)} boxes from a pool of {len(pool)} frames"
                )
                boxes = build_starts(
                    pool,
                    reps,
                    cfg.tfail.instances_of(reps),
                    cfg.tfail.seed,
                    cfg.tfail.temperature_K,
                    st.steps,
                    st.model,
                    timestep_fs=st.timestep_fs,
                )
                settings = {**st.model_dump(mode="json"), "model": Path(st.model).name}
                write_starts(path, boxes, settings)
            done[n_atoms] = sum(int(a.info.get("redraws", 0)) for a in read_starts(path))
            self.log(f"  N={n_atoms}: {path.name}, {done[n_atoms]} redraw(s)")
        return {"redraws": done}

    def stage_tfail(self) -> dict:
        cfg, t = self.cfg, self.cfg.tfail
        n0 = self.result("data")["base_n_atoms"]
        jobs = []
        for arm, seed in self.models():
            for reps in cfg.sizes_of(arm):
                n_atoms = n0 * reps[0] * reps[1] * reps[2]
                out = self.tfail_dir(arm, seed, reps)
                instances = t.instances_of(reps)
                if self.ensemble_done(arm, seed, reps):
                    continue
                starts = self.starts_path(n_atoms) if cfg.starts.enabled else None
                kw = {
                    "model": str(self.model_path(arm, seed)),
                    "structure": str(self.data_dir / "base.extxyz"),
                    "sizes": [replication_name(reps)],
                    "instances": instances,
                    "protocol": t.protocol(reps).to_dict(),
                    "out": str(out),
                    "label": model_key(arm, seed),
                    "seed": t.seed,
                    "checkpoint_every": t.checkpoint_every,
                    "starts": None if starts is None else str(starts),
                }
                jobs.append(((n_atoms, seed), f"tfail_{model_key(arm, seed)}_N{n_atoms}", kw))
        # small sizes first (every model gets its base size early); within a size seed by seed,
        # so that a study stopped part-way has the arms' same seeds (stable sort keeps arm order)
        jobs.sort(key=lambda j: j[0])
        self.log(f"  {len(jobs)} ensemble(s) to run")
        res = self._jobs_until_deadline([(name, tfail_job, kw) for _, name, kw in jobs], "time-to-failure")
        return {"jobs": len(res)}

    def ensemble_done(self, arm: str, seed: int, reps: tuple[int, int, int]) -> bool:
        table = self.tfail_dir(arm, seed, reps) / "failures.csv"
        return table.is_file() and len(read_failure_table(table)) >= self.cfg.tfail.instances_of(reps)

    def missing_ensembles(self) -> list[str]:
        """``<arm>_s<seed>_N<atoms>`` of every time-to-failure ensemble without full results."""
        n0 = self.result("data")["base_n_atoms"]
        return [
            f"{model_key(arm, seed)}_N{n0 * reps[0] * reps[1] * reps[2]}"
            for arm, seed in self.models()
            for reps in self.cfg.sizes_of(arm)
            if not self.ensemble_done(arm, seed, reps)
        ]

    def table(self) -> FailureTable:
        """All failure tables of the study merged (labels ``<arm>_s<seed>``)."""
        tables = []
        for arm, seed in self.models():
            for reps in self.cfg.sizes_of(arm):
                p = self.tfail_dir(arm, seed, reps) / "failures.csv"
                if p.is_file():
                    tables.append(read_failure_table(p))
        return merge_tables(tables)

    def stage_errors(self) -> dict:
        from legato.data import read_frames
        from legato.models import load_model

        cfg = self.cfg
        test = read_frames(str(self.data_dir / "test.extxyz"))
        if cfg.errors.max_frames:
            test = test[: cfg.errors.max_frames]
        rows = []
        for arm, seed in self.models():
            e = frame_errors(load_model(self.model_path(arm, seed)), test, cfg.errors.batch_size)
            f_rmse, f_mae, e_rmse, _ = error_metrics(e, np.arange(len(test)))
            rows.append(
                {
                    "model": arm,
                    "model_seed": seed,
                    "test_frames": len(test),
                    "forces_rmse_meV_A": float(f_rmse),
                    "forces_mae_meV_A": float(f_mae),
                    "energy_rmse_meV_atom": float(e_rmse),
                }
            )
        atomic_write_text(self.out / "errors.csv", csv_text(rows), overwrite=True)
        return {"rows": rows}

    def stage_sharpness(self) -> dict:
        """Sharpness of every model; a study grown by new models measures only those (the
        section cannot change once the stage has run, so the earlier rows still hold)."""
        cfg, path = self.cfg, self.out / "sharpness.csv"
        before = {}
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as fh:
                before = {model_key(r["model"], int(r["model_seed"])): r for r in csv.DictReader(fh)}
        jobs = [
            (
                f"sharpness_{model_key(arm, seed)}",
                sharpness_job,
                sharpness_kwargs(
                    cfg,
                    self.model_path(arm, seed),
                    self.data_dir / "train_val.extxyz",
                    self.arm_run_dir(arm, seed),  # its split.json
                ),
            )
            for arm, seed in self.models()
            if model_key(arm, seed) not in before
        ]
        if before:
            self.log(f"  {len(self.models()) - len(jobs)} model(s) measured before, {len(jobs)} to measure")
        rows_key = ("model", "model_seed")
        res = {
            k.removeprefix("sharpness_"): v for k, v in self._jobs_until_deadline(jobs, "sharpness").items()
        }
        rows = []
        for arm, seed in self.models():
            key = model_key(arm, seed)
            values = res[key] if key in res else before[key]  # earlier rows: as written
            rows.append(
                {"model": arm, "model_seed": seed} | {k: v for k, v in values.items() if k not in rows_key}
            )
        atomic_write_text(self.out / "sharpness.csv", csv_text(rows), overwrite=True)
        return {"rows": rows}

    def stage_report(self) -> dict:
        return write_report(self)
