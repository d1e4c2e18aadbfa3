"""Image-caption matching on the synthetic shapes with graph fusion: a GCN over one node
per modality (its pooled vector) plus attention-pooled cluster nodes over each
modality's tokens, with a learned adjacency, mean readout and an MLP head.

    mmjax train --config configs/classify_graph.py --workdir runs/match_graph
    mmjax train --config configs/classify_graph.py:tiny   # seconds; for tests

Task as in ``classify_late_gated.py`` (random negatives, ``eval/acc``, chance 0.5).
The learned adjacency is ``fuse(...)['adjacency']``.
"""

from pathlib import Path

import ml_collections

from mmjax.config import load_with_options

BASE = Path(__file__).resolve().parent / "vqa_cross_attention.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c, _ = load_with_options(BASE, ",".join(["match", arg or ""]), {}, "classify_graph")
    c.model.fusion = dict(
        kind="graph",
        width=c.model.fusion.width,
        graph_layers=2,
        adjacency="learned",
        clusters_per_modality=2,
    )
    return c
