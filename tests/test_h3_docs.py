"""The commands of the docs' quick starts run as written (issue 10: every command in README and
docs must run on a fresh clone).

:func:`doc_commands` extracts them: every code block of README.md and the "## Quick start"
section of each docs/*.md page. Commands run in a temporary copy of the repository's
``configs/``, ``data/`` and ``models/`` (with ``../shared`` beside it when the real one exists), through the
installed ``legato`` console script, with ``OMP_NUM_THREADS=1``.

Default suite: every ``legato`` command parses with its command's own parser; the short
ones run for real, after the long commands they depend on (the trainings and the demo) are
replaced by one tiny stand-in model copied to the paths those commands write. Slow suite
(``pytest -m slow``): every command of each page runs as written, in order, long ones included.
A command that needs ``../shared`` carries ``needs ../shared`` in its comment and is skipped
without it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NEEDS_SHARED = "needs ../shared"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: shell commands that set up an environment or benchmark it: shown, never run by the tests
NOT_RUN = ("pip install ", "pytest", "python benchmarks/")
#: commands that take minutes (slow suite only) -> folders of their outputs that later
#: commands use; the default suite puts the stand-in model there instead
LONG = {
    "legato train configs/train_small_allegro.yaml": "runs/small_allegro",
    "legato train configs/train_small_legato.yaml": "runs/small_legato",
    "legato demo --out runs/demo": "runs/demo/models/legato_rho0.005",
    "legato demo --out runs/demo_quick --quick": None,
    "legato md configs/md_quick.yaml": None,
    "legato md configs/md_quick.yaml --resume --steps 400": None,
}


@dataclass(frozen=True)
class DocCommand:
    source: str  # page:line
    kind: str  # "legato", "python" (a whole Python block) or "shell"
    text: str
    needs_shared: bool

    @property
    def long(self) -> bool:
        return self.kind == "legato" and self.text in LONG


def doc_commands(page: Path) -> list[DocCommand]:
    """The commands of README.md's code blocks, or of a docs page's "## Quick start" section,
    in order: one per shell line (backslash continuations joined, comments stripped), one per
    Python block."""
    lines = page.read_text(encoding="utf-8").splitlines()
    if page.name != "README.md":
        start = next((i for i, ln in enumerate(lines) if ln.strip().lower() == "## quick start"), None)
        if start is None:
            return []
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines_numbered = list(enumerate(lines))[start:end]
    else:
        lines_numbered = list(enumerate(lines))
    out: list[DocCommand] = []
    rel = page.relative_to(REPO).as_posix() if page.is_relative_to(REPO) else page.name
    block: list[tuple[int, str]] | None = None
    lang = ""
    for i, ln in lines_numbered:
        if ln.startswith("```"):
            if block is None:
                block, lang = [], ln[3:].strip()
                continue
            out += _block_commands(rel, lang, block)
            block = None
        elif block is not None:
            block.append((i + 1, ln))
    return out


def _block_commands(rel: str, lang: str, block: list[tuple[int, str]]) -> list[DocCommand]:
    if lang == "python":
        text = "\n".join(ln for _, ln in block)
        return [DocCommand(f"{rel}:{block[0][0]}", "python", text, NEEDS_SHARED in text)]
    if lang not in ("", "bash", "sh", "console"):
        return []
    cmds, buf, first = [], "", 0
    for no, ln in block:
        if ln.lstrip().startswith("#"):
            continue
        code, _, comment = ln.partition(" #")
        if not buf:
            first = no
        needs = NEEDS_SHARED in comment
        if code.rstrip().endswith("\\"):
            buf += code.rstrip()[:-1] + " "
            continue
        text = " ".join((buf + code).split())
        buf = ""
        if text:
            kind = "legato" if text.startswith("legato ") else "shell"
            cmds.append(DocCommand(f"{rel}:{first}", kind, text, needs or "../shared" in text))
    return cmds


ALL = [c for page in PAGES for c in doc_commands(page)]


def test_the_extraction_finds_the_quick_starts():
    sources = {c.source.split(":")[0] for c in ALL}
    assert {"README.md", "docs/training.md", "docs/md.md"} <= sources
    assert any(c.text == "legato demo --out runs/demo" for c in ALL)
    assert any(c.kind == "python" and "LegatoCalculator" in c.text for c in ALL)
    # every shell command that is not legato's is one the tests deliberately leave alone
    others = [c for c in ALL if c.kind == "shell"]
    assert all(c.text.startswith(NOT_RUN) for c in others), [c.text for c in others]


def test_doc_commands_joins_continuations_strips_comments_and_sees_shared_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# T\n\n```bash\nlegato x a  # not run\n```\n\n## Quick start\n\n```bash\n"
        "# a comment line\nlegato md a.yaml \\\n    --steps 5   # needs ../shared\nlegato b\n```\n\n"
        "```python\nprint(1)\n```\n\n```yaml\nkey: 1\n```\n\n## Next\n\n```bash\nlegato c\n```\n"
    )
    got = doc_commands(page)
    assert [(c.kind, c.text, c.needs_shared) for c in got] == [
        ("legato", "legato md a.yaml --steps 5", True),
        ("legato", "legato b", False),
        ("python", "print(1)", False),
    ]
    assert got[0].source == "page.md:11"  # the first line of a continued command


@pytest.mark.parametrize("cmd", [c for c in ALL if c.kind == "legato"], ids=lambda c: c.source)
def test_every_legato_command_of_the_docs_parses(cmd: DocCommand):
    import importlib

    from legato.cli.main import COMMANDS, command_parser

    argv = shlex.split(cmd.text)[1:]
    assert argv[0] in COMMANDS, f"{cmd.source}: unknown command {argv[0]}"
    module = importlib.import_module(f"legato.cli.{COMMANDS[argv[0]][0]}")
    parser = command_parser(argv[0], module, COMMANDS[argv[0]][1])
    parser.exit = lambda status=0, message=None: pytest.fail(f"{cmd.source}: {message}")  # type: ignore
    parser.parse_args(argv[1:])


# ----------------------------------------------------------------------------- running them
def workspace(root: Path) -> Path:
    """A copy of the repository's configs and data at ``root/main``, ``../shared`` beside it."""
    main = root / "main"
    main.mkdir(parents=True)
    shutil.copytree(REPO / "configs", main / "configs")
    shutil.copytree(REPO / "data", main / "data")
    shutil.copytree(REPO / "models", main / "models")
    if SHARED.is_dir():
        (root / "shared").symlink_to(SHARED)
    return main


