"""Graph fusion: a GCN (Kipf & Welling 2017) over one node per modality (+ optional
token-cluster nodes made by masked attention pooling)."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.common import check_tokens, key_mask, learned_queries, logical_param, zero_padding
from mmjax.models.fusion.common import (
    INTO_WIDTH,
    Array,
    Fused,
    Modalities,
    VectorFusionSpec,
    pooled_of,
)
from mmjax.models.heads import dense
from mmjax.models.kinds import register_fusion
from mmjax.models.layers import (
    Dtype,
    MultiHeadAttention,
    activation,
    dense_init,
    kernel_init,
    layer_norm,
)
from mmjax.models.spec import SpecModule, check_choice

ADJACENCIES = ("learned", "fixed")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GraphSpec(VectorFusionSpec):
    """``GraphFusion``'s options: GCN layers, the adjacency, token-cluster nodes per
    modality."""

    graph_layers: int = 2
    adjacency: str = "learned"
    clusters_per_modality: int = 0

    def __post_init__(self) -> None:
        check_choice("adjacency", self.adjacency, ADJACENCIES)


def normalized_adjacency(adjacency: Array) -> Array:
    """GCN propagation matrix (Kipf & Welling): ``D^-1/2 (A + I) D^-1/2``, ``D`` the degrees
    of ``A + I``; ``[nodes, nodes]`` -> ``[nodes, nodes]``."""
    a = adjacency + jnp.eye(adjacency.shape[0], dtype=adjacency.dtype)
    d = jax.lax.rsqrt(jnp.sum(a, axis=1))
    return a * d[:, None] * d[None, :]


class GraphConv(nn.Module):
    """One GCN layer: ``act(Â H W)``; ``H`` ``[batch, nodes, dim]``, ``Â`` ``[nodes, nodes]``,
    ``W`` ``[dim, features]`` (no bias, as in Kipf & Welling's propagation rule)."""

    features: int
    act: str = "gelu"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h: Array, adjacency: Array) -> Array:
        w = logical_param(
            self, "kernel", kernel_init(), (h.shape[-1], self.features), ("embed", "mlp")
        )
        hw = jnp.einsum("bnd,df->bnf", h.astype(self.dtype), w.astype(self.dtype))
        return activation(self.act)(jnp.einsum("mn,bnf->bmf", adjacency.astype(self.dtype), hw))


@register_fusion("graph")
class GraphFusion(SpecModule):
    """Graph fusion: a GCN over modality nodes, mean readout.

    Nodes: ``Dense(width)`` of each modality's ``pooled`` ``[batch, d_i]``, and with
    ``clusters_per_modality = k > 0`` also ``k`` nodes per modality, each a masked
    attention pooling (one head, learned query) over that modality's ``tokens``
    ``[batch, s_i, d_i]`` (``mask`` bool ``[batch, s_i]``). Node order: the
    modality nodes, then modality 0's clusters, modality 1's, ...

    Adjacency ``Â`` ``[nodes, nodes]``: ``'fixed'``: the complete graph ``A = 1 - I``
    normalized as ``D^-1/2 (A + I) D^-1/2`` (``normalized_adjacency``); ``'learned'``:
    ``softmax`` over each row of a learned logit matrix (rows sum to 1; the diagonal
    keeps a learned self-loop weight; zero init = uniform). Layers (``graph_layers``):
    ``H <- H + act(Â H W_l)`` (residual), then a LayerNorm; ``pooled`` = mean over nodes.
    Returns ``{'pooled': [batch, width], 'adjacency': [nodes, nodes], 'nodes':
    [batch, nodes, width]}``.
    """

    spec: GraphSpec

    @nn.compact
    def __call__(self, modalities: Modalities, *, deterministic: bool = True) -> Fused:
        pooled = pooled_of("GraphFusion", modalities)
        nodes = [
            dense(self.width, INTO_WIDTH, self.dtype, f"node_{i}")(p)[:, None]
            for i, p in enumerate(pooled)
        ]
        k = self.clusters_per_modality
        for i, (name, mod) in enumerate(modalities.items() if k else ()):
            t, m = mod["tokens"], mod["mask"]
            check_tokens(f"GraphFusion modality {name}", t, m)
            q = learned_queries(self, f"cluster_queries_{i}", dense_init(), (k, self.width), len(t))
            x = dense(self.width, INTO_WIDTH, self.dtype, f"cluster_proj_{i}")(zero_padding(t, m))
            nodes.append(
                MultiHeadAttention(1, dtype=self.dtype, name=f"cluster_pool_{i}")(
                    q, x, mask=key_mask(m)
                )
            )
        h = jnp.concatenate(nodes, axis=1).astype(self.dtype)  # [batch, nodes, width]
        n = h.shape[1]
        if self.adjacency == "fixed":
            adj = normalized_adjacency(1.0 - jnp.eye(n, dtype=jnp.float32))
        else:
            logits = logical_param(
                self, "adjacency_logits", nn.initializers.zeros, (n, n), (None, None)
            )
            adj = jax.nn.softmax(logits, axis=-1)
        for i in range(self.graph_layers):
            h = h + GraphConv(self.width, self.act, self.dtype, name=f"gcn_{i}")(h, adj)
        h = layer_norm(1e-5, self.dtype, name="ln_final")(h)
        return {"pooled": jnp.mean(h, axis=1), "adjacency": adj, "nodes": h}
