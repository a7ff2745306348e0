"""The training loop: Allegro with a base optimiser (Adam) or with SAM / ASAM (Legato).

Run folder layout (``run_dir``):

- ``config.yaml``   the resolved config (every default written out, absolute data path)
- ``split.json``    data file, its SHA-256, seed and the train / validation frame indices
- ``stats.json``    training-set statistics used to build the model (ν̄, shifts, force RMS)
- ``log.csv``       one row per epoch: lr, times, train and validation metrics
- ``learning_curves.png``
- ``checkpoint.pt`` written atomically after every epoch (exact resume)
- ``best_model.pt`` EMA weights with the lowest validation loss (``legato.load_model``)
- ``last_model.pt`` EMA weights at the end of training
- ``summary.json``  why and when training stopped, best epoch and its metrics

Per-epoch train metrics are accumulated over the epoch's batches with the live weights at
each step (before the update); validation uses the EMA weights.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from legato.data import dataset_statistics
from legato.data.graph import Graph
from legato.dtypes import as_dtype
from legato.errors import LegatoError
from legato.fileio import ensure_writable_dir, move_aside
from legato.train import checkpoint as ckpt
from legato.train.config import (
    TrainConfig,
    _nearest,
    apply_training_overrides,
    dump_config,
    load_config,
    model_parameters,
    parse_config,
    resolved_model_section,
)
from legato.train.curves import CsvLog, plot_learning_curves
from legato.train.data import (
    check_labels,
    datasets_digest,
    frames_to_graphs,
    infer_type_names,
    iterate_batches,
    make_split,
    n_batches,
    read_datasets,
    resolved_paths,
)
from legato.train.ema import EMA
from legato.train.loss import LossSpec, loss_terms
from legato.train.metrics import MetricsAccumulator
from legato.train.sam import SAM

PLOT_EVERY = 10  # epochs between learning-curve redraws (and at the end)


def make_optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Base optimiser by name from ``torch.optim``, wrapped in SAM when enabled."""
    oc = cfg.optimizer
    names = [n for n in dir(torch.optim) if _is_optimizer(getattr(torch.optim, n))]
    cls = getattr(torch.optim, oc.name, None)
    if not _is_optimizer(cls) or oc.name == "Optimizer":
        raise LegatoError(f"unknown optimizer '{oc.name}'{_nearest(oc.name, names)}")
    sig = inspect.signature(cls.__init__).parameters
    kw: dict[str, Any] = {"lr": oc.lr}
    defaults = type(oc)()
    for field in ("betas", "eps", "amsgrad", "weight_decay"):
        value = getattr(oc, field)
        if field in sig:
            kw[field] = tuple(value) if field == "betas" else value
        elif value != getattr(defaults, field):
            raise LegatoError(f"optimizer.{field} is not an argument of torch.optim.{oc.name}")
    for key, value in oc.kwargs.items():
        if key not in sig or key in ("self", "params"):
            raise LegatoError(
                f"optimizer.kwargs.{key} is not an argument of torch.optim.{oc.name}"
                f"{_nearest(key, [k for k in sig if k not in ('self', 'params')])}"
            )
        kw[key] = tuple(value) if isinstance(value, list) else value
    try:
        if cfg.sam.enabled:
            s = cfg.sam
            return SAM(params, cls, rho=s.rho, adaptive=s.adaptive, eta=s.eta, **kw)
        return cls(params, **kw)
    except (TypeError, ValueError) as exc:
        raise LegatoError(f"cannot build optimizer {oc.name}: {exc}") from None