def run_doc_command(cmd: DocCommand, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if cmd.kind == "python":
        argv = [sys.executable, "-c", cmd.text]
    else:
        exe = shutil.which("legato")
        argv = ([exe] if exe else [sys.executable, "-m", "legato.cli.main"]) + shlex.split(cmd.text)[1:]
    res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd.source}: {cmd.text}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    assert "Traceback" not in res.stderr, f"{cmd.source}: {res.stderr[-3000:]}"
    return res


def stand_in_model(main: Path) -> None:
    """One tiny trained model (the small Legato config, 4 + 2 frames, 1 epoch), copied to
    every folder a long command would write a model to."""
    from legato.train import train

    cfg = yaml.safe_load((main / "configs" / "train_small_legato.yaml").read_text())
    cfg["run_dir"] = str(main / "runs" / "stand_in")
    cfg["data"].update(path=str(main / "data" / "nh3_liquid_gfn1.extxyz.gz"), n_train=4, n_val=2)
    cfg["training"].update(max_epochs=1, batch_size=2, progress=False)
    train(cfg)
    for folder in LONG.values():
        if folder:
            shutil.copytree(main / "runs" / "stand_in", main / folder)


def _skip_shared(cmd: DocCommand) -> bool:
    return cmd.needs_shared and not SHARED.is_dir()


#: commands that fit no default-suite budget of ~90 s even on the stand-in model (20-30 s each
#: on a loaded 2-core machine; the PIMD example about 60 s eager, and its spectrum needs it):
#: they run in the slow tests
SLOW_ON_STAND_IN = re.compile(r"^legato (sharpness|landscape|pimd|spectrum) |\.\./shared/data/nh3_432\.lmp")


def test_short_quickstart_commands_run_as_written(tmp_path):
    main = workspace(tmp_path)
    t0 = time.perf_counter()
    stand_in_model(main)
    print(f"{time.perf_counter() - t0:6.1f} s  stand-in model")
    ran = []
    for cmd in ALL:
        if cmd.kind == "shell" or cmd.long or _skip_shared(cmd) or SLOW_ON_STAND_IN.search(cmd.text):
            continue
        t0 = time.perf_counter()
        run_doc_command(cmd, main, timeout=120)
        ran.append(cmd.text)
        print(f"{time.perf_counter() - t0:6.1f} s  {cmd.source}  {cmd.text.splitlines()[0][:70]}")
    assert any("LegatoCalculator" in t for t in ran) and any(t.startswith("legato evaluate") for t in ran)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if doc_commands(p)], ids=lambda p: p.name)
def test_every_quickstart_runs_as_written_in_order(page: Path, tmp_path):
    main = workspace(tmp_path)
    for cmd in doc_commands(page):
        if cmd.kind == "shell" or _skip_shared(cmd):
            continue
        run_doc_command(cmd, main, timeout=3600)
