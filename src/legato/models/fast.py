"""Fast inference for Allegro: fixed-size edge chunks through one compiled function.

The eager :class:`~legato.models.allegro.Allegro` stays the reference (and training's
path). :class:`FastAllegro` evaluates the same model for energies, forces and virial only:

* edge vectors are formed once, outside the network; forces and virial follow from the
  gradient of the energy with respect to the edge vectors (no strain graph, no
  differentiating the gathers);
* the edges, sorted by centre, are cut into chunks of whole centres and each chunk is
  padded to a fixed number of edges (padding edges are longer than r_max, so they
  contribute exactly zero), so the compiled function sees one shape however the edge count
  changes from step to step: no recompilation in MD;
* :meth:`Allegro.energy_from_edges` is compiled with ``torch.compile`` (Inductor), which
  fuses the memory-bound elementwise work of the tensor products and MLPs, forward and
  backward. Compiled code is cached on disk by Inductor (``TORCHINDUCTOR_CACHE_DIR``; torch's
  default is ``/tmp/torchinductor_<user>``), keyed by the graph, shapes, dtype, settings and
  torch version, so a second process on the same model shape starts in seconds.

Where compilation is impossible (no C++ compiler, an unsupported platform), the same
chunked path runs eagerly after one warning.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import time
import warnings

import torch
from torch import nn

from legato.models.allegro import Allegro
from legato.nn.tensor_product import SparseChannelwiseTP

#: edges per compiled chunk: large enough to amortise per-call overhead, small enough that
#: the padding of the last chunk and the activations of one chunk stay cheap
DEFAULT_CHUNK_EDGES = 8192


def frozen_copy(model: Allegro) -> Allegro:
    """An inference-only copy of ``model``: eval mode, no parameter gradients (so a compiled
    backward computes only the input gradient)."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def sparse_tps(tps: nn.ModuleList) -> nn.ModuleList:
    """The tensor products written from their nonzero couplings only, for compilation."""
    return nn.ModuleList(SparseChannelwiseTP(tp) for tp in tps)


def _compile_works() -> bool:
    """Whether torch.compile can be tried here (Dynamo supports this Python and platform)."""
    try:
        import torch._dynamo  # noqa: F401
    except Exception:  # an unsupported Python or platform fails at import
        return False
    return sys.platform.startswith(("linux", "darwin"))


