"""tfail: every input is checked before anything is written, and the output folder's lock is
exclusive (an OS lock: several processes racing for it, exactly one wins)."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.lattice.cubic import FaceCenteredCubic
from conftest import small_model

from legato.cli.main import main
from legato.errors import LegatoError
from legato.md.potentials import LennardJones
from legato.workflows.protocol import TfailProtocol
from legato.workflows.tfail import folder_lock, run_ensemble

torch.set_num_threads(1)
QUIET = {"progress": False, "log": lambda s: None}
FAST = dict(temperature_K=60.0, timestep_fs=10.0, nvt_steps=4, max_steps=6, check_every=2)


def fcc_argon() -> Atoms:
    return FaceCenteredCubic("Ar", size=(2, 2, 2), latticeconstant=5.6, pbc=True)


# ----------------------------------------------------------------------------- the lock
def _contender(out: str, start: float, hold_s: float, queue) -> None:
    time.sleep(max(0.0, start - time.time()))  # all processes try at (nearly) the same instant
    try:
        with folder_lock(__import__("pathlib").Path(out)):
            queue.put(("won", os.getpid()))
            time.sleep(hold_s)
    except LegatoError as exc:
        queue.put(("lost", str(exc)))


def test_racing_processes_exactly_one_holds_the_lock(tmp_path):
    ctx = mp.get_context("fork")
    for trial in range(5):
        out, queue = tmp_path / f"t{trial}", ctx.Queue()
        start = time.time() + 0.3
        procs = [ctx.Process(target=_contender, args=(str(out), start, 0.4, queue)) for _ in range(6)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=20) for _ in procs]
        for p in procs:
            p.join(timeout=20)
        won = [r for r in results if r[0] == "won"]
        assert len(won) == 1, results
        for kind, msg in results:
            if kind == "lost":
                assert msg.startswith(f"{out} is in use by process {won[0][1]}; wait for it to finish")


def _hold_then_die(out: str, ready, exit_now) -> None:
    with folder_lock(__import__("pathlib").Path(out)):
        ready.set()
        exit_now.wait(20)
        os._exit(1)  # killed while holding the lock: no clean-up runs


def test_lock_of_a_dead_process_is_free(tmp_path):
    ctx = mp.get_context("fork")
    ready, exit_now = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_then_die, args=(str(tmp_path), ready, exit_now))
    p.start()
    assert ready.wait(20)
    with pytest.raises(LegatoError, match=f"in use by process {p.pid}"):
        with folder_lock(tmp_path):
            pass
    exit_now.set()
    p.join(20)
    with folder_lock(tmp_path):  # the OS released it with the process
        assert (tmp_path / ".tfail.lock").read_text().strip() == str(os.getpid())


# ----------------------------------------------------------------------------- validation first
@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"temperature_K": float("nan")},
            r"'temperature_K': temperature must be in \(0, 1e\+06\) K \(got nan\)",
        ),
        ({"temperature_K": 0.0}, r"temperature must be in \(0, 1e\+06\) K \(got 0.0\)"),
        ({"timestep_fs": float("inf")}, "'timestep_fs': Input should be a finite number"),
        ({"timestep_fs": -1.0}, "'timestep_fs': Input should be greater than 0"),
        ({"temperature_window_K": (300.0, 100.0)}, r"LO, HI\] with 0 <= LO < HI, got \[300.0, 100.0\]"),
        ({"temperature_window_K": (float("nan"), 100.0)}, "0 <= LO < HI"),
        ({"temperature_window_K": "hot"}, "'auto' or none"),
        ({"outlier_sigma": 0.0}, "'outlier_sigma': Input should be greater than 0"),
        ({"min_distance_A": float("nan")}, "'min_distance_A': Input should be a finite number"),
        ({"min_distance_A": -0.1}, "'min_distance_A': Input should be greater than or equal to 0"),
        ({"min_pair_distance_A": {"H-Q": 1.0}}, "pair 'H-Q' is not two element symbols"),
        ({"min_pair_distance_A": {"H-H": 0.0}}, "distance of H-H must be > 0"),
        ({"thermostat_tau_fs": -5.0}, "'thermostat_tau_fs': Input should be greater than 0"),
        ({"perturb_A": float("inf")}, "'perturb_A': Input should be a finite number"),
        ({"max_force_outliers": -1}, "'max_force_outliers': Input should be greater than or equal to 0"),
        ({"max_steps": 0}, "'max_steps': Input should be greater than or equal to 1"),
        ({"production": "npt"}, "'production': Input should be 'nve' or 'nvt'"),
        ({"skin": 1.0}, "unknown key 'skin' \\(did you mean 'skin_A'\\?\\)"),
    ],
)
def test_protocol_values(change, message):
    with pytest.raises(LegatoError, match=message):
        TfailProtocol(**{**FAST, **change})


@pytest.mark.parametrize(
    "structure, kwargs, message",
    [
        (fcc_argon(), {"seed": -1}, "seed must be >= 0"),
        (fcc_argon(), {"checkpoint_every": -1}, "checkpoint interval must be >= 0"),
        (fcc_argon(), {"force_sigma_eV_A": 0.0}, "force sigma must be a positive number"),
        (fcc_argon(), {"instances": 0}, "at least one instance"),
        (fcc_argon(), {"sizes": "1,0"}, "replication factors must be >= 1"),
        (Atoms("Ar2", positions=[[0, 0, 0], [3, 0, 0]]), {}, "need a periodic box"),
        (Atoms(cell=np.eye(3) * 5, pbc=True), {}, "structure 0 has no atoms"),
    ],
)
def test_bad_call_writes_nothing_and_the_corrected_call_runs(tmp_path, structure, kwargs, message):
    out = tmp_path / "tf"
    call = {"sizes": "1", "instances": 2, **kwargs}
    pot = LennardJones(r_max=6.0)
    with pytest.raises(LegatoError, match=message):
        run_ensemble(
            pot,
            structure,
            call.pop("sizes"),
            call.pop("instances"),
            TfailProtocol(**FAST),
            out,
            "lj",
            **call,
            **QUIET,
        )
    assert not out.exists()
    res = run_ensemble(pot, fcc_argon(), "1", 2, TfailProtocol(**FAST), out, "lj", **QUIET)
    assert len(res.table) == 2


def test_cli_bad_inputs_leave_no_folder(tmp_path, capsys):
    from legato.models import save_model

    model = small_model(
        torch.float32,
        r_max=3.0,
        l_max=1,
        num_layers=1,
        avg_num_neighbors=8.0,
        per_species_energy_shift=0.0,
        per_species_energy_scale=0.01,
    )
    save_model(model, tmp_path / "m.pt")
    from legato.data.liquid import build_liquid

    build_liquid("NH3", 4, density_g_cm3=0.7, seed=1, deuterium=True).write(tmp_path / "box.extxyz")
    fcc_argon().write(tmp_path / "ar.extxyz")
    out = tmp_path / "tf"
    good = ["tfail", str(tmp_path / "m.pt"), "--structure", str(tmp_path / "box.extxyz"), "--sizes", "1",
            "--instances", "1", "--timestep-fs", "1.0", "--nvt-steps", "2", "--max-steps", "4",
            "--check-every", "2", "--out", str(out), "--no-progress"]  # fmt: skip
    bad = [
        (
            ["--temperature-K", "nan"],
            "--temperature-K: invalid value for 'temperature_K': temperature must be",
        ),
        (
            ["--timestep-fs", "0"],
            "--timestep-fs: invalid value for 'timestep_fs': Input should be greater than 0",
        ),
        (["--temperature-window-K", "300,100"], "0 <= LO < HI"),
        (
            ["--temperature-window-K", "hot"],
            "--temperature-window-K: invalid value for 'temperature_window_K'",
        ),
        (["--outlier-sigma", "-1"], "'outlier_sigma': Input should be greater than 0 (got -1)"),
        (["--min-distance-A", "nan"], "'min_distance_A': Input should be a finite number (got nan)"),
        (["--min-pair-distance-A", "H-H"], "--min-pair-distance-A must be PAIR=D items"),
        (["--production", "npt"], "'production': Input should be 'nve' or 'nvt'"),
        (["--checkpoint-every", "-5"], "checkpoint interval must be >= 0"),
        (["--seed", "-1"], "seed must be >= 0"),
        (["--instances", "0"], "at least one instance"),
        (["--sizes", "2x0x1"], "replication factors must be >= 1"),
        (["--structure-index", "7"], "--structure-index 7 is out of range"),
        (["--structure", str(tmp_path / "ar.extxyz")], "Ar"),
        (["--structure", str(tmp_path / "none.extxyz")], "none.extxyz"),
    ]
    for extra, message in bad:
        assert main(good + extra) == 2, extra
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (extra, err)
        assert not out.exists(), extra
    assert main(good) == 0
    assert (out / "failures.csv").exists() and (out / "protocol.json").exists()
