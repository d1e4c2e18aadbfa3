"""Analytic FLOP counts from a config, for MFU and for ``mmjax compile``'s XLA check.

Matmuls and convolutions only (a multiply-add is 2 FLOPs); norms, softmax and elementwise
ops are left out, as MaxText and the PaLM paper do. Attention scores count the full
``seq x seq`` product even when causal, since the XLA kernel computes it. Training is
``TRAIN_FACTOR`` (3) x the forward pass: the backward pass does two matmuls for each
forward one (frozen towers skip theirs; the figure is the convention MFU uses).

Every module kind has one formula, in one table per slot, keyed by the ``kind`` its config
section names (the same kinds ``mmjax.models`` builds):

- ``ENCODERS``: ``config.model.image`` / ``text`` / ``features.<name>`` -> ``Tower``
  (forward FLOPs per example, the tokens it emits and their width);
- ``FUSIONS``: ``config.model.fusion.kind`` -> FLOPs per example over the towers;
- ``TASKS``: ``config.task.name`` -> forward FLOPs of one loss evaluation on a batch
  (the heads, the contrastive logits, ITM's negatives and MLM pass, the caption decoder).

``Count(loop_once=True)`` counts as XLA's ``cost_analysis`` does for ``scan_layers=True``:
XLA's HloCostAnalysis counts a while loop's body once, not once per trip, so a scanned
stack of ``depth`` layers reports one layer's FLOPs (``tests/test_flops.py`` pins both).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

TRAIN_FACTOR = 3


@dataclasses.dataclass(frozen=True)
class Count:
    """How layer stacks count: ``loop_once`` = a scanned stack counts one layer (XLA's view)."""

    loop_once: bool = False

    def stack(self, depth: int, per_layer: int, scanned: bool = True) -> int:
        """``depth`` layers of ``per_layer`` FLOPs; ``scanned``: the stack is an ``nn.scan``
        when ``model.scan_layers`` is on (``layers.Encoder``; co-attention stays unrolled)."""
        return (min(depth, 1) if self.loop_once and scanned else depth) * per_layer


@dataclasses.dataclass(frozen=True)
class Tower:
    """An encoder's forward FLOPs per example and its output: ``seq`` tokens ``[seq, width]``;
    every kind pools to ``[width]`` (a ResNet: its last stage's channels)."""

    flops: int
    seq: int
    width: int


def block_flops(
    seq: int, width: int, mlp_dim: int, *, gated: bool = False, ctx: int = 0, ctx_width: int = 0
) -> int:
    """One transformer block on ``[seq, width]``: q/k/v/out projections, scores and values,
    the MLP (a GLU has 3 matmuls), and with ``ctx`` a cross-attention sub-layer over
    ``[ctx, ctx_width]`` (q/out on the queries, k/v on the context, scores and values)."""
    mlp = 3 * mlp_dim // 2 if gated else mlp_dim
    flops = seq * (8 * width * width + 4 * width * mlp) + 4 * seq * seq * width
    if ctx:
        flops += 4 * seq * width * width + 4 * ctx * ctx_width * width + 4 * seq * ctx * width
    return flops


def encoder_forward_flops(seq: int, width: int, depth: int, mlp_dim: int) -> int:
    """One sequence through ``depth`` transformer blocks."""
    return depth * block_flops(seq, width, mlp_dim)


def attention_pool_flops(queries: int, seq: int, width: int, kv_width: int = 0) -> int:
    """``queries`` learned queries attending to ``[seq, kv_width]`` (MAP head, CoCa's
    pooler, graph clusters): q/out projections, k/v projections, scores and values."""
    return (
        4 * queries * width * width
        + 4 * seq * (kv_width or width) * width
        + 4 * queries * seq * width
    )


def _map_head(seq: int, width: int, mlp_dim: int) -> int:
    """The ViT's MAP head: one probe query and its MLP."""
    return attention_pool_flops(1, seq, width) + 4 * width * mlp_dim


# -- encoders: config section -> Tower -------------------------------------------------------


def vit_tower(cfg: Any, c: Count) -> Tower:
    """``models.vision.VisionTransformer``: patch embedding, encoder, MAP head if any."""
    patches = (cfg.image_size // cfg.patch_size) ** 2
    seq = patches + (1 if cfg.pool in ("cls", "cls_mean") else 0) + cfg.get("num_registers", 0)
    flops = 2 * patches * cfg.patch_size**2 * 3 * cfg.width  # patch embedding
    per_layer = block_flops(seq, cfg.width, cfg.mlp_dim, gated=bool(cfg.get("mlp_gated")))
    flops += c.stack(cfg.depth, per_layer)
    if cfg.pool == "map":
        flops += _map_head(seq, cfg.width, cfg.mlp_dim)
    return Tower(flops, seq, cfg.width)


def video_tower(cfg: Any, c: Count) -> Tower:
    """``models.video.VideoTransformer``: tubelet embedding + joint or factorised encoders."""
    steps = cfg.num_frames // cfg.tubelet
    patches = (cfg.image_size // cfg.patch_size) ** 2
    cls = 1 if cfg.get("pool", "mean") == "cls" else 0
    w = cfg.width
    flops = 2 * steps * patches * cfg.tubelet * cfg.patch_size**2 * 3 * w
    if cfg.get("attention", "joint") == "joint":
        seq = steps * patches + cls
        flops += c.stack(cfg.depth, block_flops(seq, w, cfg.mlp_dim))
        if cfg.get("pool") == "map":
            flops += _map_head(seq, w, cfg.mlp_dim)
        return Tower(flops, seq, w)
    flops += steps * c.stack(cfg.depth, block_flops(patches + cls, w, cfg.mlp_dim))
    temporal = c.stack(cfg.get("temporal_depth", 1), block_flops(steps, w, cfg.mlp_dim))
    return Tower(flops + temporal, steps, w)


def audio_tower(cfg: Any, c: Count) -> Tower:
    """``models.audio.AudioTransformer``: patch embedding + encoder (every patch counted)."""
    patches = (cfg.max_frames // cfg.time_patch) * (cfg.num_mels // cfg.freq_patch)
    seq = patches + (1 if cfg.get("pool", "mean") == "cls" else 0)
    flops = 2 * patches * cfg.time_patch * cfg.freq_patch * cfg.width
    return Tower(
        flops + c.stack(cfg.depth, block_flops(seq, cfg.width, cfg.mlp_dim)), seq, cfg.width
    )


def _conv(size: int, k: int, stride: int, cin: int, cout: int) -> tuple[int, int]:
    """``(FLOPs, output size)`` of a square ``k x k`` conv with ``k // 2`` padding."""
    out = (size + 2 * (k // 2) - k) // stride + 1
    return 2 * out * out * k * k * cin * cout, out


def resnet_tower(cfg: Any, c: Count) -> Tower:
    """``models.resnet.ResNet``: stem, stages of basic / bottleneck blocks (shortcut convs
    where the width or stride changes); tokens are the last feature map's positions."""
    del c  # no scanned stacks
    flops, size = _conv(cfg.image_size, 7, 2, 3, cfg.embedding_size)
    size = (size + 2 - 3) // 2 + 1  # 3x3/2 max pool
    cin = cfg.embedding_size
    bottleneck = cfg.get("layer_type", "bottleneck") == "bottleneck"
    for s, (features, depth) in enumerate(zip(cfg.hidden_sizes, cfg.depths, strict=True)):
        for i in range(depth):
            stride = 1 if i else (2 if s or cfg.get("downsample_in_first_stage") else 1)
            if cin != features or stride != 1:
                flops += _conv(size, 1, stride, cin, features)[0]
            if bottleneck:
                mid = features // 4
                first, middle = (stride, 1) if cfg.get("downsample_in_bottleneck") else (1, stride)
                convs = [(1, first, cin, mid), (3, middle, mid, mid), (1, 1, mid, features)]
            else:
                convs = [(3, stride, cin, features), (3, 1, features, features)]
            for k, st, a, b in convs:
                f, size = _conv(size, k, st, a, b)
                flops += f
            cin = features
    return Tower(flops, size * size, cin)


def clip_text_tower(cfg: Any, c: Count) -> Tower:
    """``models.text.CLIPTextTransformer``: the encoder over ``context_length`` tokens."""
    per_layer = block_flops(cfg.context_length, cfg.width, cfg.mlp_dim)
    return Tower(c.stack(cfg.depth, per_layer), cfg.context_length, cfg.width)


def bert_tower(cfg: Any, c: Count) -> Tower:
    """``models.text.BertEncoder``: the encoder + the tanh pooler with ``pool='cls'``."""
    t = clip_text_tower(cfg, c)
    pooler = 2 * cfg.width * cfg.width if cfg.get("pool", "cls") == "cls" else 0
    return dataclasses.replace(t, flops=t.flops + pooler)


def feature_tower(cfg: Any, c: Count) -> Tower:
    """``models.fusion.FeatureSequenceEncoder`` over ``max_len`` frames of ``dim`` features."""
    seq, w = cfg["max_len"], cfg["width"]
    flops = 2 * seq * cfg["dim"] * w + c.stack(cfg["depth"], block_flops(seq, w, cfg["mlp_dim"]))
    return Tower(flops, seq, w)


ENCODERS: dict[str, Callable[[Any, Count], Tower]] = {
    "vit": vit_tower,
    "resnet": resnet_tower,
    "video": video_tower,
    "audio": audio_tower,
    "clip": clip_text_tower,
    "bert": bert_tower,
    "features": feature_tower,  # a features.<name> section without a kind
}


def tower(cfg: Any, c: Count = Count(), default: str = "vit") -> Tower:
    """The ``Tower`` of one encoder section, by its ``kind`` (``default`` when it has none)."""
    kind = cfg.get("kind", default)
    if kind not in ENCODERS:
        raise KeyError(f"no analytic FLOPs for encoder kind {kind!r}; known: {sorted(ENCODERS)}")
    return ENCODERS[kind](cfg, c)


# Kept for callers that count one tower (benchmarks, tests): the forward FLOPs per example.
def vit_forward_flops(cfg: Any) -> int:
    return vit_tower(cfg, Count()).flops


def video_forward_flops(cfg: Any) -> int:
    return video_tower(cfg, Count()).flops


def image_forward_flops(cfg: Any) -> int:
    """The image slot's tower (ViT, ResNet, video or audio by ``cfg.kind``)."""
    return tower(cfg).flops


def text_forward_flops(cfg: Any) -> int:
    return tower(cfg, default="clip").flops


# -- fusion kinds: (config.model.fusion, towers in fusion order) -> FLOPs per example -------


def _transformer(f: Any) -> tuple[int, int, int]:
    """A token-level fusion's ``(width, depth, mlp_dim)`` with ``build_fused_model``'s
    defaults."""
    w = f["width"]
    return w, f.get("depth", 2), f.get("mlp_dim", 4 * w)


def early_fusion(f: Any, towers: list[Tower], c: Count) -> int:
    """``EarlyFusion``: a Dense per modality to ``width``, one encoder over CLS + all tokens."""
    w, depth, mlp = _transformer(f)
    seq = 1 + sum(t.seq for t in towers)
    proj = sum(2 * t.seq * t.width * w for t in towers)
    return proj + c.stack(depth, block_flops(seq, w, mlp))


def _query_and_context(f: Any, towers: list[Tower]) -> tuple[int, int, int]:
    """``(projection FLOPs, query seq, context seq)`` of the text-queried fusions: the
    context is the other modalities' tokens (``FusedModel._context`` projects those whose
    width is not ``width`` when they differ; ``CrossAttentionFusion`` projects a query or
    context of another width)."""
    w = f["width"]
    query, context = towers[0], towers[1:]
    proj = 2 * query.seq * query.width * w if query.width != w else 0
    widths = {t.width for t in context}
    if len(widths) > 1:
        proj += sum(2 * t.seq * t.width * w for t in context if t.width != w)
    elif widths != {w}:
        proj += sum(2 * t.seq * t.width * w for t in context)
    return proj, query.seq, sum(t.seq for t in context)


def cross_attention_fusion(f: Any, towers: list[Tower], c: Count) -> int:
    """One-way (ALBEF): each layer self-attends over the text and cross-attends to the rest."""
    w, depth, mlp = _transformer(f)
    proj, sq, sc = _query_and_context(f, towers)
    return proj + c.stack(depth, block_flops(sq, w, mlp, ctx=sc, ctx_width=w))


def co_attention_fusion(f: Any, towers: list[Tower], c: Count) -> int:
    """ViLBERT co-attention: two unrolled streams, each cross-attending to the other; a
    Dense of the two pooled tokens."""
    w, depth, mlp = _transformer(f)
    proj, sq, sc = _query_and_context(f, towers)
    per_layer = block_flops(sq, w, mlp, ctx=sc, ctx_width=w) + block_flops(
        sc, w, mlp, ctx=sq, ctx_width=w
    )
    return proj + c.stack(depth, per_layer, scanned=False) + 2 * 2 * w * w


def late_concat_fusion(f: Any, towers: list[Tower], c: Count) -> int:
    """``LateFusion(mode='concat')``: ``Dense(width)(act(Dense(hidden)(concat pooled)))``."""
    w, joint = f["width"], sum(t.width for t in towers)
    hidden = f.get("hidden", 0) or w
    return 2 * joint * hidden + 2 * hidden * w


def gated_fusion(f: Any, towers: list[Tower], c: Count) -> int:
    """``LateFusion(mode='gated')`` (GMU): a tanh Dense per modality and the gate Dense."""
    w, joint = f["width"], sum(t.width for t in towers)
    return sum(2 * t.width * w for t in towers) + 2 * joint * len(towers) * w


def tensor_fusion(f: Any, towers: list[Tower], c: Count) -> int:
    """``TensorFusion(rank=0)``: projections, the outer products, a Dense of the tensor."""
    w, h = f["width"], f.get("hidden", 32)
    flops, size = sum(2 * t.width * h for t in towers), h + 1
    for _ in towers[1:]:
        flops += 2 * size * (h + 1)  # one outer product (a dot with no contraction)
        size *= h + 1
    return flops + 2 * size * w


def tensor_lowrank_fusion(f: Any, towers: list[Tower], c: Count) -> int:
    """``TensorFusion(rank>0)`` (LMF): projections, each ``z_i`` through its rank factors."""
    w, h, rank = f["width"], f.get("hidden", 32), f.get("rank", 4)
    return sum(2 * t.width * h + 2 * (h + 1) * rank * w for t in towers)


def graph_fusion(f: Any, towers: list[Tower], c: Count) -> int:
    """``GraphFusion``: a node Dense per modality, ``k`` attention-pooled cluster nodes per
    modality, ``graph_layers`` GCN layers (``H W`` then ``Â (H W)``)."""
    w, k = f["width"], f.get("clusters_per_modality", 0)
    flops = sum(2 * t.width * w for t in towers)
    if k:
        flops += sum(2 * t.seq * t.width * w + attention_pool_flops(k, t.seq, w) for t in towers)
    nodes = len(towers) * (1 + k)
    return flops + f.get("graph_layers", 2) * (2 * nodes * w * w + 2 * nodes * nodes * w)


FUSIONS: dict[str, Callable[[Any, list[Tower], Count], int]] = {
    "early": early_fusion,
    "cross_attention": cross_attention_fusion,
    "co_attention": co_attention_fusion,
    "late_concat": late_concat_fusion,
    "gated": gated_fusion,
    "tensor": tensor_fusion,
    "tensor_lowrank": tensor_lowrank_fusion,
    "graph": graph_fusion,
}


def fused_towers(model: Any, c: Count) -> list[Tower]:
    """The towers of a ``FusedModel`` in fusion order: text, image, features by name."""
    towers = [tower(model.text, c, "clip")] if model.get("text") else []
    if model.get("image"):
        towers.append(tower(model.image, c))
    for name in sorted(model.get("features") or {}):
        towers.append(tower(model.features[name], c, "features"))
    return towers


def fusion_flops(model: Any, towers: list[Tower], c: Count) -> int:
    """``config.model.fusion``'s FLOPs per example over ``towers``."""
    kind = model.fusion.get("kind")
    if kind not in FUSIONS:
        raise KeyError(f"no analytic FLOPs for fusion kind {kind!r}; known: {sorted(FUSIONS)}")
    return FUSIONS[kind](model.fusion, towers, c)


# -- tasks: (config, batch) -> forward FLOPs of one loss evaluation ---------------------------


def two_tower_flops(m: Any, batch: int, c: Count) -> int:
    """``TwoTower`` from ``config.model``: both towers, the projections, the ``[batch,
    batch]`` logits (every image kind pools to its token width; ResNet: the last stage's)."""
    image, text = tower(m.image, c), tower(m.text, c, "clip")
    proj = 2 * m.embed_dim * (text.width + (image.width if m.get("image_projection", True) else 0))
    return batch * (image.flops + text.flops + proj) + 2 * batch * batch * m.embed_dim


def contrastive_flops(config: Any, batch: int, c: Count) -> int:
    return two_tower_flops(config.model, batch, c)


def _num_classes(task: Any) -> int:
    """The classifier's outputs as ``ClassifyTask`` builds them: 2 for matching, the answer
    vocabulary for VQA (no ``answers``: the synthetic set; the task rejects that on real
    data), else ``task.num_classes`` (0, which the task takes from the synthetic data,
    counts no head: a head is well under 1% of a step)."""
    if task.get("target", "label") == "match":
        return 2
    if task.get("target") == "vqa":
        from mmjax.tasks.classify_targets import answer_vocabulary  # the answers the task builds

        return len(answer_vocabulary(task.get("answers", ""), synthetic=True))
    return task.get("num_classes", 0)


def classify_flops(config: Any, batch: int, c: Count) -> int:
    """``FusedClassifier``: the fused model (or one encoder) and the linear / MLP head."""
    m = config.model
    if m.get("fusion"):
        towers = fused_towers(m, c)
        pooled, flops = m.fusion["width"], sum(t.flops for t in towers)
        flops += fusion_flops(m, towers, c)
    else:
        t = tower(m.image, c) if m.get("image") else tower(m.text, c, "clip")
        pooled, flops = t.width, t.flops
    classes, hidden = _num_classes(config.task), config.task.get("head_hidden", 0)
    head = 2 * pooled * hidden + 2 * hidden * classes if hidden else 2 * pooled * classes
    return batch * (flops + head)


def itm_mlm_flops(config: Any, batch: int, c: Count) -> int:
    """``ITMMLMModel.pretrain``: the image tower once, the text tower on the captions and the
    masked captions, ITC projections and similarities (for the hard negatives and again in
    the loss), the fusion on ``4 * batch`` rows (positives, two hard negatives each, the
    masked captions), the ITM head on ``3 * batch`` and the MLM head on the masked rows."""
    m = config.model
    text, image = fused_towers(m, c)
    w, e, seq = m.fusion["width"], m.embed_dim, text.seq
    flops = batch * (image.flops + 2 * text.flops + 2 * e * (image.width + text.width))
    flops += 2 * (2 * batch * batch * e)
    flops += 4 * batch * fusion_flops(m, [text, image], c) + 3 * batch * 2 * w * 2
    mlm = 2 * seq * w * w + 2 * seq * w * m.text.vocab_size  # transform + tied decoder
    return flops + batch * mlm


def caption_flops(config: Any, batch: int, c: Count) -> int:
    """``CoCa``: the image tower, CoCa's attentional pooler (``caption_queries``), the
    unimodal and cross-attending decoder layers over ``context_length`` tokens, the
    vocabulary projection, and with a contrastive weight the projections and logits."""
    m, t = config.model, config.model.text
    image = tower(m.image, c)
    ctx, seq, w = image.seq, t.context_length, t.width
    flops = image.flops
    if m.get("caption_queries", 0):
        ctx = m.caption_queries
        flops += attention_pool_flops(ctx, image.seq, image.width)
    flops += c.stack(t.get("unimodal_depth", 0), block_flops(seq, w, t.mlp_dim))
    cross = block_flops(seq, w, t.mlp_dim, ctx=ctx, ctx_width=image.width)
    flops += c.stack(t.depth, cross) + 2 * seq * w * t.vocab_size
    contrastive = config.task.get("contrastive_weight", 0.0) > 0
    if contrastive:
        flops += 2 * m.embed_dim * (image.width + w)
    return batch * flops + (2 * batch * batch * m.embed_dim if contrastive else 0)


TASKS: dict[str, Callable[[Any, int, Count], int]] = {
    "contrastive": contrastive_flops,
    "classify": classify_flops,
    "itm_mlm": itm_mlm_flops,
    "caption": caption_flops,
}


def forward_flops(config: Any, batch: int, count: Count = Count()) -> int:
    """Forward FLOPs of one loss evaluation of ``config``'s task on ``batch`` examples."""
    name = config.task.name
    if name not in TASKS:
        raise KeyError(f"no analytic FLOPs for task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name](config, batch, count)


def train_flops(config: Any, batch: int) -> int:
    """FLOPs of one train step on ``batch`` examples: ``TRAIN_FACTOR`` x the forward."""
    return TRAIN_FACTOR * forward_flops(config, batch)


def two_tower_train_flops(model_cfg: Any, batch: int) -> int:
    """Training FLOPs of one step of a ``TwoTower`` (``config.model``) on ``batch`` pairs."""
    return TRAIN_FACTOR * two_tower_flops(model_cfg, batch, Count())
