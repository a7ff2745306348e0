"""The installed ``legato`` script, run the way users run it: in a fresh process.

Tests that call ``main()`` inside pytest inherit every module pytest and the other tests
imported; a missing import (``importlib.util`` once) then passes here and crashes for the
user. These run the console script in a subprocess, and the CLI under ``python -S`` (no
site hooks, nothing pre-imported).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from legato.cli.main import COMMANDS

REPO = Path(__file__).resolve().parents[1]
DATA_ACTIONS = ["liquid", "crystal", "label", "replicate", "sample", "stats"]
SAMPLE_STAGES = ["md", "derive", "finalize"]
ALL_HELP = (
    [[]]
    + [[c] for c in COMMANDS]
    + [["data", a] for a in DATA_ACTIONS]
    + [["data", "sample", s] for s in SAMPLE_STAGES]
)


def legato_script() -> str:
    """The console script pip installed beside this interpreter (fails if missing)."""
    path = Path(sys.executable).parent / "legato"
    found = str(path) if path.exists() else shutil.which("legato")
    assert found, "the legato console script is not installed (pip install -e .)"
    return found


def run(argv: list[str], cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout, check=False
    )


def test_version() -> None:
    from legato import __version__

    res = run([legato_script(), "--version"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"legato {__version__}"


@pytest.mark.parametrize("words", ALL_HELP, ids=lambda w: " ".join(w) or "legato")
def test_help(words: list[str]) -> None:
    """Every command's help runs, documents every option, shows an example, no backticks."""
    res = run([legato_script(), *words, "--help"])
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "usage: legato" in out
    assert "`" not in out, "help text uses code backticks"
    assert "Traceback" not in res.stderr
    if words:
        assert "example:" in out, f"legato {' '.join(words)} --help shows no example"
        assert_every_option_documented(out)


def assert_every_option_documented(text: str) -> None:
    """Each option line of argparse's help has a description after the flags."""
    lines = text.splitlines()
    start = next(k for k, line in enumerate(lines) if line.endswith(":") and "options" in line)
    for k, line in enumerate(lines[start + 1 :], start + 1):
        if not line.startswith("  -") or line.strip().startswith("-h, --help"):
            continue
        flags_and_help = line.strip()
        described = "  " in flags_and_help  # argparse puts two spaces between flags and help
        continued = k + 1 < len(lines) and lines[k + 1].startswith(" " * 20)
        assert described or continued, f"option without help: {flags_and_help}"


def test_unknown_command_and_option() -> None:
    res = run([legato_script(), "nonsense"])
    assert res.returncode == 2 and "invalid choice" in res.stderr
    res = run([legato_script(), "md", "--no-such-option", "x.yaml"])
    assert res.returncode == 2 and "unrecognized arguments" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_without_site_hooks() -> None:
    """``python -S``: no .pth hooks, nothing imported beforehand, as in a bare venv."""
    paths = [str(REPO / "src"), *site.getsitepackages()]
    for words in (["--version"], *([c, "--help"] for c in COMMANDS)):
        code = f"import sys; sys.path[:0] = {paths!r}; from legato.cli.main import main; main({words!r})"
        res = run([sys.executable, "-S", "-c", code])
        assert res.returncode == 0, f"legato {' '.join(words)}: {res.stderr}"
        assert res.stdout.startswith(("legato ", "usage: legato")), res.stdout


def test_demo_quick(tmp_path: Path) -> None:
    """The README's main job, small: the installed script end to end on the shipped data."""
    out = tmp_path / "demo"
    res = run([legato_script(), "demo", "--quick", "--out", str(out)], cwd=REPO, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert any(out.rglob("*.png")), "the demo wrote no plot"
