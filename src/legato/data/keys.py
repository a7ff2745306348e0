"""Registry of the keys of a graph dict (nequip-style dict of tensors).

A *graph* is a ``dict[str, torch.Tensor]`` describing one or several frames batched
together. Shapes use n_atoms (all frames), n_edges, n_frames.
"""

POSITIONS = "pos"  # [n_atoms, 3] float, Å
SPECIES = "species"  # [n_atoms] long, index into type_names
BATCH = "batch"  # [n_atoms] long, frame index of each atom
NUM_ATOMS = "num_atoms"  # [n_frames] long
CELL = "cell"  # [n_frames, 3, 3] float, lattice vectors as rows (ASE), Å
PBC = "pbc"  # [n_frames, 3] bool
EDGE_INDEX = "edge_index"  # [2, n_edges] long: row 0 centre i, row 1 neighbour j
EDGE_SHIFT = "edge_cell_shift"  # [n_edges, 3] float, integer image shifts S: r_ij = r_j - r_i + S @ cell
TOTAL_ENERGY = "energy"  # [n_frames] float, eV
ATOMIC_ENERGY = "atomic_energy"  # [n_atoms] float, eV
FORCES = "forces"  # [n_atoms, 3] float, eV/Å
STRESS = "stress"  # [n_frames, 3, 3] float, eV/Å³, ASE sign (positive = tensile)
VIRIAL = "virial"  # [n_frames, 3, 3] float, eV, W = -dE/dstrain

#: keys holding per-atom tensors (concatenated when batching)
PER_ATOM = (POSITIONS, SPECIES, FORCES, ATOMIC_ENERGY)
#: keys holding per-frame tensors (stacked when batching)
PER_FRAME = (CELL, PBC, TOTAL_ENERGY, STRESS, VIRIAL, NUM_ATOMS)
#: labels a dataset may carry
LABELS = (TOTAL_ENERGY, FORCES, STRESS)
