"""Label frames with a quantum-mechanical (or any ASE) calculator: energy, forces, stress.

A calculator is named by a string: ``tblite:GFN1-xTB``, ``tblite:GFN2-xTB``, ``tblite:IPEA1-xTB``
(the default real QM method, via tblite's ASE calculator), ``emt`` or ``lj`` (ASE's toy
potentials), or ``python:package.module:factory`` for any importable zero-argument factory
returning an ASE calculator. Labelled frames are appended one at a time to a plain extxyz
file (flushed and fsynced), so an interruption loses nothing already written and a rerun
skips frames already labelled. A frame whose calculation fails (e.g. the SCF does not
converge) is skipped and logged to ``OUT.failed.jsonl``, never stored with made-up values.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator

from legato.errors import LegatoError
from legato.fileio import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

#: tblite settings used unless overridden (accuracy 1, electronic temperature 300 K, ...)
TBLITE_DEFAULTS: dict[str, Any] = {
    "accuracy": 1.0,
    "electronic_temperature": 300.0,
    "max_iterations": 250,
    "mixer_damping": 0.4,
    "charge": 0,
    "multiplicity": 1,
}
#: info key holding the index of a frame in the labeller's input file
SOURCE_INDEX = "source_index"


def _tblite_methods() -> tuple[str, ...]:
    return ("GFN1-xTB", "GFN2-xTB", "IPEA1-xTB")


def make_calculator(name: str, settings: dict[str, Any] | None = None) -> Calculator:
    """A fresh ASE calculator for ``name`` (see module docstring) with ``settings``."""
    settings = dict(settings or {})
    kind, _, rest = name.partition(":")
    if kind == "tblite":
        if rest not in _tblite_methods():
            raise LegatoError(f"unknown tblite method {rest!r}: choose one of {', '.join(_tblite_methods())}")
        try:
            from tblite.ase import TBLite
        except ImportError:
            raise LegatoError("tblite is not installed: pip install tblite") from None
        params = {**TBLITE_DEFAULTS, **settings}
        return TBLite(method=rest, verbosity=0, **params)
    if kind == "emt" and not rest:
        from ase.calculators.emt import EMT

        return EMT(**settings)
    if kind == "lj" and not rest:
        from ase.calculators.lj import LennardJones

        return LennardJones(**settings)
    if kind == "python":
        mod_name, _, attr = rest.rpartition(":")
        try:
            factory = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError, ValueError):
            raise LegatoError(f"cannot import calculator factory {rest!r}") from None
        return factory(**settings)
    raise LegatoError(
        f"unknown calculator {name!r}: use tblite:GFN1-xTB, tblite:GFN2-xTB, emt, lj or python:module:factory"
    )


def calculator_metadata(name: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Method, program, program version and settings of a named calculator."""
    import ase

    kind, _, rest = name.partition(":")
    meta: dict[str, Any] = {"calculator": name, "ase_version": ase.__version__}
    if kind == "tblite":
        from tblite.library import get_version

        meta.update(
            method=rest,
            program="tblite",
            program_version=".".join(str(v) for v in get_version()),
            settings={**TBLITE_DEFAULTS, **(settings or {})},
            energy_reference="tblite total energy (electronic + repulsion + dispersion), "
            "no atomic reference energies subtracted",
        )
    else:
        meta.update(method=name, program=kind, program_version="", settings=settings or {})
    return meta


def compute_labels(atoms: Atoms, calc: Calculator) -> dict[str, np.ndarray]:
    """Energy (eV), forces [n_atoms, 3] (eV/Å), Voigt stress [6] (eV/Å³, periodic only).

    Raises ``RuntimeError`` on a failed calculation or non-finite results.
    """
    work = atoms.copy()
    work.calc = calc
    out = {
        "energy": np.array(work.get_potential_energy()),
        "forces": np.array(work.get_forces()),
    }
    if work.pbc.all():
        out["stress"] = np.array(work.get_stress(voigt=True))
    for key, val in out.items():
        if not np.all(np.isfinite(val)):
            raise RuntimeError(f"non-finite {key} from calculator")
    return out


def labelled_copy(atoms: Atoms, labels: dict[str, np.ndarray], info: dict[str, Any]) -> Atoms:
    """A copy of ``atoms`` carrying ``labels`` in a single-point calculator plus ``info``."""
    out = atoms.copy()
    out.calc = None
    out.constraints = []
    for key in ("energy", "free_energy", "stress"):
        out.info.pop(key, None)
    if "forces" in out.arrays:
        del out.arrays["forces"]
    out.info.update(info)
    out.calc = SinglePointCalculator(out, **{k: v for k, v in labels.items()})
    return out


