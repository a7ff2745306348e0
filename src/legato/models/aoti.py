"""AOTInductor export: a compiled ``.pt2`` package of :meth:`Allegro.edge_forward`.

The package runs with ``torch._inductor.aoti_load_package(path)`` (Python) or
``torch::inductor::AOTIModelPackageLoader`` (C++), without legato. It takes the edge list an
MD engine builds itself and returns per-centre energies and the energy's gradient with
respect to every edge vector::

    runner = torch._inductor.aoti_load_package("model.pt2")
    atomic, grad = runner(vec, center, neighbor_species, center_species)
    # vec [n_edges, 3] r_j - r_i; center [n_edges] int64 (index among the centres);
    # neighbor_species [n_edges] int64; center_species [n_centres] int64
    # atomic [n_centres] eV (shift included); grad [n_edges, 3] eV/Å = ∂E/∂vec

Edge and centre counts are dynamic (one artifact for every structure size). The artifact
checks its inputs' dtype, device and shapes on every call: a float64 ``vec`` into a float32
package raises instead of reading the memory as the wrong type. (AOTInductor generates
these checks but runs them only when ``AOTI_RUNTIME_CHECK_INPUTS`` is set; legato's export
turns them on by default, ``AOTI_RUNTIME_CHECK_INPUTS=0`` still turns them off.)
The model metadata (type names, r_max, dtype, versions) is in ``runner.get_metadata()``
under ``legato_metadata.json``.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from legato.errors import LegatoError
from legato.fileio import atomic_write_bytes
from legato.models.allegro import Allegro
from legato.models.fast import frozen_copy, sparse_tps
from legato.models.io import deploy_metadata, model_dtype

#: the gate AOTInductor puts around its generated input checks, and its replacement
_GATE_OFF = "env_var_value != nullptr && env_var_value[0] != '0'"
_GATE_ON = "env_var_value == nullptr || env_var_value[0] != '0'"


def example_edges(
    model: Allegro, n_atoms: int = 24, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges of a jittered-lattice periodic box (every species present), in the model's
    dtype and on its device: the inputs an engine would pass to ``edge_forward``."""
    from ase import Atoms

    from legato.data.graph import atoms_to_graph

    rng = np.random.default_rng(seed)
    k = int(np.ceil(n_atoms ** (1.0 / 3.0)))
    spacing = 2.3  # Å: a jittered simple-cubic lattice, no two atoms closer than 1.7 Å
    grid = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_atoms]
    pos = spacing * grid + rng.uniform(-0.3, 0.3, (n_atoms, 3))
    symbols = [model.type_names[i % model.num_types] for i in range(n_atoms)]
    atoms = Atoms(symbols, positions=pos, cell=[spacing * k] * 3, pbc=True)
    dtype = model_dtype(model)
    g = atoms_to_graph(atoms, model.type_names, model.r_max, dtype, with_labels=False)
    src, dst = g["edge_index"]
    cell = g["cell"].reshape(3, 3)
    vec = g["pos"].index_select(0, dst) - g["pos"].index_select(0, src) + g["edge_cell_shift"] @ cell
    species = g["species"]
    device = model.energy_shift.device
    return tuple(t.to(device) for t in (vec, src, species.index_select(0, dst), species))


def _traced(model: Allegro, example: tuple[torch.Tensor, ...]) -> torch.fx.GraphModule:
    """``edge_forward`` (forward and input gradient) as one ATen graph with symbolic sizes:
    ``torch.export`` cannot trace ``autograd.grad`` itself, ``make_fx`` can."""
    from torch.fx.experimental.proxy_tensor import make_fx

    frozen = frozen_copy(model)
    frozen.tps = sparse_tps(frozen.tps)

    def fn(vec, center, neighbor_species, center_species):
        return frozen._edge_forward(vec, center, neighbor_species, center_species)

    return make_fx(fn, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example)


@contextlib.contextmanager
def _input_checks_on() -> Iterator[None]:
    """Generate AOTInductor packages whose input checks run unless switched off."""
    from torch._inductor.codegen import cpp_wrapper_cpu

    cls = cpp_wrapper_cpu.CppWrapperCpu
    original = cls.generate_input_output_runtime_checks

    def patched(self) -> None:
        original(self)
        lines = self.prefix._lines
        for i, line in enumerate(lines):
            if isinstance(line, str) and _GATE_OFF in line:
                lines[i] = line.replace(_GATE_OFF, _GATE_ON)
                return
        raise LegatoError("this torch version's AOTInductor input checks are unknown to legato")

    cls.generate_input_output_runtime_checks = patched
    try:
        yield
    finally:
        cls.generate_input_output_runtime_checks = original


def export_aoti(model: Allegro, path: str | Path, check_atoms: int = 60) -> dict[str, float]:
    """Compile ``model.edge_forward`` into an AOTInductor package at ``path`` and check it
    against the eager model on a structure of another size than the traced one (so the
    dynamic shapes are exercised). Returns the largest relative differences found.

    Raises :class:`LegatoError` (and writes nothing) if the package disagrees with eager
    beyond 1e-5 (float32) or 1e-10 (float64) relative.
    """
    path = Path(path)
    model = model.eval()
    dtype = model_dtype(model)
    example = example_edges(model, n_atoms=24, seed=0)
    gm = _traced(model, example)
    n_edges = torch.export.Dim("n_edges", min=2)
    n_centres = torch.export.Dim("n_centres", min=2)
    shapes = ({0: n_edges}, {0: n_edges}, {0: n_edges}, {0: n_centres})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.export.export(gm, example, dynamic_shapes=shapes, strict=False)
        meta = {"legato_metadata.json": json.dumps(deploy_metadata(model, "aoti"))}
        with tempfile.TemporaryDirectory() as tmp, _input_checks_on():
            built = Path(tmp) / "model.pt2"
            torch._inductor.aoti_compile_and_package(
                program, package_path=str(built), inductor_configs={"aot_inductor.metadata": meta}
            )
            errors = check_package(built, model, n_atoms=check_atoms)
            limit = 1e-5 if dtype == torch.float32 else 1e-10
            if max(errors.values()) > limit:
                raise LegatoError(
                    f"the compiled package disagrees with the model ({errors}); nothing was written"
                )
            atomic_write_bytes(path, built.read_bytes())
    return errors


def load_aoti(path: str | Path):
    """Load a package written by :func:`export_aoti`; returns (runner, metadata dict)."""
    path = Path(path)
    if not path.is_file():
        raise LegatoError(f"{path}: no such file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            runner = torch._inductor.aoti_load_package(str(path))
        except Exception as exc:
            raise LegatoError(f"{path} is not a loadable AOTInductor package ({exc})") from None
    raw = runner.get_metadata().get("legato_metadata.json")
    if raw is None:
        raise LegatoError(f"{path} is an AOTInductor package but not one written by legato deploy")
    return runner, json.loads(raw)


def check_package(path: str | Path, model: Allegro, n_atoms: int = 60) -> dict[str, float]:
    """Largest relative difference of the package's energies and edge gradients from the
    eager model, on a random box of ``n_atoms`` atoms."""
    runner, _ = load_aoti(path)
    args = example_edges(model, n_atoms=n_atoms, seed=1)
    ref = model.edge_forward(*args)
    out = runner(*args)
    names = ("atomic_energy", "edge_gradient")
    return {
        name: float((o - r).abs().max() / r.abs().max().clamp_min(1e-30))
        for name, o, r in zip(names, out, ref)
    }
