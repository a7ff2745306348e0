"""The robustness study, stage by stage and resumable (``legato study``, docs/study.md).

Stages (each recorded in ``OUT/stages.json`` when done; a rerun with ``resume`` skips done
stages, and interrupted training runs and MD batches continue from their checkpoints):

``data``      split the frames into train+validation and test files, pick the base box;
``train``     Allegro (Adam) and one Legato (SAM) model per rho of the grid (``legato.train``);
``rho``       time-to-failure of every model at the base size, Table 1, best rho;
``tfail``     ensembles of Allegro and the chosen Legato at every size (``legato.workflows.tfail``);
``scaling``   fits of t_failure = α·N^(−β) and Figs. 1, 2 and survival curves (``workflows.scaling``);
``errors``    energy / force errors on the test frames with bootstrap CIs (paper §4.3);
``sharpness`` sharpness around each model (Table 4, ``legato.train.sharpness``);
``landscape`` loss along one random direction (Fig. 5, ``legato.train.landscape``);
``report``    ``results.json`` and ``results.md`` (our numbers next to the paper's).

Independent jobs (trainings, MD ensembles) run in ``workers`` processes
(:func:`legato.workflows.jobs.run_jobs`); their output goes to ``OUT/logs/<job>.log``, and
while they run the last line each one wrote is shown every ``PROGRESS_EVERY_S`` seconds.
The analysis stages are :mod:`legato.workflows.study_report`; :func:`run_rho_search` runs
the first three stages over a ρ grid alone (Table 1, :mod:`legato.workflows.rho_search`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from legato.errors import LegatoError
from legato.fileio import atomic_save
from legato.stats.failures import FailureTable, merge_tables, read_failure_table
from legato.workflows.jobs import (
    ALLEGRO,
    PROGRESS_EVERY_S,
    STAGES,
    model_label,
    model_name,
    run_jobs,
    train_job,
)
from legato.workflows.rho_search import plot_rho, rho_rows, write_rho_table
from legato.workflows.staged import StagedWorkflow
from legato.workflows.starts import read_starts
from legato.workflows.study_config import (
    StudyConfig,
    dump_study_config,
    train_config,
    validate_study_config,
)
from legato.workflows.study_report import (
    force_errors,
    landscape,
    scaling_outputs,
    sharpness_jobs,
    write_report,
)
from legato.workflows.tfail import TfailProtocol, parse_sizes, replication_name, run_ensemble

__all__ = [
    "ALLEGRO",
    "PROGRESS_EVERY_S",
    "STAGES",
    "Study",
    "model_label",
    "model_name",
    "run_jobs",
    "run_rho_search",
    "run_study",
    "tfail_job",
    "train_job",
]

#: config keys that may change between a run and its resumption (they do not change results)
RUNTIME_KEYS = ("workers", "threads_per_worker")
#: what each stage does, as announced when it starts
STAGE_TITLES = {
    "data": "split the frames into training and test files, pick the base box",
    "train": "train the models",
    "rho": "time to failure of every model at the base size (Table 1)",
    "tfail": "time-to-failure ensembles at every size",
    "scaling": "fit t_failure = alpha * N^-beta, plot Figs. 1, 2 and survival curves",
    "errors": "energy and force errors on the test frames",
    "sharpness": "loss sharpness of the models",
    "landscape": "loss along a random direction",
    "report": "write results.md and results.json",
}


# ----------------------------------------------------------------------------- jobs
def tfail_job(
    model: str,
    structure: str,
    sizes: list,
    instances: int,
    protocol: dict,
    out: str,
    label: str,
    seed: int,
    checkpoint_every: int,
    starts: str | None = None,
) -> list[dict]:
    """One time-to-failure ensemble (see :func:`legato.workflows.tfail.run_ensemble`);
    ``starts``: a starts file (:func:`legato.workflows.starts.read_starts`) of its one size."""
    from legato.data import read_frames

    base = read_frames(structure)[0]
    boxes = None
    if starts is not None:
        frames = read_starts(starts)
        boxes = {len(frames[0]): {int(a.info["instance_seed"]): a for a in frames}}
    res = run_ensemble(
        model,
        base,
        sizes,
        instances,
        TfailProtocol(**protocol),
        out,
        label,
        seed=seed,
        checkpoint_every=checkpoint_every,
        progress=True,  # the MD progress bar goes to the job's log, shown by run_jobs
        starts=boxes,
    )
    return res.batches


def write_frames(path: Path, frames: list) -> None:
    """Write frames as extended XYZ, atomically."""
    import ase.io

    atomic_save(path, lambda fh: ase.io.write(fh, frames, format="extxyz"), binary=False)


def prepare_data(cfg, data_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Split the study's frames into ``train_val.extxyz`` and ``test.extxyz`` in ``data_dir``
    and pick the base box of the MD ensembles (``base.extxyz``).

    ``cfg`` is a study config (v1 or v2): it needs ``data``, ``data_index``, ``split_seed``,
    ``test_fraction``, ``train_frames`` and ``tfail`` (``structure``, ``structure_index``,
    ``temperature_K``)."""
    from legato.data import read_frames
    from legato.train.data import file_digest

    frames = read_frames(cfg.data, cfg.data_index)
    labels = [a.info.get("split") for a in frames]
    if all(lab in ("train", "validation", "val", "test") for lab in labels):
        test = [i for i, lab in enumerate(labels) if lab == "test"]
        how = "split labels of the data file"
    else:
        rng = np.random.default_rng(cfg.split_seed)
        n_test = max(1, int(round(cfg.test_fraction * len(frames))))
        test = sorted(rng.permutation(len(frames))[:n_test].tolist())
        how = f"seeded random {cfg.test_fraction:g} of the frames"
    if not test or len(test) == len(frames):
        raise LegatoError(f"{cfg.data}: need both test and training frames")
    test_set = set(test)
    train_val = [a for i, a in enumerate(frames) if i not in test_set]
    for key, values in cfg.train_frames.items():
        train_val = [a for a in train_val if a.info.get(key) in values]
        how += f"; training frames with {key} in {values}"
    if not train_val:
        raise LegatoError(f"{cfg.data}: no training frames left after train_frames")
    test_frames = [frames[i] for i in test]
    data_dir.mkdir(parents=True, exist_ok=True)
    write_frames(data_dir / "train_val.extxyz", train_val)
    write_frames(data_dir / "test.extxyz", test_frames)
    t = cfg.tfail
    if t.structure is not None:
        base = read_frames(t.structure)
        if not -len(base) <= t.structure_index < len(base):
            raise LegatoError(f"{t.structure}: no frame {t.structure_index}")
        base_atoms, origin = base[t.structure_index], f"{t.structure}@{t.structure_index}"
    else:  # the test MD frame whose temperature is closest to the MD temperature

        def score(a) -> float:
            temp = a.info.get("temperature_K")
            md = a.info.get("source", "md") == "md"
            return (0 if md else 1e9) + (abs(float(temp) - t.temperature_K) if temp else 1e6)

        k = min(range(len(test_frames)), key=lambda i: score(test_frames[i]))
        base_atoms, origin = test_frames[k], f"test frame {k} (data frame {test[k]})"
    base_atoms = base_atoms.copy()
    base_atoms.calc = None
    write_frames(data_dir / "base.extxyz", [base_atoms])
    info = {
        "data": cfg.data,
        "sha256": file_digest(cfg.data),
        "frames": len(frames),
        "train_val": len(train_val),
        "test": len(test_frames),
        "split": how,
        "base": origin,
        "base_n_atoms": len(base_atoms),
    }
    log(
        f"  {len(frames)} frames: {len(train_val)} train+validation, "
        f"{len(test_frames)} test ({how}); base box {origin}, {len(base_atoms)} atoms"
    )
    return info


