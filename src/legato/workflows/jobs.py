"""Jobs of the study workflows: model names, the job runner and the training job.

:func:`run_jobs` runs named jobs, ``workers`` at a time, in spawned processes; each job's
output goes to ``<log_dir>/<job>.log``, and while they run the last line each one wrote is
shown every :data:`PROGRESS_EVERY_S` seconds. Nothing here imports another workflow module,
so the study (:mod:`legato.workflows.study`) and its report stages
(:mod:`legato.workflows.study_report`) both build on it; torch and the trainer are imported
only inside the jobs that use them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from legato.errors import LegatoError
from legato.fileio import move_aside

#: the study's stages, in order (see :mod:`legato.workflows.study`)
STAGES = ("data", "train", "rho", "tfail", "scaling", "errors", "sharpness", "landscape", "report")
ALLEGRO = "allegro"
#: seconds between progress lines while jobs run
PROGRESS_EVERY_S = 20.0
#: seconds between a worker's checks that the process that started it is still alive
PARENT_CHECK_S = 1.0


def model_name(rho: float | None) -> str:
    """Folder / job name of a model: ``allegro`` or ``legato_rho<rho>``."""
    return ALLEGRO if rho is None else f"legato_rho{rho:g}"


def model_label(rho: float | None) -> str:
    """Label of a model in tables and figures: ``Allegro`` or ``Legato rho=<rho>``."""
    return "Allegro" if rho is None else f"Legato rho={rho:g}"


def _logged(fn: Callable[..., Any], kwargs: dict, log_path: str, threads: int) -> Any:
    """Run ``fn(**kwargs)`` with stdout/stderr going to ``log_path`` (in a worker)."""
    import torch

    torch.set_num_threads(threads)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with (
        open(log_path, "a", encoding="utf-8", buffering=1) as fh,  # line-buffered: live logs
        contextlib.redirect_stdout(fh),
        contextlib.redirect_stderr(fh),
    ):
        try:
            return fn(**kwargs)
        except BaseException:
            traceback.print_exc()
            raise


def _exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker as soon as ``parent_pid`` is no longer its parent.

    A study stopped with SIGTERM or SIGKILL cannot clean up its pool, and its workers would
    otherwise run their jobs to the end beside whatever runs next. Jobs checkpoint through
    atomic writes, so ending one between two writes loses only the steps since the last one."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="legato-parent-watch").start()


def last_log_line(path: Path, width: int = 90) -> str:
    """The last non-empty line (or progress-bar update) of a log file, shortened to ``width``."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4096))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    parts = [p.strip() for p in tail.replace("\r", "\n").split("\n") if p.strip()]
    line = " ".join(parts[-1].split()) if parts else ""
    return line if len(line) <= width else line[: width - 1] + "…"


class _Progress:
    """A thread that, every ``every`` seconds, reports what each running job last logged."""

    def __init__(self, log: Callable[[str], None], log_dir: Path, total: int, every: float) -> None:
        stream = sys.stdout  # captured before a job in this process redirects stdout to its log
        self.emit = (lambda m: print(m, file=stream, flush=True)) if log is print else log
        self.log_dir, self.total, self.every = log_dir, total, every
        self.running: list[str] = []
        self.finished = 0
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            elapsed = time.perf_counter() - self.t0
            for name in list(self.running):
                last = last_log_line(self.log_dir / f"{name}.log") or "(started, nothing logged yet)"
                self.emit(f"  {elapsed:4.0f} s, {self.finished}/{self.total} done | {name}: {last}")


def run_jobs(
    jobs: list[tuple[str, Callable[..., Any], dict]],
    workers: int,
    threads: int,
    log_dir: Path,
    log: Callable[[str], None] = print,
    every: float | None = None,
) -> dict[str, Any]:
    """Run named jobs, ``workers`` at a time (in spawned processes if more than one).

    Each job's output goes to ``log_dir/<name>.log``; every ``every`` seconds (default
    :data:`PROGRESS_EVERY_S`) the last line of each running job's log is reported through
    ``log``. All jobs run to the end even if one fails; then the first error is raised.
    Worker processes end with this process, however it is stopped."""
    results: dict[str, Any] = {}
    errors: list[tuple[str, BaseException]] = []
    if not jobs:
        return results
    t0 = time.perf_counter()
    n_proc = 1 if workers <= 1 or len(jobs) == 1 else min(workers, len(jobs))
    log(
        f"  {len(jobs)} job(s) in {n_proc} process(es) of {threads} thread(s); "
        f"per-job logs: {log_dir}/<job>.log"
    )
    progress = _Progress(log, log_dir, len(jobs), PROGRESS_EVERY_S if every is None else every)

    def finished(name: str, exc: BaseException | None) -> None:
        progress.finished += 1
        if exc is None:
            log(f"  done: {name} ({time.perf_counter() - t0:.0f} s) [{progress.finished}/{len(jobs)}]")
        else:
            errors.append((name, exc))
            log(f"  FAILED: {name} ({type(exc).__name__}); see {log_dir / (name + '.log')}")

    with progress:
        if n_proc == 1:
            for name, fn, kw in jobs:
                progress.running = [name]
                try:
                    results[name] = _logged(fn, kw, str(log_dir / f"{name}.log"), threads)
                except Exception as exc:  # noqa: BLE001 — reported after the other jobs
                    finished(name, exc)
                else:
                    finished(name, None)
            progress.running = []
        else:
            with ProcessPoolExecutor(
                max_workers=n_proc,
                mp_context=get_context("spawn"),
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            ) as pool:
                futures = {
                    pool.submit(_logged, fn, kw, str(log_dir / f"{name}.log"), threads): name
                    for name, fn, kw in jobs
                }
                pending = set(futures)
                while pending:
                    progress.running = [futures[f] for f in futures if f.running()]
                    done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                    for fut in done:
                        try:
                            results[futures[fut]] = fut.result()
                        except Exception as exc:  # noqa: BLE001
                            finished(futures[fut], exc)
                        else:
                            finished(futures[fut], None)
    if errors:
        name, exc = errors[0]
        if isinstance(exc, LegatoError):
            raise LegatoError(f"job {name}: {exc}")
        raise LegatoError(
            f"job {name} failed ({type(exc).__name__}: {exc}); see {log_dir / (name + '.log')}"
        ) from exc
    return results


def train_job(config: dict) -> dict:
    """Train one model (or continue / skip a run already in its folder)."""
    from legato.train.config import parse_config
    from legato.train.trainer import Trainer

    run_dir = Path(config["run_dir"])
    if (run_dir / "summary.json").is_file() and (run_dir / "best_model.pt").is_file():
        return json.loads((run_dir / "summary.json").read_text())
    if (run_dir / "checkpoint.pt").is_file():
        return Trainer.resume(run_dir).fit()
    if run_dir.exists() and any(run_dir.iterdir()):  # killed in its first epoch
        moved = move_aside(run_dir, "aborted")
        print(f"{run_dir} held an unfinished run with no checkpoint; moved it to {moved}")
    return Trainer.create(parse_config(config)).fit()