class FastAllegro(nn.Module):
    """``FastAllegro(model)(graph) -> {energy, atomic_energy, forces, virial, stress}``, the
    keys and units of ``model(graph)``, for inference only.

    Wraps a frozen copy of ``model`` (its parameters do not require gradients, so the
    compiled backward computes only the input gradient): later changes to ``model`` are not
    seen. ``compile=False`` runs the same chunked path eagerly. ``chunk_edges`` is the fixed
    edge count per compiled call (a centre with more edges raises it for that call).
    """

    def __init__(self, model: Allegro, compile: bool = True, chunk_edges: int | None = None) -> None:
        super().__init__()
        if not isinstance(model, Allegro):
            raise TypeError(f"FastAllegro wraps an Allegro model, got {type(model).__name__}")
        self.model = frozen_copy(model)
        self.compile = bool(compile) and _compile_works()
        self._dense_tps = self.model.tps  # eager: one matmul per layer; compiled: the
        if self.compile:  # nonzero couplings only, fused by the compiler
            self.model.tps = sparse_tps(self._dense_tps)
        self.chunk_edges = int(chunk_edges or DEFAULT_CHUNK_EDGES)
        self._compiled = None
        self.compile_seconds: float | None = None
        self.type_names = self.model.type_names
        self.r_max = self.model.r_max
        self.hparams = self.model.hparams
        self.extra = getattr(model, "extra", {})  # what the trainer stored (loss, force σ, ...)

    # ------------------------------------------------------------------ compiled core
    def _energy_fn(self):
        if not self.compile:
            return self.model.energy_from_edges
        if self._compiled is None:
            self._compiled = torch.compile(self.model.energy_from_edges, dynamic=False, fullgraph=True)
        return self._compiled

    def _chunk_energy(self, *args: torch.Tensor) -> torch.Tensor:
        fn = self._energy_fn()
        if not self.compile or self.compile_seconds is not None:
            return fn(*args)
        # the first call compiles: say so once, and fall back to eager if it cannot
        print(
            "legato: compiling the model for fast inference (once per model shape; cached in "
            f"{os.environ.get('TORCHINDUCTOR_CACHE_DIR', 'torch inductor cache')})...",
            file=sys.stderr,
            flush=True,
        )
        t0 = time.perf_counter()
        try:
            out = fn(*args)
        except Exception as exc:  # compiler missing or failing: the eager path still works
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            warnings.warn(
                f"fast inference: compilation failed ({first}); running the model eagerly",
                RuntimeWarning,
                stacklevel=3,
            )
            self.compile = False
            self.model.tps = self._dense_tps
            return self.model.energy_from_edges(*args)
        self.compile_seconds = time.perf_counter() - t0
        print(f"legato: compiled in {self.compile_seconds:.0f} s", file=sys.stderr, flush=True)
        return out

    # ------------------------------------------------------------------ evaluation
    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        data = self.model._checked_input(data)
        pos = data["pos"].detach()  # [n_atoms, 3]
        species = data["species"]
        edge_index = data["edge_index"]
        cell = data["cell"].reshape(-1, 3, 3).detach()  # [n_frames, 3, 3]
        n_atoms, n_frames = pos.shape[0], cell.shape[0]
        batch = (
            data["batch"] if "batch" in data else torch.zeros(n_atoms, dtype=torch.long, device=pos.device)
        )
        center, neighbor = edge_index[0], edge_index[1]
        if center.numel() > 1 and not bool((center[1:] >= center[:-1]).all()):
            order = torch.argsort(center, stable=True)
            center, neighbor = center[order], neighbor[order]
            shift = data["edge_cell_shift"][order]
        else:
            shift = data["edge_cell_shift"]
        edge_batch = batch.index_select(0, center)
        image = torch.bmm(shift.unsqueeze(1), cell.index_select(0, edge_batch)).squeeze(1)
        vec = pos.index_select(0, neighbor) - pos.index_select(0, center) + image  # [n_edges, 3]
        atomic, grad = self._edge_gradients(vec, center, neighbor, species, n_atoms)
        forces = torch.zeros_like(pos).index_add(0, center, grad).index_add(0, neighbor, -grad)
        # dE/dε for positions and cell strained by (1+ε): M = Σ_e vec_e ⊗ ∂E/∂vec_e, symmetrised
        outer = vec.unsqueeze(2) * grad.unsqueeze(1)  # [n_edges, 3, 3]
        m = torch.zeros(n_frames, 3, 3, dtype=pos.dtype, device=pos.device).index_add(0, edge_batch, outer)
        virial = -0.5 * (m + m.transpose(1, 2))
        return self.model.outputs(atomic, forces, virial, cell, species, batch)

    def _edge_gradients(
        self,
        vec: torch.Tensor,  # [n_edges, 3], sorted by centre
        center: torch.Tensor,  # [n_edges]
        neighbor: torch.Tensor,  # [n_edges]
        species: torch.Tensor,  # [n_atoms]
        n_atoms: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # atomic [n_atoms] (no shift), ∂E/∂vec [n_edges, 3]
        n_edges = vec.shape[0]
        atomic = torch.zeros(n_atoms, dtype=vec.dtype, device=vec.device)
        grad = torch.zeros_like(vec)
        if n_edges == 0:
            return atomic, grad
        counts = torch.bincount(center, minlength=n_atoms)
        size = max(self.chunk_edges, int(counts.max()))  # a centre's edges never split
        ends = torch.cumsum(counts, 0)  # [n_atoms] edge index after each centre's edges
        # chunk boundaries at centre boundaries, each chunk at most `size` edges
        bounds, start = [], 0
        while start < n_edges:
            limit = torch.tensor(start + size, device=ends.device)
            stop = int(ends[int(torch.searchsorted(ends, limit, right=True)) - 1])
            bounds.append((start, stop))
            start = stop
        pad_vec = vec.new_tensor([2.0 * self.r_max + 1.0, 0.0, 0.0])  # beyond the cutoff: zero
        for start, stop in bounds:
            n = stop - start
            c = center[start:stop]
            first = torch.ones(n, dtype=torch.bool, device=vec.device)
            first[1:] = c[1:] != c[:-1]
            local = torch.cumsum(first.long(), 0) - 1  # [n] rank of the centre in the chunk
            centres = c[first]  # [n_c] atom index of each local centre
            v = vec.new_empty(size, 3)
            v[:n] = vec[start:stop]
            v[n:] = pad_vec
            loc = center.new_zeros(size)
            loc[:n] = local
            zc = center.new_zeros(size)
            zc[:n] = species.index_select(0, c)
            zn = center.new_zeros(size)
            zn[:n] = species.index_select(0, neighbor[start:stop])
            cs = center.new_zeros(size)
            cs[: centres.shape[0]] = species.index_select(0, centres)
            v.requires_grad_(True)
            with torch.enable_grad(), _serial_kernels(self.compile):
                e = self._chunk_energy(v, loc, zc, zn, cs)  # [size]
                (g,) = torch.autograd.grad(e.sum(), [v])  # the backward compiles on first use
            atomic.index_add_(0, centres, e[: centres.shape[0]].detach())
            grad[start:stop] = g[:n]
        return atomic, grad


def _serial_kernels(active: bool):
    """Compile the fused kernels single-threaded: Inductor's OpenMP-parallel kernels ran
    slower with 2 threads than with 1 on this machine, while torch's matmuls use the threads
    well (benchmarks/md_speed.py, part 4). A no-op context when not compiling."""
    if not active:
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch({"cpp.threads": 1})


def compile_default() -> bool:
    """Whether evaluation compiles by default: yes, unless ``LEGATO_COMPILE`` is 0/false/no/off
    (what ``--no-compile`` on the command line sets, for this process and its workers)."""
    return os.environ.get("LEGATO_COMPILE", "1").strip().lower() not in ("0", "false", "no", "off")


def fast_model(model: nn.Module, compile: bool | None = None, chunk_edges: int | None = None) -> nn.Module:
    """The inference path for ``model``: :class:`FastAllegro` for an Allegro model when
    compiling (``compile=None``: :func:`compile_default`), else ``model`` itself (the eager
    reference; reference potentials are always returned unchanged)."""
    use = compile_default() if compile is None else bool(compile)
    if use and isinstance(model, Allegro):
        return FastAllegro(model, compile=True, chunk_edges=chunk_edges)
    return model
