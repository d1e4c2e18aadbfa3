"""Fusion modules: combine the outputs of several modality encoders into one
representation. One file per family; every kind registers itself in
``models/kinds.py``'s ``FUSIONS`` and is called as ``fuse(modalities: dict[str, Tokens])``
(``fusion/common.py``).

Token-level fusion (sees every token, takes padding masks):

- ``early``: single-stream (VisualBERT / ViLT), ``fusion/early.py``.
- ``cross_attention``: ALBEF / BLIP fusion encoder (the text self-attends and
  cross-attends to the other modalities); ``co_attention``: ViLBERT, ``fusion/cross.py``.

Vector-level fusion (pooled ``[batch, dim_i]`` per modality):

- ``late_concat``: concat + MLP; ``gated``: a gated multimodal unit (GMU, Arevalo et al.
  2017), ``fusion/late.py``.
- ``tensor``: Tensor Fusion Network (Zadeh et al. 2017); ``tensor_lowrank``: Low-rank
  Multimodal Fusion (Liu et al. 2018), ``fusion/tensor.py``.
- ``graph``: GCN (Kipf & Welling 2017) over one node per modality (+ optional
  token-cluster nodes made by masked attention pooling), ``fusion/graph.py``.

All transformers are ``layers.Encoder`` / ``layers.TransformerBlock``; all params carry
logical axis names.
"""

from mmjax.models.fusion.common import Tokens
from mmjax.models.fusion.cross import CoAttentionFusion, CrossAttentionFusion
from mmjax.models.fusion.early import EarlyFusion
from mmjax.models.fusion.graph import GraphFusion, normalized_adjacency
from mmjax.models.fusion.late import GatedFusion, LateFusion
from mmjax.models.fusion.tensor import LowRankTensorFusion, TensorFusion, tensor_features

__all__ = [
    "CoAttentionFusion",
    "CrossAttentionFusion",
    "EarlyFusion",
    "GatedFusion",
    "GraphFusion",
    "LateFusion",
    "LowRankTensorFusion",
    "TensorFusion",
    "Tokens",
    "normalized_adjacency",
    "tensor_features",
]