def frame_text(atoms: Atoms) -> str:
    """One frame as extxyz text."""
    import ase.io

    buf = io.StringIO()
    ase.io.write(buf, atoms, format="extxyz")
    return buf.getvalue()


def append_frame(handle: io.TextIOBase, atoms: Atoms) -> None:
    """Append one frame in a single write, then flush and fsync it to disk."""
    handle.write(frame_text(atoms))
    handle.flush()
    os.fsync(handle.fileno())


def complete_frame_count(path: Path) -> int:
    """Number of complete extxyz frames in ``path``; a trailing partial frame left by an
    interrupted write is cut off (the file is truncated to its last complete frame)."""
    if not path.exists():
        return 0
    n_frames, good_end, pos = 0, 0, 0
    with open(path, "rb") as fh:
        while True:
            header = fh.readline()
            if not header:
                break
            pos += len(header)
            try:
                n_atoms = int(header.strip())
            except ValueError:
                break
            lines = [fh.readline() for _ in range(n_atoms + 1)]
            if any(not ln.endswith(b"\n") for ln in lines):
                break
            pos += sum(len(ln) for ln in lines)
            n_frames, good_end = n_frames + 1, pos
    if good_end < path.stat().st_size:
        log.warning("%s: dropping a partial frame after frame %d", path, n_frames)
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
    return n_frames


def read_labelled(path: Path) -> list[Atoms]:
    """Complete frames of an append-written extxyz file (after cutting a partial tail)."""
    import ase.io

    if complete_frame_count(path) == 0:
        return []
    return list(ase.io.read(path, index=":", format="extxyz"))


# --------------------------------------------------------------------------- workers

_WORKER: dict[str, Any] = {}


def _init_worker(name: str, settings: dict[str, Any]) -> None:
    _WORKER["name"], _WORKER["settings"] = name, settings


def _label_one(item: tuple[int, Atoms]) -> tuple[int, Atoms | None, str, float]:
    """Label one frame with a fresh calculator (results do not depend on frame order)."""
    index, atoms = item
    t0 = time.perf_counter()
    try:
        calc = make_calculator(_WORKER["name"], _WORKER["settings"])
        labels = compute_labels(atoms, calc)
    except LegatoError:
        raise
    except Exception as exc:  # any calculator failure: skip the frame, report why
        msg = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        return index, None, msg, time.perf_counter() - t0
    dt = time.perf_counter() - t0
    info = {SOURCE_INDEX: index, "calculator": _WORKER["name"], "label_wall_s": round(dt, 3)}
    return index, labelled_copy(atoms, labels, info), "", dt


