"""The internal unit system, stated once (see docs/conventions.md).

Energy eV, length Å, mass amu (Dalton), time fs at every interface, temperature K.
Internally the equations of motion use ASE's time unit so that E = m v² holds with
m in amu, v in Å per ASE time unit and E in eV.
"""

from ase import units as _u

EV = 1.0
ANGSTROM = 1.0
AMU = 1.0
FS = _u.fs  # one femtosecond in ASE time units (≈ 0.0982269)
KB_EV_PER_K = _u.kB  # Boltzmann constant, eV/K
EV_PER_A3_TO_GPA = 1.0 / _u.GPa  # stress eV/Å³ → GPa
HARTREE_EV = _u.Hartree
BOHR_A = _u.Bohr