# ----------------------------------------------------------------------------- the study
class Study(StagedWorkflow):
    """A study in folder ``out`` (see the module docstring). ``run()`` does what is left."""

    TITLES = STAGE_TITLES

    def __init__(
        self, cfg: StudyConfig, out: str | Path, resume: bool = False, log: Callable[[str], None] = print
    ) -> None:
        super().__init__(dump_study_config(cfg), out, resume, log, RUNTIME_KEYS)
        self.cfg = cfg
        self.data_dir, self.logs = self.out / "data", self.out / "logs"

    def models(self, grid_only: bool = False) -> list[float | None]:
        """rho of every model to train (None = Allegro)."""
        rhos: list[float | None] = list(self.cfg.rho_grid)
        if self.cfg.legato_rho is not None and self.cfg.legato_rho not in rhos:
            rhos.append(self.cfg.legato_rho)
        return rhos if grid_only else [None, *rhos]

    def model_path(self, rho: float | None) -> Path:
        return self.out / "models" / model_name(rho) / "best_model.pt"

    def tfail_dir(self, rho: float | None, reps_name: str) -> Path:
        return self.out / "tfail" / model_name(rho) / f"size_{reps_name}"

    def enabled(self, stage: str) -> bool:
        """False for an analysis stage that the config switches off (it then does nothing)."""
        if stage in ("errors", "sharpness", "landscape"):
            return bool(getattr(self.cfg, stage).enabled)
        return True

    def run(self, stages: tuple[str, ...] = STAGES, grid_only: bool = False) -> dict[str, Any]:
        """Run the listed stages that are not done yet; returns every stage's result.

        Stages switched off in the config are recorded as done without being announced."""
        keys = []
        for stage in stages:
            # the rho search alone (grid only) is recorded apart from the full study's stages
            key = f"{stage}_grid" if grid_only and stage in ("train", "rho") else stage
            keys.append(key)
            fn = getattr(self, f"stage_{stage}")
            self.run_stage(stage, key, (lambda f=fn: f(grid_only)) if stage in ("train", "rho") else fn)
        return {k: self.state[k]["result"] for k in keys if k in self.state}

    # --------------------------------------------------------------- stages
    def stage_data(self) -> dict:
        """Train+validation and test files; the base box of the MD ensembles."""
        return prepare_data(self.cfg, self.data_dir, self.log)

    def stage_train(self, grid_only: bool = False) -> dict:
        cfg = self.cfg
        data = str(self.data_dir / "train_val.extxyz")
        jobs = []
        for rho in self.models(grid_only):
            run_dir = str(self.out / "models" / model_name(rho))
            conf = train_config(cfg, rho, run_dir, data, cfg.threads_per_worker)
            jobs.append((f"train_{model_name(rho)}", train_job, {"config": conf}))
            tr = conf.get("training", {})
            self.log(
                f"  {model_label(rho)} ({'SAM' if rho is not None else 'Adam'}): up to "
                f"{tr.get('max_epochs', 'the default')} epochs or {tr.get('max_time_minutes', 'no')} minutes"
            )
        res = run_jobs(jobs, cfg.workers, cfg.threads_per_worker, self.logs, self.log)
        out = {}
        for rho in self.models(grid_only):
            s = res[f"train_{model_name(rho)}"]
            m = s.get("best_val_metrics", {})
            out[model_name(rho)] = {
                "label": model_label(rho),
                "rho": rho,
                "epochs": s.get("epochs"),
                "best_epoch": s.get("best_epoch"),
                "stop_reason": s.get("stop_reason"),
                "elapsed_s": s.get("elapsed_s"),
                "mean_epoch_time_s": s.get("mean_epoch_time_s"),
                "val_forces_rmse_meV_A": m.get("forces_rmse_meV_A"),
                "val_energy_rmse_meV_atom": m.get("energy_rmse_meV_atom"),
            }
            self.log(
                f"  {model_label(rho)}: {s.get('epochs')} epochs ({s.get('stop_reason')}), "
                f"val force RMSE {m.get('forces_rmse_meV_A', float('nan')):.1f} meV/Å"
            )
        return out

    def _tfail_jobs(self, rhos: list[float | None], sizes: list) -> list[tuple]:
        t = self.cfg.tfail
        n0 = self.result("data")["base_n_atoms"]
        jobs = []
        for reps in parse_sizes(sizes):
            for rho in rhos:
                name = replication_name(reps)
                if len(self.table(rho, [name])) >= t.instances:  # e.g. the base size, run by "rho"
                    self.log(f"  {model_label(rho)} at size {name}: {t.instances} runs done before, reused")
                    continue
                kw = {
                    "model": str(self.model_path(rho)),
                    "structure": str(self.data_dir / "base.extxyz"),
                    "sizes": [name],
                    "instances": t.instances,
                    "protocol": t.protocol(reps).to_dict(),
                    "out": str(self.tfail_dir(rho, name)),
                    "label": model_label(rho),
                    "seed": t.seed,
                    "checkpoint_every": t.checkpoint_every,
                }
                jobs.append(
                    (n0 * reps[0] * reps[1] * reps[2], (f"tfail_{model_name(rho)}_size{name}", tfail_job, kw))
                )
        jobs.sort(key=lambda j: -j[0])  # largest first: better load balance
        return [j for _, j in jobs]

    def table(self, rho: float | None, sizes: list | None = None) -> FailureTable:
        """The merged failure table of one model over ``sizes`` (default: all)."""
        tables = []
        for reps in parse_sizes(sizes or self.cfg.tfail.sizes):
            p = self.tfail_dir(rho, replication_name(reps)) / "failures.csv"
            if p.is_file():
                tables.append(read_failure_table(p))
        return merge_tables(tables)

    def stage_rho(self, grid_only: bool = False) -> dict:
        cfg = self.cfg
        rhos = self.models(grid_only)
        base = cfg.tfail.sizes[0]
        run_jobs(self._tfail_jobs(rhos, [base]), cfg.workers, cfg.threads_per_worker, self.logs, self.log)
        tables = {rho: self.table(rho, [base]) for rho in rhos}
        rows = rho_rows(tables, cfg.analysis.confidence)
        write_rho_table(rows, self.out / "table1_rho.csv", self.out / "table1_rho.md")
        plot_rho(rows, self.out / "table1_rho.png", cfg.tfail.budget(parse_sizes([base])[0]))
        grid = [r for r in rows if r["rho"] is not None and r["rho"] in cfg.rho_grid]
        best = max(grid, key=lambda r: r["mean"])["rho"] if grid else None
        chosen = cfg.legato_rho if cfg.legato_rho is not None else best
        if grid:
            self.log(f"  best rho of the grid by mean t_failure: {best:g}; Legato uses rho={chosen:g}")
        else:
            self.log(f"  no rho grid: Legato uses the configured rho={chosen:g}")
        return {"rows": rows, "best_rho": best, "legato_rho": chosen}

    def legato_rho(self) -> float:
        rho = self.result("rho")["legato_rho"]
        if rho is None:
            raise LegatoError("no Legato model: give rho_grid values or legato_rho")
        return float(rho)

    def stage_tfail(self) -> dict:
        cfg = self.cfg
        rhos = [None, self.legato_rho()]
        res = run_jobs(
            self._tfail_jobs(rhos, cfg.tfail.sizes), cfg.workers, cfg.threads_per_worker, self.logs, self.log
        )
        batches = [b for v in res.values() for b in v]
        return {"batches": batches}

    def stage_scaling(self) -> dict:
        return scaling_outputs(self)

    def stage_errors(self) -> dict:
        return force_errors(self) if self.cfg.errors.enabled else {}

    def stage_sharpness(self) -> dict:
        return sharpness_jobs(self) if self.cfg.sharpness.enabled else {}

    def stage_landscape(self) -> dict:
        return landscape(self) if self.cfg.landscape.enabled else {}

    def stage_report(self) -> dict:
        return write_report(self)