def label_frames(
    frames: Sequence[Atoms],
    out_path: str | Path,
    calculator: str = "tblite:GFN1-xTB",
    *,
    settings: dict[str, Any] | None = None,
    workers: int = 1,
    threads_per_worker: int = 1,
    progress: bool = True,
    extra_info: Callable[[int], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Label ``frames`` into ``out_path`` (plain extxyz, appended frame by frame).

    Frames whose ``source_index`` is already in ``out_path`` are skipped (resume). Failed
    frames go to ``out_path.failed.jsonl``. Method, program version and settings are put in
    every frame's info and in the sidecar ``out_path.meta.json``. When all frames are done,
    the file is rewritten (atomically) in input order. Returns a summary dict.
    """
    from tqdm import tqdm

    out_path = Path(out_path)
    if out_path.suffix == ".gz":
        raise LegatoError(
            "label output must be a plain .extxyz file (appendable, crash-safe); compress it afterwards"
        )
    if workers < 1:
        raise LegatoError(f"workers must be at least 1, got {workers}")
    settings = dict(settings or {})
    make_calculator(calculator, settings)  # fail fast on a bad name, in this process
    meta = calculator_metadata(calculator, settings)
    _check_meta(out_path, meta)

    done = {int(a.info[SOURCE_INDEX]) for a in read_labelled(out_path) if SOURCE_INDEX in a.info}
    todo = [(k, a) for k, a in enumerate(frames) if k not in done]
    info_common = {
        "method": meta["method"],
        "program": meta["program"],
        "program_version": meta["program_version"],
        "label_settings": json.dumps(meta["settings"], sort_keys=True),
    }
    failed_path = out_path.with_name(out_path.name + ".failed.jsonl")
    n_ok, n_fail, t_sum = 0, 0, 0.0
    t_wall = time.perf_counter()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(out_path, "a") as fh,
        tqdm(
            total=len(frames),
            initial=len(frames) - len(todo),
            desc="label",
            unit="frame",
            disable=not progress,
        ) as bar,
    ):
        for index, atoms, err, dt in _run(todo, calculator, settings, workers, threads_per_worker):
            t_sum += dt
            if atoms is None:
                n_fail += 1
                log.warning("frame %d skipped: %s", index, err)
                with open(failed_path, "a") as ff:
                    ff.write(json.dumps({SOURCE_INDEX: index, "error": err}) + "\n")
            else:
                atoms.info.update(info_common)
                if extra_info is not None:
                    atoms.info.update(extra_info(index))
                append_frame(fh, atoms)
                n_ok += 1
            bar.update(1)
            bar.set_postfix(failed=n_fail)
    _sort_by_source_index(out_path)
    return {
        "labelled": n_ok,
        "skipped_done": len(done),
        "failed": n_fail,
        "total_in_output": len(done) + n_ok,
        "cpu_seconds": t_sum,
        "wall_seconds": time.perf_counter() - t_wall,
        "failed_log": str(failed_path) if n_fail else "",
    }


def _run(todo, calculator, settings, workers, threads_per_worker):
    """Yield (index, labelled atoms | None, error, seconds) in completion order."""
    if workers == 1 or len(todo) <= 1:
        _init_worker(calculator, settings)
        for item in todo:
            yield _label_one(item)
        return
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads_per_worker)  # read by spawned workers
    try:
        yield from _run_pool(list(todo), calculator, settings, workers)
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old


#: error recorded for a frame whose worker process died (crash inside the calculator)
WORKER_DIED = "worker process died while labelling this frame"


def _run_pool(todo, calculator, settings, workers):
    """Label over a process pool, surviving worker deaths (segfault, OOM kill).

    At most ``workers`` frames are in flight. When a worker dies, the frames in flight are
    retried one at a time in a single-worker pool: a frame that kills its worker again is
    reported as failed, the others are labelled normally.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")  # fresh interpreters: OpenMP threads set before import
    queue, isolate = list(todo), []
    while queue or isolate:
        alone = bool(isolate)
        items = [isolate.pop(0)] if alone else queue
        queue = [] if not alone else queue
        n_workers = 1 if alone else workers
        pending = iter(items)
        inflight: dict[Any, tuple[int, Atoms]] = {}
        submitting = None  # a frame drawn from pending but not yet in flight
        with ProcessPoolExecutor(
            n_workers, mp_context=ctx, initializer=_init_worker, initargs=(calculator, settings)
        ) as ex:
            try:
                for submitting in pending:
                    inflight[ex.submit(_label_one, submitting)] = submitting
                    submitting = None
                    if len(inflight) == n_workers:
                        break
                while inflight:
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for fut in done:
                        result = fut.result()  # BrokenProcessPool if a worker died
                        del inflight[fut]
                        yield result
                        submitting = next(pending, None)
                        if submitting is not None:
                            inflight[ex.submit(_label_one, submitting)] = submitting
                            submitting = None
            except BrokenProcessPool:
                if alone:
                    yield items[0][0], None, WORKER_DIED, 0.0
                else:
                    isolate += list(inflight.values())
                    # a frame whose submission met the broken pool was never run: requeue it
                    queue = ([submitting] if submitting is not None else []) + list(pending)


def _check_meta(out_path: Path, meta: dict[str, Any]) -> None:
    """Write the sidecar metadata, or refuse to resume a file made with another method."""
    side = out_path.with_name(out_path.name + ".meta.json")
    if side.exists() and out_path.exists():
        old = json.loads(side.read_text())
        keys = ("calculator", "program_version", "settings")
        if any(old.get(k) != meta.get(k) for k in keys):
            raise LegatoError(
                f"{out_path} was labelled with different settings ({old.get('calculator')}); "
                "choose a new output file"
            )
        return
    if out_path.exists() and out_path.stat().st_size > 0:
        raise LegatoError(f"{out_path} exists without {side.name}; refusing to append to it")
    write_json_atomic(side, meta)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file, fsync, rename over ``path``)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _sort_by_source_index(path: Path) -> None:
    """Rewrite ``path`` in input order (temp file + atomic rename), if it is not already."""
    frames = read_labelled(path)
    order = [int(a.info.get(SOURCE_INDEX, k)) for k, a in enumerate(frames)]
    if order == sorted(order):
        return
    with atomic_write(path) as fh:
        for k in np.argsort(order, kind="stable"):
            fh.write(frame_text(frames[k]))
