"""Channel-wise ("uuu") tensor products and equivariant linears, with all paths stacked.

Features are dense tensors ``[n_edges, dim, m]`` whose middle axis concatenates the
components of an ordered list of irreps (channels innermost). An irrep is a pair ``(l, p)`` with parity
``p = ±1``. Coupling coefficients come from e3nn's real Wigner 3j symbols (the basis of
e3nn's spherical harmonics), scaled by √(2l+1) ("component" normalisation). Each layer's
whole product is one contraction with a fixed coupling tensor, and each equivariant
linear is one matrix product per output irrep: no Python loop over paths in ``forward``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from e3nn import o3
from torch import nn

from legato.nn.exact import ExactConstants

Irrep = tuple[int, int]  # (l, parity)
Path = tuple[Irrep, Irrep, Irrep]  # (feature irrep, environment irrep, output irrep)

PARITY_MODES = ("o3_full", "o3_restricted", "so3")


def irrep_str(ir: Irrep) -> str:
    return f"{ir[0]}{'e' if ir[1] == 1 else 'o'}"


def irreps_dim(irreps: Sequence[Irrep]) -> int:
    return sum(2 * l + 1 for l, _ in irreps)


def irrep_slices(irreps: Sequence[Irrep]) -> list[slice]:
    out, start = [], 0
    for l, _ in irreps:
        out.append(slice(start, start + 2 * l + 1))
        start += 2 * l + 1
    return out


def _sort_key(ir: Irrep) -> tuple[int, int]:
    # scalars first (0e), then by l, even before odd
    return (ir[0], 0 if ir[1] == 1 else 1)


@dataclass(frozen=True)
class AllegroPaths:
    """Irreps and tensor-product paths of every Allegro layer, pruned from the end.

    ``layers[k]`` lists the paths of layer k, ``inputs[k]`` the irreps of V entering it and
    ``outputs[k]`` the irreps it produces (kept only if the next layer uses them; the
    last layer keeps only 0e).
    """

    sh_irreps: tuple[Irrep, ...]
    inputs: tuple[tuple[Irrep, ...], ...]
    layers: tuple[tuple[Path, ...], ...]
    outputs: tuple[tuple[Irrep, ...], ...]

    @staticmethod
    def build(l_max: int, parity: str, num_layers: int) -> AllegroPaths:
        if parity not in PARITY_MODES:
            raise ValueError(f"parity must be one of {PARITY_MODES}, got {parity!r}")
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")

        def par(l: int) -> int:
            return 1 if parity == "so3" else (-1) ** l

        sh = tuple((l, par(l)) for l in range(l_max + 1))
        if parity == "o3_full":
            allowed = {(l, p) for l in range(l_max + 1) for p in (1, -1)}
        else:
            allowed = {(l, par(l)) for l in range(l_max + 1)}
        layers: list[list[Path]] = []
        v: tuple[Irrep, ...] = sh
        for k in range(num_layers):
            targets = {(0, 1)} if k == num_layers - 1 else allowed
            paths = []
            for ir1 in v:
                for ir2 in sh:
                    p_out = 1 if parity == "so3" else ir1[1] * ir2[1]
                    for l3 in range(abs(ir1[0] - ir2[0]), ir1[0] + ir2[0] + 1):
                        if (l3, p_out) in targets:
                            paths.append((ir1, ir2, (l3, p_out)))
            layers.append(paths)
            v = tuple(sorted({p[2] for p in paths}, key=_sort_key))
        needed = {(0, 1)}
        for k in reversed(range(num_layers)):
            layers[k] = [p for p in layers[k] if p[2] in needed]
            needed = {p[0] for p in layers[k]}
        # order paths: by output irrep (scalars first), then by input irreps
        inputs, outputs, ordered = [], [], []
        v = sh
        for k in range(num_layers):
            paths = sorted(layers[k], key=lambda p: (_sort_key(p[2]), _sort_key(p[0]), _sort_key(p[1])))
            out = tuple(sorted({p[2] for p in paths}, key=_sort_key))
            inputs.append(v)
            outputs.append(out)
            ordered.append(tuple(paths))
            v = out
        return AllegroPaths(sh, tuple(inputs), tuple(ordered), tuple(outputs))

    def n_scalars(self, k: int) -> int:
        return sum(1 for p in self.layers[k] if p[2] == (0, 1))

    def describe(self) -> str:
        parts = ["+".join(irrep_str(i) for i in self.sh_irreps)]
        parts += ["+".join(irrep_str(i) for i in out) for out in self.outputs]
        counts = ", ".join(str(len(p)) for p in self.layers)
        return " → ".join(parts) + f" ({counts} paths)"


def output_groups(paths: Sequence[Path]) -> list[tuple[Irrep, int]]:
    """(output irrep, number of paths) per output irrep, in order; the paths must be sorted
    by output irrep (as :meth:`AllegroPaths.build` orders them), so each group is contiguous."""
    out_order = [p[2] for p in paths]
    if out_order != sorted(out_order, key=_sort_key):
        raise ValueError("paths must be sorted by output irrep")
    return [(ir, out_order.count(ir)) for ir in dict.fromkeys(out_order)]


class ChannelwiseTP(ExactConstants):
    """out[e,k,u] = Σ_ab V[e,a,u] Γ[e,b,u] C[a,b,k] for all paths at once (no weights).

    Features are laid out ``[n_edges, component, channel]`` (channels innermost, so the
    elementwise products and their reductions run over contiguous, vectorisable memory).
    ``paths`` must be sorted by output irrep; the output components are grouped by output
    irrep and, within a group of ``n_p`` paths of dimension ``d``, ordered component-major
    (column ``c·n_p + j`` for component c of path j). Scalar (0e) paths come first, so
    ``out[:, :n_scalars]`` are the invariants. The coupling is computed in float64 and kept
    exact in the module's dtype through conversions (see :class:`ExactConstants`).
    """

    def __init__(self, in1: Sequence[Irrep], in2: Sequence[Irrep], paths: Sequence[Path]) -> None:
        super().__init__()
        s1, s2 = irrep_slices(in1), irrep_slices(in2)
        d1, d2 = irreps_dim(in1), irreps_dim(in2)
        dout = sum(2 * p[2][0] + 1 for p in paths)
        coupling = torch.zeros(d1, d2, dout, dtype=torch.float64)
        start, first = 0, 0
        for ir3, n_p in output_groups(paths):
            d = 2 * ir3[0] + 1
            for j, (ir1, ir2, _) in enumerate(paths[first : first + n_p]):
                l1, l2, l3 = ir1[0], ir2[0], ir3[0]
                w3j = o3.wigner_3j(l1, l2, l3, dtype=torch.float64) * math.sqrt(2 * l3 + 1)
                cols = [start + c * n_p + j for c in range(d)]
                coupling[s1[list(in1).index(ir1)], s2[list(in2).index(ir2)], cols] = w3j
            start += n_p * d
            first += n_p
        self.d1, self.d2, self.dout = d1, d2, dout
        # [dout, d1·d2]: one batched product after the channel-wise outer product
        coupling_t = coupling.reshape(d1 * d2, dout).T.contiguous()
        # a constant of the irreps: not saved (earlier files held ``coupling``)
        self.register_buffer("coupling_t", coupling_t.to(torch.get_default_dtype()), persistent=False)
        self._set_exact("coupling_t", coupling_t)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        state_dict.pop(prefix + "coupling", None)  # legacy constant, rebuilt from the irreps
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, v: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        # v: [n_edges, d1, m], env: [n_edges, d2, m] -> [n_edges, dout, m]
        n, m = v.shape[0], v.shape[2]
        outer = (v.unsqueeze(2) * env.unsqueeze(1)).reshape(n, self.d1 * self.d2, m)
        return torch.matmul(self.coupling_t, outer)


class SparseChannelwiseTP(nn.Module):
    """:class:`ChannelwiseTP` from its nonzero couplings only (~10 % of the dense matrix for
    l_max = 1): a few multiply-adds per output column, which a compiler fuses into one pass
    over the edges (eagerly it would be many small operations). Used by the fast path."""

    def __init__(self, tp: ChannelwiseTP) -> None:
        super().__init__()
        exact = getattr(tp, "_exact", {}).get("coupling_t", tp.coupling_t).double().cpu()  # [dout, d1·d2]
        d2 = tp.d2
        #: per output column k: (a, b, C[a, b, k]) with exact float64 values
        self.terms = [
            [(int(i) // d2, int(i) % d2, float(exact[k, i])) for i in torch.nonzero(exact[k]).flatten()]
            for k in range(exact.shape[0])
        ]

    def forward(self, v: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        # v: [n_edges, d1, m], env: [n_edges, d2, m] -> [n_edges, dout, m]
        cols = []
        for terms in self.terms:
            a, b, c = terms[0]
            acc = v[:, a] * env[:, b] * c  # [n_edges, m]
            for a, b, c in terms[1:]:
                acc = acc + v[:, a] * env[:, b] * c
            cols.append(acc)
        return torch.stack(cols, dim=1)


class EquivariantLinear(nn.Module):
    """Mix paths and channels per output irrep: y_ir = Σ_{p→ir,u} W_p[u,v] x_p[u] / √(n_p·m).

    Input ``[n, d_tp, m]`` in the grouped layout of :class:`ChannelwiseTP` (paths sorted by
    output irrep); output ``[n, d_out, m]``, the irreps of ``out_irreps`` concatenated.
    Weights of all paths are stacked in one parameter ``[n_paths, m, m]``.
    """

    def __init__(self, paths: Sequence[Path], out_irreps: Sequence[Irrep], mul: int) -> None:
        super().__init__()
        self.mul = mul
        self.weight = nn.Parameter(torch.randn(len(paths), mul, mul))
        groups = output_groups(paths)
        if [ir for ir, _ in groups] != list(out_irreps):
            raise ValueError("the paths' output irreps must be out_irreps, in order")
        self.groups: list[tuple[int, int, int]] = []  # (dim, n_paths, first path) per output irrep
        first = 0
        for ir, n_p in groups:
            self.groups.append((2 * ir[0] + 1, n_p, first))
            first += n_p
        self.split_sizes: list[int] = [d * n_p for d, n_p, _ in self.groups]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        for key in ("comp_index", "path_index"):  # legacy constants of earlier files
            state_dict.pop(prefix + key, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [n, d_tp, m] -> [n, d_out, m]
        return self.forward_parts(x.split(self.split_sizes, dim=1))

    def forward_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """The same from the input already split by output irrep (``split_sizes``)."""
        n, m = parts[0].shape[0], self.mul
        outs: list[torch.Tensor] = []
        for (d, n_p, p0), xg in zip(self.groups, parts):
            wg = self.weight[p0 : p0 + n_p].reshape(n_p * m, m) * (1.0 / math.sqrt(n_p * m))
            # rows (edge, component), columns (path, channel)
            outs.append((xg.reshape(n * d, n_p * m) @ wg).reshape(n, d, m))
        return torch.cat(outs, dim=1)
