"""The Allegro potential (Musaelian et al. 2022) as used by Allegro-Legato.

See ``docs/architecture.md``: per-edge scalar latents x_ij and equivariant features V_ij,
channel-wise tensor products with the centre's environment Γ_i, and a strictly local
energy E = Σ_i σ_{z_i}·(1/√ν̄)·Σ_j E_ij + μ_{z_i}. Forces and virial come from one
autograd call (positions and a symmetric strain).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from e3nn import o3
from torch import nn

from legato.models.config import check_hparams
from legato.nn.exact import ExactConstants
from legato.nn.mlp import ScaledMLP
from legato.nn.radial import BesselBasis, PolynomialCutoff
from legato.nn.tensor_product import AllegroPaths, ChannelwiseTP, EquivariantLinear, irrep_str


class Allegro(ExactConstants):
    """Allegro interatomic potential. ``model(graph) -> {energy, atomic_energy, forces,
    virial, stress}``; see :mod:`legato.data.keys` for the graph layout."""

    def __init__(
        self,
        type_names: Sequence[str],
        r_max: float = 6.0,
        l_max: int = 1,
        parity: str = "o3_full",
        num_layers: int = 3,
        env_embed_multiplicity: int = 32,
        two_body_latent_mlp_latent_dimensions: Sequence[int] = (32, 64, 128),
        latent_mlp_latent_dimensions: Sequence[int] = (128,),
        env_embed_mlp_latent_dimensions: Sequence[int] = (),
        edge_eng_mlp_latent_dimensions: Sequence[int] = (32,),
        num_bessel: int = 8,
        polynomial_cutoff_p: float = 7.0,
        latent_resnet: bool = True,
        avg_num_neighbors: float = 1.0,
        per_species_energy_shift: float | Sequence[float] = 0.0,
        per_species_energy_scale: float | Sequence[float] = 1.0,
        max_edges_per_chunk: int = 8192,
    ) -> None:
        super().__init__()
        type_names = list(type_names) if isinstance(type_names, (list, tuple)) else type_names
        per_species_energy_shift = _plain(per_species_energy_shift)
        per_species_energy_scale = _plain(per_species_energy_scale)
        args = dict(locals())
        for k in ("self", "__class__"):
            args.pop(k, None)
        check_hparams({k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}, "Allegro")
        self.hparams = dict(
            type_names=type_names,
            r_max=float(r_max),
            l_max=int(l_max),
            parity=str(parity),
            num_layers=int(num_layers),
            env_embed_multiplicity=int(env_embed_multiplicity),
            two_body_latent_mlp_latent_dimensions=[int(d) for d in two_body_latent_mlp_latent_dimensions],
            latent_mlp_latent_dimensions=[int(d) for d in latent_mlp_latent_dimensions],
            env_embed_mlp_latent_dimensions=[int(d) for d in env_embed_mlp_latent_dimensions],
            edge_eng_mlp_latent_dimensions=[int(d) for d in edge_eng_mlp_latent_dimensions],
            num_bessel=int(num_bessel),
            polynomial_cutoff_p=float(polynomial_cutoff_p),
            latent_resnet=bool(latent_resnet),
            avg_num_neighbors=float(avg_num_neighbors),
            per_species_energy_shift=_per_species(per_species_energy_shift, len(type_names)),
            per_species_energy_scale=_per_species(per_species_energy_scale, len(type_names)),
            max_edges_per_chunk=int(max_edges_per_chunk),
        )
        self.type_names = type_names
        self.num_types = len(type_names)
        self.r_max = float(r_max)
        self.num_layers = int(num_layers)
        self.mul = int(env_embed_multiplicity)
        self.latent_resnet = bool(latent_resnet)
        self.max_edges_per_chunk = int(max_edges_per_chunk)
        self.inv_sqrt_avg_nn = 1.0 / math.sqrt(float(avg_num_neighbors))

        self.paths = AllegroPaths.build(int(l_max), str(parity), self.num_layers)
        sh = self.paths.sh_irreps
        self.n_sh_irreps = len(sh)
        self.sh = o3.SphericalHarmonics(
            o3.Irreps("+".join(f"1x{irrep_str(i)}" for i in sh)), normalize=True, normalization="component"
        )
        self.sh_dims: list[int] = [2 * l + 1 for l, _ in sh]
        # irrep of each spherical-harmonic component: the env weights are per irrep
        comp_irrep = [k for k, d in enumerate(self.sh_dims) for _ in range(d)]
        comp_irrep_t = torch.tensor(comp_irrep, dtype=torch.long)
        self.register_buffer("sh_component_irrep", comp_irrep_t, persistent=False)
        self.bessel = BesselBasis(self.r_max, int(num_bessel))
        self.cutoff = PolynomialCutoff(self.r_max, float(polynomial_cutoff_p))

        latent = list(two_body_latent_mlp_latent_dimensions)
        d_latent = int(latent[-1])
        self.two_body = ScaledMLP([2 * self.num_types + int(num_bessel)] + latent)
        env_hidden = [int(d) for d in env_embed_mlp_latent_dimensions]
        self.env_embed = nn.ModuleList()
        self.tps = nn.ModuleList()
        self.linears = nn.ModuleList()
        self.latents = nn.ModuleList()
        # scalar outputs per layer (a non-empty list: TorchScript infers List[int] from it)
        self.n_scalars = [self.paths.n_scalars(k) for k in range(self.num_layers)]
        for k in range(self.num_layers):
            n_env = self.mul * self.n_sh_irreps * (2 if k == 0 else 1)
            self.env_embed.append(ScaledMLP([d_latent] + env_hidden + [n_env]))
            paths = self.paths.layers[k]
            self.tps.append(ChannelwiseTP(self.paths.inputs[k], sh, paths))
            self.linears.append(EquivariantLinear(paths, self.paths.outputs[k], self.mul))
            n_s = self.paths.n_scalars(k)
            outs_k = self.paths.outputs[k]
            if outs_k[0] != (0, 1) or (k == self.num_layers - 1 and list(outs_k) != [(0, 1)]):
                raise ValueError(f"layer {k} must output scalars first (got {outs_k})")
            self.latents.append(
                ScaledMLP([d_latent + self.mul * n_s] + [int(d) for d in latent_mlp_latent_dimensions])
            )
        self.edge_energy = ScaledMLP([d_latent] + [int(d) for d in edge_eng_mlp_latent_dimensions] + [1])
        # residual mixing x <- a·x + b·x_new with c = sigmoid(θ_k), θ fixed at 0
        self.register_buffer("resnet_theta", torch.zeros(self.num_layers))
        for name in ("energy_shift", "energy_scale"):  # exact in a float64 model too
            exact = torch.tensor(self.hparams[f"per_species_{name}"], dtype=torch.float64)
            self.register_buffer(name, exact.to(torch.get_default_dtype()))
            self._set_exact(name, exact)

    # ------------------------------------------------------------------ forward
    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if torch.jit.is_scripting():  # TorchScript hosts run with grad mode on
            return self.compute(data)
        data = self._checked_input(data)
        with torch.enable_grad():  # forces need autograd even under torch.no_grad()
            return self.compute(data)

    @torch.jit.unused
    def _checked_input(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reject an empty graph; give float inputs the model's dtype (a float64 graph into a
        float32 model and the reverse both work)."""
        from legato.errors import LegatoError

        if data["pos"].shape[0] == 0:
            raise LegatoError("the structure has no atoms: a model needs at least one atom")
        dtype = self.energy_shift.dtype
        if all(data[k].dtype == dtype for k in ("pos", "cell", "edge_cell_shift")):
            return data
        data = dict(data)
        for k in ("pos", "cell", "edge_cell_shift"):
            data[k] = data[k].to(dtype)
        return data

    def compute(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # keys are literals (see legato.data.keys) so the TorchScript file is standalone
        pos = data["pos"]
        species = data["species"]
        edge_index = data["edge_index"]
        cell = data["cell"].reshape(-1, 3, 3)
        n_atoms = pos.shape[0]
        n_frames = cell.shape[0]
        if "batch" in data:
            batch = data["batch"]
        else:
            batch = torch.zeros(n_atoms, dtype=torch.long, device=pos.device)
        shift = data["edge_cell_shift"]
        create_graph = self.training
        pos_leaf = pos.detach().requires_grad_(True) if not pos.requires_grad else pos
        strain = torch.zeros(n_frames, 3, 3, dtype=pos.dtype, device=pos.device).requires_grad_(True)
        sym = 0.5 * (strain + strain.transpose(1, 2))
        pos_s = pos_leaf + torch.bmm(pos_leaf.unsqueeze(1), sym[batch]).squeeze(1)
        cell_s = cell + torch.bmm(cell, sym)
        edge_batch = batch[edge_index[0]]
        n_edges = edge_index.shape[1]
        chunk = self.max_edges_per_chunk
        if create_graph or chunk <= 0 or n_edges <= chunk:
            atomic = self._atomic_energy(pos_s, cell_s, species, edge_index, shift, edge_batch, n_atoms)
            total = atomic.sum()
            grads = torch.autograd.grad([total], [pos_leaf, strain], create_graph=create_graph)
            g_pos, g_strain = grads[0], grads[1]
        else:
            # memory-bounded inference: centres in chunks, each chunk's energy
            # differentiated on its own (E_i depends only on i's edges)
            atomic, g_pos, g_strain = self._chunked(
                pos_leaf, strain, pos_s, cell_s, species, edge_index, shift, edge_batch, n_atoms, chunk
            )
        assert g_pos is not None and g_strain is not None
        if not create_graph:
            atomic = atomic.detach()
        return self.outputs(atomic, -g_pos, -g_strain, cell, species, batch)

    def outputs(
        self,
        atomic: torch.Tensor,  # [n_atoms] σ_{z_i}·Ẽ_i without the shift μ
        forces: torch.Tensor,  # [n_atoms, 3]
        virial: torch.Tensor,  # [n_frames, 3, 3]
        cell: torch.Tensor,  # [n_frames, 3, 3]
        species: torch.Tensor,  # [n_atoms]
        batch: torch.Tensor,  # [n_atoms]
    ) -> dict[str, torch.Tensor]:
        """The model's output dict: per-atom energies with their shift, frame energies, and the
        stress −virial/volume (zero for a frame without a 3-D cell)."""
        volume = torch.linalg.det(cell).abs()
        safe = torch.where(volume > 0, volume, torch.ones_like(volume))
        stress = torch.where(
            (volume > 0).reshape(-1, 1, 1), -virial / safe.reshape(-1, 1, 1), torch.zeros_like(virial)
        )
        atomic = atomic + self.energy_shift.index_select(0, species)
        n_frames = cell.shape[0]
        energy = torch.zeros(n_frames, dtype=atomic.dtype, device=atomic.device).index_add(0, batch, atomic)
        return {
            "energy": energy,
            "atomic_energy": atomic,
            "forces": forces,
            "virial": virial,
            "stress": stress,
        }

    def _chunked(
        self,
        pos_leaf: torch.Tensor,
        strain: torch.Tensor,
        pos_s: torch.Tensor,
        cell_s: torch.Tensor,
        species: torch.Tensor,
        edge_index: torch.Tensor,
        shift: torch.Tensor,
        edge_batch: torch.Tensor,
        n_atoms: int,
        chunk: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        order = torch.argsort(edge_index[0], stable=True)
        ei, sh, eb = edge_index[:, order], shift[order], edge_batch[order]
        counts = torch.bincount(ei[0], minlength=n_atoms)
        ends = torch.cumsum(counts, 0)
        atomic = torch.zeros(n_atoms, dtype=pos_s.dtype, device=pos_s.device)
        g_pos = torch.zeros_like(pos_leaf)
        g_strain = torch.zeros_like(strain)
        n_edges = ei.shape[1]
        start = 0
        while start < n_edges:
            # the largest atom boundary not beyond start + chunk (at least one atom)
            stop_atom = int(
                torch.searchsorted(ends, torch.tensor(start + chunk, device=ends.device), right=True)
            )
            stop = int(ends[stop_atom - 1]) if stop_atom > 0 else 0
            if stop <= start:
                stop = int(
                    ends[int(torch.searchsorted(ends, torch.tensor(start, device=ends.device), right=True))]
                )
            sl = slice(start, stop)
            part = self._atomic_energy(pos_s, cell_s, species, ei[:, sl], sh[sl], eb[sl], n_atoms)
            grads = torch.autograd.grad([part.sum()], [pos_leaf, strain], retain_graph=True)
            gp, gs = grads[0], grads[1]
            assert gp is not None and gs is not None
            g_pos = g_pos + gp
            g_strain = g_strain + gs
            atomic = atomic + part.detach()
            start = stop
        return atomic, g_pos, g_strain

    def _atomic_energy(
        self,
        pos: torch.Tensor,  # [n_atoms, 3]
        cell: torch.Tensor,  # [n_frames, 3, 3]
        species: torch.Tensor,  # [n_atoms]
        edge_index: torch.Tensor,  # [2, n_edges]
        shift: torch.Tensor,  # [n_edges, 3]
        edge_batch: torch.Tensor,  # [n_edges]
        n_atoms: int,
    ) -> torch.Tensor:  # [n_atoms] σ_{z_i}·Ẽ_i (without the shift μ)
        center, neighbor = edge_index[0], edge_index[1]
        # index_select: a faster gather than advanced indexing, forward and backward
        image = torch.bmm(shift.unsqueeze(1), cell.index_select(0, edge_batch)).squeeze(1)
        vec = pos.index_select(0, neighbor) - pos.index_select(0, center) + image  # [n_edges, 3]
        return self.energy_from_edges(
            vec, center, species.index_select(0, center), species.index_select(0, neighbor), species
        )

    def energy_from_edges(
        self,
        vec: torch.Tensor,  # [n_edges, 3] r_j - r_i (with the periodic image)
        center: torch.Tensor,  # [n_edges] index of the centre i among the centres
        z_center: torch.Tensor,  # [n_edges] species of i
        z_neighbor: torch.Tensor,  # [n_edges] species of j
        center_species: torch.Tensor,  # [n_centres] species of each centre
    ) -> torch.Tensor:  # [n_centres] σ_{z_i}·Ẽ_i (without the shift μ)
        """The per-centre energies from the edge vectors alone: the whole model but the
        gathers. Forces and virial follow from the gradient with respect to ``vec``; an edge
        longer than r_max contributes exactly nothing (padding)."""
        n_centres = center_species.shape[0]
        r = torch.linalg.norm(vec, dim=1)  # [n_edges]
        u = self.cutoff(r).unsqueeze(-1)  # [n_edges, 1]
        y = self.sh(vec)  # [n_edges, d_sh]
        n_edges = r.shape[0]
        m = self.mul
        dtype = vec.dtype
        one_c = torch.nn.functional.one_hot(z_center, self.num_types).to(dtype)
        one_n = torch.nn.functional.one_hot(z_neighbor, self.num_types).to(dtype)
        x = self.two_body(torch.cat([one_c, one_n, self.bessel(r)], dim=1)) * u
        mix = torch.sigmoid(self.resnet_theta)
        coef_old = torch.rsqrt(1.0 + mix * mix)
        coef_new = mix * coef_old
        y_c = y.unsqueeze(-1)  # [n_edges, d_sh, 1]
        v = y_c  # placeholder type; set in layer 0
        for k, (env_mlp, tp, linear, latent) in enumerate(
            zip(self.env_embed, self.tps, self.linears, self.latents)
        ):
            # [n_edges, g, m, n_irreps] → [n_edges, g, d_sh, m]
            n_groups = 2 if k == 0 else 1  # layer 0 also embeds the initial features V_ij
            w = env_mlp(x).reshape(n_edges, n_groups, m, self.n_sh_irreps).transpose(2, 3)
            w = w.index_select(2, self.sh_component_irrep)
            if k == 0:
                v = w[:, 1] * y_c  # [n_edges, d_sh, m]
            env_edge = w[:, 0] * y_c  # [n_edges, d_sh, m]
            env = torch.zeros(n_centres, env_edge.shape[1], m, dtype=dtype, device=vec.device)
            env = env.index_add(0, center, env_edge) * self.inv_sqrt_avg_nn
            out = tp(v, env.index_select(0, center))  # [n_edges, d_tp, m], scalars (0e) first
            if k < self.num_layers - 1:
                # split once (its backward is a cat: no zero-filled gradient buffers)
                parts = out.split(linear.split_sizes, dim=1)
                invariants = parts[0]  # [n_edges, n_scalars, m]
                v = linear.forward_parts(parts)
            else:
                invariants = out  # the last layer has 0e outputs only
            # invariants in (channel, path) order: [n_edges, m·n_scalars]
            scalars = invariants.transpose(1, 2).reshape(n_edges, m * self.n_scalars[k])
            x_new = latent(torch.cat([x, scalars], dim=1)) * u
            if self.latent_resnet:
                x = coef_old[k] * x + coef_new[k] * x_new
            else:
                x = x_new
        e_edge = self.edge_energy(x).squeeze(-1)  # [n_edges]
        atomic = torch.zeros(n_centres, dtype=dtype, device=vec.device).index_add(0, center, e_edge)
        return self.energy_scale.index_select(0, center_species) * (atomic * self.inv_sqrt_avg_nn)

    @torch.jit.export
    def edge_forward(
        self,
        vec: torch.Tensor,  # [n_edges, 3] r_j - r_i, the neighbour j may be a ghost/image atom
        center: torch.Tensor,  # [n_edges] int64 index of the centre among the centres
        neighbor_species: torch.Tensor,  # [n_edges] int64 species of j
        center_species: torch.Tensor,  # [n_centres] int64 species of each centre
    ) -> tuple[torch.Tensor, torch.Tensor]:  # [n_centres] E_i with the shift μ, [n_edges, 3] ∂E/∂vec
        """The interface for MD engines with their own neighbour lists (the LAMMPS pair style,
        the AOTInductor package): per-centre energies and the gradient of their sum with
        respect to each edge vector. The engine turns ∂E/∂r_ij into forces (F_i += g_ij,
        F_j −= g_ij) and virials (W −= r_ij ⊗ g_ij) itself."""
        if vec.dtype != self.energy_shift.dtype:
            raise RuntimeError(
                "legato: the model computes in "
                + _dtype_name(self.energy_shift.dtype)
                + " but the edge vectors are "
                + _dtype_name(vec.dtype)
                + "; convert them, or deploy a model of that dtype"
            )
        if torch.jit.is_scripting():  # TorchScript hosts run with grad mode on
            return self._edge_forward(vec, center, neighbor_species, center_species)
        with torch.enable_grad():
            return self._edge_forward(vec, center, neighbor_species, center_species)

    def _edge_forward(
        self,
        vec: torch.Tensor,
        center: torch.Tensor,
        neighbor_species: torch.Tensor,
        center_species: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        leaf = vec.detach().requires_grad_(True)
        z_center = center_species.index_select(0, center)
        atomic = self.energy_from_edges(leaf, center, z_center, neighbor_species, center_species)
        grad = torch.autograd.grad([atomic.sum()], [leaf])[0]
        assert grad is not None
        return atomic.detach() + self.energy_shift.index_select(0, center_species), grad

    def extra_repr(self) -> str:
        return f"types={self.type_names}, r_max={self.r_max}, irreps: {self.paths.describe()}"


def _dtype_name(dtype: torch.dtype) -> str:
    if dtype == torch.float64:
        return "float64"
    if dtype == torch.float32:
        return "float32"
    return "another dtype"


def _plain(value: Any) -> Any:
    """Per-species values as Python floats (NumPy / torch scalars and arrays are accepted)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [v.item() if hasattr(v, "item") else v for v in value]
    return value


def _per_species(value: float | Sequence[float], n: int) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * n
    vals = [float(v) for v in value]
    if len(vals) != n:
        raise ValueError(f"expected {n} per-species values, got {len(vals)}")
    return vals


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
