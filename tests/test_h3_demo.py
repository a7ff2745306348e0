"""The demo's and study's user-facing behaviour: live progress while jobs run, verdicts
computed from the numbers, thread settings of the workers, stages that do nothing."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest

from legato.errors import LegatoError
from legato.stats.scaling import NOT_RESOLVED, beta_verdict, tfail_verdict
from legato.workflows.jobs import last_log_line, run_jobs
from legato.workflows.study_config import set_worker_threads, validate_study_config


def _slow_job(seconds: float) -> str:
    print("epoch    1 | train loss 0.5", flush=True)
    time.sleep(seconds)
    return "ok"


def test_run_jobs_reports_the_last_log_line_of_a_running_job(tmp_path):
    lines: list[str] = []
    res = run_jobs([("slow", _slow_job, {"seconds": 0.7})], 1, 1, tmp_path / "logs", lines.append, every=0.2)
    assert res == {"slow": "ok"}
    assert str(tmp_path / "logs") in lines[0]  # says where the logs are
    beats = [x for x in lines if "| slow: " in x]
    assert any("slow: epoch 1 | train loss 0.5" in x for x in beats)  # whitespace collapsed
    assert "0/1 done" in beats[0]
    assert lines[-1].startswith("  done: slow") and "[1/1]" in lines[-1]


def test_last_log_line_takes_the_latest_progress_bar_update(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("start\nmd:  10%|#  | 3/30\rmd:  20%|## | 6/30\r")
    assert last_log_line(log) == "md: 20%|## | 6/30"
    log.write_text("x" * 200 + "\n")
    assert len(last_log_line(log, width=50)) == 50
    assert last_log_line(tmp_path / "missing.log") == ""


def _ens(mean: float, sem: float) -> dict:
    return {"mean": mean, "sem": sem}


@pytest.mark.parametrize(
    ("allegro", "legato", "resolved", "phrase"),
    [
        (_ens(100, 5), _ens(200, 5), True, "Legato lasts longer"),
        (_ens(100, 30), _ens(130, 30), False, "intervals overlap"),
        (_ens(200, 5), _ens(100, 5), False, "Legato fails earlier"),
        (_ens(100, float("nan")), _ens(300, 1), False, "intervals overlap"),  # one run: no s.e.
    ],
)
def test_tfail_verdict_is_computed_from_order_and_overlap(allegro, legato, resolved, phrase):
    ok, text = tfail_verdict(allegro, legato, 0.95)
    assert ok is resolved and phrase in text
    assert (NOT_RESOLVED in text) is (not resolved)


@pytest.mark.parametrize(
    ("allegro", "legato", "resolved", "phrase"),
    [
        ((0.30, [0.25, 0.35]), (0.14, [0.10, 0.18]), True, "holds"),
        (
            (0.30, [0.10, 0.50]),
            (0.14, [0.00, 0.30]),
            False,
            "same direction as the paper, but the CIs overlap",
        ),
        # the demo's case: exponents of the wrong sign are not "the paper's direction"
        ((-0.40, [-0.79, 0.0]), (-0.48, [-1.1, 0.15]), False, "β ≤ 0"),
        ((0.10, [0.05, 0.15]), (0.40, [0.30, 0.50]), False, "opposite"),
    ],
)
def test_beta_verdict_needs_positive_exponents_and_disjoint_cis(allegro, legato, resolved, phrase):
    ok, text = beta_verdict(allegro, legato)
    assert ok is resolved and phrase in text
    assert (NOT_RESOLVED in text) is (not resolved)


def _cfg(**over) -> dict:
    return {"data": "x.extxyz", "legato_rho": 0.01, "rho_grid": [], **over}


def test_threads_option_overrides_the_config_and_auto_shares_the_cores(monkeypatch):
    cfg = validate_study_config(_cfg(workers=2, threads_per_worker=3))
    set_worker_threads(cfg, 1)
    assert cfg.threads_per_worker == 1
    cfg = validate_study_config(_cfg(workers=2, threads_per_worker=3))
    set_worker_threads(cfg, None)  # set explicitly in the config: kept
    assert cfg.threads_per_worker == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    cfg = validate_study_config(_cfg(workers=2))
    set_worker_threads(cfg, None)  # not set: the free threads shared among the workers
    assert cfg.threads_per_worker == 2
    monkeypatch.setattr("legato.perf.available_cores", lambda: 2)
    cfg = validate_study_config(_cfg(workers=2))
    note = set_worker_threads(cfg, 4)
    assert note is not None and "exceed the 2 available core(s)" in note
    with pytest.raises(LegatoError, match="--threads must be >= 1"):
        set_worker_threads(cfg, 0)


def test_study_and_rho_search_and_demo_pass_threads_to_the_workers(monkeypatch, tmp_path):
    from legato.cli import demo, rho_search, study

    seen: list[int] = []

    def fake_run_study(cfg, out, resume=False, stages=(), **kw):
        seen.append(cfg.threads_per_worker)
        raise LegatoError("stop")

    def fake_rho(cfg, out, rhos, resume=False):
        seen.append(cfg.threads_per_worker)
        raise LegatoError("stop")

    monkeypatch.setattr("legato.workflows.study.run_study", fake_run_study)
    monkeypatch.setattr("legato.workflows.study.run_rho_search", fake_rho)
    conf = Path(__file__).resolve().parents[1] / "configs" / "study_tiny.yaml"
    ns = dict(out=str(tmp_path / "o"), resume=False, workers=1, threads=3)
    with pytest.raises(LegatoError, match="stop"):
        study.run(argparse.Namespace(config=str(conf), stages=None, **ns))
    with pytest.raises(LegatoError, match="stop"):
        rho_search.run(argparse.Namespace(config=str(conf), rho="0.01", **ns))
    data = tmp_path / "d.extxyz"
    data.write_text("")
    with pytest.raises(LegatoError, match="stop"):
        demo.run(argparse.Namespace(data=str(data), quick=True, **ns))
    assert seen == [3, 3, 3]


def test_every_cli_help_names_an_example_and_documents_every_option():
    from legato.cli.main import COMMANDS, command_parser

    for name in ("demo", "study", "rho-search"):
        import importlib

        module = importlib.import_module(f"legato.cli.{COMMANDS[name][0]}")
        parser = command_parser(name, module, COMMANDS[name][1])
        text = parser.format_help()
        assert f"legato {name} " in module.EXAMPLES and "example:" in text
        assert "`" not in text
        for action in parser._actions:
            assert action.help, f"{name}: {action.dest} has no help"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "0"], "error: --workers must be >= 1"),
        (["--threads", "0"], "error: --threads must be >= 1, got 0"),
        (["--data", "no/such/file.extxyz"], "error: data file not found: no/such/file.extxyz"),
    ],
)
def test_demo_bad_options_give_one_error_line(extra, message, tmp_path, capsys):
    from legato.cli.main import main

    assert main(["demo", "--out", str(tmp_path / "d"), "--quick", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [message]
    assert not (tmp_path / "d").exists()  # nothing written


def test_demo_into_a_read_only_folder_is_one_error_line(readonly_dir, capsys):
    from legato.cli.main import main

    assert main(["demo", "--out", str(readonly_dir / "d"), "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot") and "study folder" in err[0]


_STOPPED_STUDY = """
import os, sys, time
from pathlib import Path
from legato.workflows.jobs import run_jobs

def job(out):
    Path(out).write_text(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    d = Path(sys.argv[1])
    run_jobs([(f"j{i}", job, {"out": str(d / f"pid{i}")}) for i in range(2)], 2, 1, d / "logs")
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # an orphan's zombie is gone as far as work goes


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_workers_end_when_the_study_is_stopped_with_sigterm(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    script = tmp_path / "study.py"
    script.write_text(_STOPPED_STUDY)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    pid_files = [tmp_path / "pid0", tmp_path / "pid1"]
    deadline = time.time() + 90
    while not all(f.is_file() and f.read_text() for f in pid_files):
        assert parent.poll() is None and time.time() < deadline, "workers did not start"
        time.sleep(0.2)
    workers = [int(f.read_text()) for f in pid_files]
    assert all(_alive(p) for p in workers)
    os.kill(parent.pid, signal.SIGTERM)
    parent.wait(timeout=30)
    deadline = time.time() + 20
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.2)
    alive = [p for p in workers if _alive(p)]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    assert not alive, "worker processes outlived the stopped study"