def _is_optimizer(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class Trainer:
    """One training run in one folder. Use :meth:`create` or :meth:`resume`, then :meth:`fit`."""

    def __init__(
        self, cfg: TrainConfig, run_dir: Path, split: dict[str, Any], frames: list | None = None
    ) -> None:
        self.cfg, self.run_dir, self.split = cfg, Path(run_dir), split
        t = cfg.training
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        if t.deterministic:
            torch.use_deterministic_algorithms(True)
        self.dtype = as_dtype(t.dtype)
        self.progress = t.progress
        seed_everything(t.seed)
        self._load_data(frames)
        self.model = self._build_model()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(cfg, self.params)
        self.sam = self.optimizer if isinstance(self.optimizer, SAM) else None
        sc = cfg.lr_scheduler
        self.scheduler = None
        if sc.name == "ReduceLROnPlateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer,
                mode="min",
                factor=sc.factor,
                patience=sc.patience,
                threshold=sc.threshold,
                threshold_mode=sc.threshold_mode,
                cooldown=sc.cooldown,
                min_lr=sc.min_lr,
            )
        self.ema = EMA(self.model, cfg.ema.decay, cfg.ema.use_num_updates) if cfg.ema.enabled else None
        self.shuffle_gen = torch.Generator().manual_seed(t.seed)
        self.log = CsvLog(self.run_dir / "log.csv")
        # bookkeeping carried in the checkpoint
        self.epoch = 0
        self.elapsed_s = 0.0
        self.epoch_times: list[float] = []
        self.best_loss = math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_metrics: dict[str, float] = {}
        self.es_best = math.inf
        self.es_bad = 0
        self.stop_reason: str | None = None

    # ------------------------------------------------------------ construction
    @classmethod
    def create(cls, config: TrainConfig | str | Path) -> Trainer:
        """Start a new run: make the run folder, record the resolved config and split."""
        cfg = config if isinstance(config, TrainConfig) else load_config(config)
        cfg = cfg.model_copy(deep=True)
        run_dir = Path(cfg.run_dir).expanduser().resolve()
        unfinished = ckpt.check_new_run_folder(run_dir)
        # checked before any work; folders made here are removed again if the start fails
        made = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
        ensure_writable_dir(run_dir.parent if unfinished else run_dir, "run folder")
        try:
            trainer = cls._prepare(cfg, run_dir)
        except BaseException:
            for p in made:  # innermost first; only folders still empty
                with contextlib.suppress(OSError):
                    p.rmdir()
            raise
        if unfinished:
            moved = move_aside(run_dir)
            tqdm.write(f"moved the unfinished run folder {run_dir} aside to {moved}")
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.atomic_write_text(run_dir / "config.yaml", dump_config(trainer.cfg))
        ckpt.atomic_write_text(run_dir / "split.json", json.dumps(trainer.split))
        ckpt.atomic_write_text(run_dir / "stats.json", json.dumps(trainer._stats_info(), indent=1))
        return trainer

    @classmethod
    def _prepare(cls, cfg: TrainConfig, run_dir: Path) -> Trainer:
        """Read the data, fix the split and build the trainer (nothing written yet)."""
        data_path = resolved_paths(cfg.data.path)
        frames = read_datasets(data_path, cfg.data.index)
        model = dict(cfg.model)
        model.setdefault("type_names", infer_type_names(frames))
        cfg.model = resolved_model_section(model)
        cfg.data.path = data_path
        if cfg.training.init_from is not None:
            cfg.training.init_from = str(Path(cfg.training.init_from).expanduser().resolve())
        cfg.run_dir = str(run_dir)
        seed = cfg.data.split_seed if cfg.data.split_seed is not None else cfg.training.seed
        cfg.data.split_seed = seed
        train_idx, val_idx = make_split(frames, cfg.data, seed)
        split = {
            "data_path": data_path,
            "sha256": datasets_digest(data_path),
            "index": cfg.data.index,
            "n_frames": len(frames),
            "seed": seed,
            "train": train_idx,
            "val": val_idx,
        }
        return cls(cfg, run_dir, split, frames)

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        max_epochs: int | None = None,
        max_time_minutes: float | None = None,
    ) -> Trainer:
        """Continue a run from its last checkpoint (optionally with a larger budget)."""
        run_dir = Path(run_dir).expanduser().resolve()
        if not run_dir.is_dir():
            raise LegatoError(f"run folder not found: {run_dir}")
        if not (run_dir / "config.yaml").is_file():
            raise LegatoError(f"{run_dir} is not a legato run folder (no config.yaml)")
        cfg = load_config(run_dir / "config.yaml")
        overrides = {"max_epochs": max_epochs, "max_time_minutes": max_time_minutes}
        changed = apply_training_overrides(cfg, overrides)
        ensure_writable_dir(run_dir, "run folder")
        state = ckpt.load_checkpoint(run_dir / ckpt.CHECKPOINT_NAME)
        split = json.loads((run_dir / "split.json").read_text())
        for path in [split["data_path"]] if isinstance(split["data_path"], str) else split["data_path"]:
            if not Path(path).is_file():
                raise LegatoError(f"data file {path} of the run is gone")
        if datasets_digest(split["data_path"]) != split["sha256"]:
            raise LegatoError(f"data file {split['data_path']} changed since the run started")
        trainer = cls(cfg, run_dir, split)
        trainer._load_state(state)
        if changed:
            ckpt.atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
        return trainer

    def _load_data(self, frames: list | None) -> None:
        cfg = self.cfg
        if frames is None:
            frames = read_datasets(self.split["data_path"], self.split["index"])
        if len(frames) != self.split["n_frames"]:
            raise LegatoError("the data file no longer matches the recorded split")
        names = cfg.model["type_names"]
        r_max = float(cfg.model.get("r_max", model_parameters()["r_max"].default))
        pick = lambda idx: [frames[i] for i in idx]  # noqa: E731
        self.train_graphs = frames_to_graphs(
            pick(self.split["train"]), names, r_max, self.dtype, self.progress, "train graphs"
        )
        self.val_graphs = frames_to_graphs(
            pick(self.split["val"]), names, r_max, self.dtype, self.progress, "val graphs"
        )
        from legato.data import keys as K

        needs = {
            K.TOTAL_ENERGY: cfg.loss.energy > 0,
            K.FORCES: cfg.loss.forces > 0,
            K.STRESS: cfg.loss.stress > 0,
        }
        check_labels(self.train_graphs + self.val_graphs, needs, self.split["data_path"])
        self.type_names = list(names)
        self.stats = dataset_statistics(self.train_graphs, len(names))
        scale = self.stats.force_rms if cfg.loss.normalize else 1.0
        self.loss_spec = LossSpec(cfg.loss.energy, cfg.loss.forces, cfg.loss.stress, scale)

    def _build_model(self) -> torch.nn.Module:
        from legato.models.io import build_model, finetuning_start

        init, dtype = self.cfg.training.init_from, self.cfg.training.dtype
        if init is None:
            return build_model(self.cfg.model, self.stats, dtype=dtype)
        return finetuning_start(init, self.cfg.model, dtype, "training.init_from")

    def _stats_info(self) -> dict[str, Any]:
        s = self.stats
        return {
            "avg_num_neighbors": s.avg_num_neighbors,
            "energy_shifts_eV": s.energy_shifts,
            "force_rms_eV_A": s.force_rms,
            "force_rms_per_species_eV_A": s.force_rms_per_species,
            "force_std_eV_A": s.force_std,
            "n_train_frames": s.n_frames,
            "n_val_frames": len(self.val_graphs),
            "type_names": self.type_names,
            "n_parameters": sum(p.numel() for p in self.params),
        }

    # ------------------------------------------------------------ checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "model": {k: v.clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "ema": self.ema.state_dict() if self.ema else None,
            "rng": ckpt.rng_state(self.shuffle_gen),
            "elapsed_s": self.elapsed_s,
            "epoch_times": list(self.epoch_times),
            "best": {
                "loss": self.best_loss,
                "epoch": self.best_epoch,
                "state": self.best_state,
                "metrics": self.best_metrics,
            },
            "early_stopping": {"best": self.es_best, "bad_epochs": self.es_bad},
            "stop_reason": self.stop_reason,
        }

    def _load_state(self, s: dict[str, Any]) -> None:
        self.model.load_state_dict(s["model"])
        self.optimizer.load_state_dict(s["optimizer"])
        if self.scheduler is not None and s["scheduler"] is not None:
            self.scheduler.load_state_dict(s["scheduler"])
        if self.ema is not None and s["ema"] is not None:
            self.ema.load_state_dict(s["ema"])
        ckpt.set_rng_state(s["rng"], self.shuffle_gen)
        self.epoch = int(s["epoch"])
        self.elapsed_s = float(s["elapsed_s"])
        self.epoch_times = list(s["epoch_times"])
        b = s["best"]
        self.best_loss, self.best_epoch = float(b["loss"]), int(b["epoch"])
        self.best_state, self.best_metrics = b["state"], dict(b["metrics"])
        self.es_best = float(s["early_stopping"]["best"])
        self.es_bad = int(s["early_stopping"]["bad_epochs"])
        self.stop_reason = s["stop_reason"]
        self.log.truncate_after(self.epoch)
        if self.best_state is not None:  # the file may predate the checkpoint: rewrite it
            self._save_model(self.best_state, self.run_dir / "best_model.pt")

    # ------------------------------------------------------------ model files
    def _ema_state(self) -> dict[str, torch.Tensor]:
        ctx = self.ema.average_parameters(self.model) if self.ema else contextlib.nullcontext()
        with ctx:
            return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _save_model(self, state: dict[str, torch.Tensor], path: Path) -> None:
        from legato import save_model

        live = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(state)
        extra = {
            "kind": "allegro-legato" if self.sam else "allegro",
            "loss": {
                "energy": self.loss_spec.energy,
                "forces": self.loss_spec.forces,
                "stress": self.loss_spec.stress,
                "scale": self.loss_spec.scale,
            },
            "sam": self.cfg.sam.model_dump(),
            "optimizer": self.cfg.optimizer.name,
            "init_from": self.cfg.training.init_from,
            "best_epoch": self.best_epoch,
            "val_metrics": self.best_metrics,
            "run_dir": str(self.run_dir),
            # σ of the training force components: the MD outlier detector's 5σ rule needs it
            # even when the run folder is gone
            "force_std": float(self.stats.force_std),
        }
        try:
            save_model(self.model, path, extra=extra)
        finally:
            self.model.load_state_dict(live)

    # ------------------------------------------------------------ one epoch
    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _step(self, batch: Graph, acc: MetricsAccumulator) -> float:
        clip = self.cfg.training.grad_clip_norm
        out = self.model(batch)
        loss, _ = loss_terms(out, batch, self.loss_spec)
        self._check_finite(float(loss.detach()), "training")
        loss.backward()
        acc.update(out, batch)
        if self.sam is not None:
            self.sam.first_step(zero_grad=True)
            loss2, _ = loss_terms(self.model(batch), batch, self.loss_spec)
            self._check_finite(float(loss2.detach()), "training (SAM-perturbed)")
            loss2.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(self.params, clip)
            self.sam.second_step(zero_grad=True)
        else:
            if clip:
                torch.nn.utils.clip_grad_norm_(self.params, clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        return float(loss.detach())

    def _check_finite(self, loss: float, what: str) -> None:
        """A non-finite loss ends the run with one line; the last checkpoint stays as it was."""
        if math.isfinite(loss):
            return
        epoch = self.epoch + 1
        kept = (
            f"the checkpoint of epoch {self.epoch} in {self.run_dir} is intact"
            if self.epoch
            else "no checkpoint was written"
        )
        hint = (
            "check the validation frames' labels"
            if what == "validation"
            else "try a smaller optimizer.lr or set training.grad_clip_norm"
        )
        raise LegatoError(f"the {what} loss became {loss} in epoch {epoch} ({kept}; {hint})")

    def _train_epoch(self) -> dict[str, float]:
        self.model.train()
        n = len(self.train_graphs)
        bs = self.cfg.training.batch_size
        if self.cfg.training.shuffle:
            order = torch.randperm(n, generator=self.shuffle_gen).tolist()
        else:
            order = list(range(n))
        acc = MetricsAccumulator(self.type_names, self.loss_spec)
        bar = tqdm(
            total=n_batches(n, bs),
            desc=f"epoch {self.epoch + 1}",
            leave=False,
            disable=not self.progress,
        )
        for batch in iterate_batches(self.train_graphs, bs, order):
            loss = self._step(batch, acc)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}")
        bar.close()
        return acc.compute()

    def evaluate(self, graphs: list[Graph]) -> dict[str, float]:
        """Metrics of the EMA weights (or live weights without EMA) on ``graphs``."""
        acc = MetricsAccumulator(self.type_names, self.loss_spec)
        ctx = self.ema.average_parameters(self.model) if self.ema else contextlib.nullcontext()
        self.model.eval()
        with ctx:
            bs = self.cfg.training.val_batch_size
            for batch in tqdm(
                iterate_batches(graphs, bs),
                total=n_batches(len(graphs), bs),
                desc="validation",
                leave=False,
                disable=not self.progress,
            ):
                acc.update(self.model(batch), batch)
        self.model.train()
        return acc.compute()

    # ------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        """Train until a stopping rule fires; returns the summary dict."""
        t = self.cfg.training
        if self.stop_reason is not None and not self._budget_left():
            tqdm.write(f"run already finished ({self.stop_reason}); nothing to do")
            return self._finish()
        self.stop_reason = None
        while self.stop_reason is None:
            t0 = time.perf_counter()
            train = self._train_epoch()
            t1 = time.perf_counter()
            self._check_finite(train["loss"], "training")
            val = self.evaluate(self.val_graphs) if self.val_graphs else {}
            if val:
                self._check_finite(val["loss"], "validation")
            t2 = time.perf_counter()
            self.epoch += 1
            val_loss = val["loss"] if val else train["loss"]
            lr = self._lr()
            if self.scheduler is not None:
                self.scheduler.step(val_loss)
            improved = val_loss < self.best_loss
            if improved:
                self.best_loss, self.best_epoch = val_loss, self.epoch
                self.best_state = self._ema_state()
                self.best_metrics = dict(val or train)
            es = self.cfg.early_stopping
            if val_loss < self.es_best - es.delta:
                self.es_best, self.es_bad = val_loss, 0
            else:
                self.es_bad += 1
            epoch_time = t2 - t0
            self.epoch_times.append(epoch_time)
            self.elapsed_s += epoch_time
            self.stop_reason = self._stopping_rule()
            row: dict[str, Any] = {
                "epoch": self.epoch,
                "lr": lr,
                "epoch_time_s": epoch_time,
                "train_time_s": t1 - t0,
                "val_time_s": t2 - t1,
                "elapsed_s": self.elapsed_s,
            }
            row.update({f"train_{k}": v for k, v in train.items()})
            row.update({f"val_{k}": v for k, v in val.items()})
            self.log.append(row)
            ckpt.save_checkpoint(self.run_dir / ckpt.CHECKPOINT_NAME, self._state())
            if improved:
                self._save_model(self.best_state, self.run_dir / "best_model.pt")
            if t.save_every_epoch_model:
                self._save_model(self._ema_state(), self.run_dir / f"model_epoch_{self.epoch:04d}.pt")
            if self.epoch % PLOT_EVERY == 0:
                self._plot()
            self.elapsed_s += time.perf_counter() - t2  # saving counts towards the budget
            tqdm.write(self._epoch_line(train, val, lr, epoch_time, improved))
        return self._finish()

    def _budget_left(self) -> bool:
        t = self.cfg.training
        if self.stop_reason == "max_epochs":
            return self.epoch < t.max_epochs
        if self.stop_reason == "max_time":
            return t.max_time_minutes is None or self._time_fits()
        return False

    def _time_fits(self) -> bool:
        budget = self.cfg.training.max_time_minutes
        if budget is None or not self.epoch_times:
            return True
        mean = sum(self.epoch_times) / len(self.epoch_times)
        return self.elapsed_s + mean <= 60.0 * budget

    def _stopping_rule(self) -> str | None:
        es = self.cfg.early_stopping
        if self.epoch >= self.cfg.training.max_epochs:
            return "max_epochs"
        if es.enabled and self.es_bad >= es.patience:
            return "early_stopping"
        if es.enabled and self._lr() < es.min_lr:
            return "min_lr"
        if not self._time_fits():
            return "max_time"
        return None

    def _epoch_line(self, train: dict, val: dict, lr: float, dt: float, improved: bool) -> str:
        def part(m: dict, name: str) -> str:
            if not m:
                return ""
            s = f" | {name} loss {m['loss']:.4g}"
            if "forces_rmse_meV_A" in m:
                s += f" F {m['forces_rmse_meV_A']:.1f} meV/Å"
            if "energy_rmse_meV_atom" in m:
                s += f" E {m['energy_rmse_meV_atom']:.2f} meV/atom"
            return s

        star = " *" if improved else ""
        head = f"epoch {self.epoch:4d}{part(train, 'train')}{part(val, 'val')}"
        return f"{head} | lr {lr:.2e} | {dt:.1f} s{star}"

    def _plot(self) -> None:
        how = f"SAM rho={self.cfg.sam.rho:g}" if self.sam else self.cfg.optimizer.name
        title = f"{self.run_dir.name} ({how})"
        plot_learning_curves(self.log.path, self.run_dir / "learning_curves.png", title)

    def _finish(self) -> dict[str, Any]:
        self._plot()
        self._save_model(self._ema_state(), self.run_dir / "last_model.pt")
        n = len(self.epoch_times)
        summary = {
            "stop_reason": self.stop_reason,
            "epochs": self.epoch,
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_loss,
            "best_val_metrics": self.best_metrics,
            "elapsed_s": self.elapsed_s,
            "mean_epoch_time_s": sum(self.epoch_times) / n if n else None,
            "optimizer": self.cfg.optimizer.name,
            "sam": self.cfg.sam.model_dump() if self.sam else None,
            "n_train": len(self.train_graphs),
            "n_val": len(self.val_graphs),
        }
        ckpt.atomic_write_text(self.run_dir / "summary.json", ckpt.finite_json(summary))
        best = self.run_dir / "best_model.pt"
        if self.best_state is not None and best.is_file():
            what = f"best epoch {self.best_epoch}, val loss {self.best_loss:.5g}; model: {best}"
        else:
            what = f"model: {self.run_dir / 'last_model.pt'}"
        tqdm.write(f"stopped after epoch {self.epoch} ({self.stop_reason}); {what}")
        return summary


def train(config: TrainConfig | dict | str | Path) -> dict[str, Any]:
    """Train from a config (object, dict or YAML path) in a new run folder."""
    if isinstance(config, dict):
        config = parse_config(config)
    return Trainer.create(config).fit()


def resume(run_dir: str | Path, **overrides: Any) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its last checkpoint."""
    return Trainer.resume(run_dir, **overrides).fit()