def run_study(
    config: StudyConfig | dict,
    out: str | Path,
    resume: bool = False,
    stages: tuple[str, ...] = STAGES,
    log: Callable[[str], None] = print,
) -> Study:
    """Run (or continue) a study; returns the :class:`Study` (results in ``study.state``)."""
    cfg = config if isinstance(config, StudyConfig) else validate_study_config(config)
    study = Study(cfg, out, resume=resume, log=log)
    study.run(stages)
    return study


def run_rho_search(
    config: StudyConfig | dict,
    out: str | os.PathLike,
    rhos: list[float] | None = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Train one SAM model per ρ and score each at the base size (paper Table 1, written by
    :mod:`legato.workflows.rho_search`); returns the table rows.

    ``config`` is a study config (:class:`StudyConfig` or dict); ``rhos`` replaces its
    ``rho_grid``. Finished models and ensembles in ``out`` are reused with ``resume``."""
    cfg = config if isinstance(config, StudyConfig) else validate_study_config(config)
    if rhos is not None:
        cfg = cfg.model_copy(update={"rho_grid": [float(r) for r in rhos]})
        cfg = validate_study_config(cfg.model_dump(mode="json"))
    if not cfg.rho_grid:
        raise LegatoError("no rho values to search")
    study = Study(cfg, out, resume=resume, log=log)
    study.run(("data", "train", "rho"), grid_only=True)
    return study.result("rho_grid")["rows"]
