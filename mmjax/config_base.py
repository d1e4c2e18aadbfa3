"""The base of every shipped config: each ``data`` / ``optim`` / ``train`` / ``mesh`` key once,
with its default and what it means, and one base per model family.

    two_tower()  contrastive image (video, audio) and text towers: CLIP / SigLIP / LiT
    fused()      image and text fused, then a classifier: VQA, matching, labels
    caption()    a ViT and a captioning decoder: CoCa

and, in ``mmjax.config_generative``, the text-to-image family built on these:
``vqvae()`` (the image tokenizer) and ``text_to_image()``.

A config file in ``configs/`` is its family's base, its differences, and its variants as
small functions parsed by ``mmjax.config.Variants`` (README "Config reference")::

    def get_config(arg=None):
        c = config_base.two_tower()
        c.optim.rules = [("image/.*", None), (".*", {})]  # what this config changes
        return Variants(arg, __file__, {"tiny": config_base.two_tower_tiny}).apply(c)

The ``*_tiny`` functions shrink a family's base to a seconds-long run for tests and smoke
checks; the video and audio front ends add their own ``data`` keys (``video_data``,
``audio_data``), which only configs with such inputs carry.
"""

from __future__ import annotations

import json
import math
from typing import Any

import ml_collections

CONTEXT = 12  # the longest synthetic caption is 10 words + BOS/EOS
VOCAB = 40  # the shipped synthetic tokenizer has 39 tokens
# Tower sizes (depth per tower): the default runs' (two-tower, caption), the fused and
# video runs', and every tower of a *_tiny run.
SMALL = dict(width=128, num_heads=4, mlp_dim=512)
MEDIUM = dict(width=96, num_heads=4, mlp_dim=384)
TINY = dict(width=32, depth=1, num_heads=2, mlp_dim=64)
TINY_IMAGE = dict(TINY, image_size=32, patch_size=8)


def data() -> ml_collections.ConfigDict:
    """``config.data``: the input pipeline (``mmjax/data``); ``source`` names the records."""
    d = ml_collections.ConfigDict()
    d.source = "synthetic"
    d.image_size = 64  # side of every image after the transform (the model's image_size)
    d.train_records = 100_000  # synthetic / generated: split sizes
    d.eval_records = 256
    d.synthetic_seed = 0  # which synthetic world to draw
    d.tokenizer = "synthetic"  # 'synthetic' | 'generated' (shipped) | a tokenizer.json (dir)
    d.normalization = "clip"  # on-device mean / std: 'clip' | 'imagenet' | 'siglip' | HF dir
    d.num_threads = 2
    d.prefetch = 4
    d.bad_records = "skip"  # unreadable image / empty caption: 'skip' (counted) | 'fail'
    d.max_bad_fraction = 0.1  # stop when more of the records read so far were bad
    d.max_image_pixels = 89_478_485  # a larger image is a bad record (decompression bomb)
    d.allow_outside_root = False  # files: image paths may leave the captions file's dir
    d.synthetic_corrupt_fraction = 0.0  # fault injection: this fraction of records is bad
    # Real data (mmjax/data/sources): source 'synthetic' | 'tfds:NAME[:SPLIT]' | 'files:X.jsonl'
    # | 'folder:ROOT' | 'wds:shards-{000..127}.tar' | 'arrayrecord:DIR'
    d.eval_source = ""  # '' = the synthetic / TFDS source's own eval split
    d.train_split = "train"  # TFDS split names
    d.eval_split = ""  # '' = the data set's validation / val / test split
    d.tfds_data_dir = ""  # '' = TFDS's default (~/tensorflow_datasets)
    d.tfds_download = False  # let tfds download + prepare a missing data set
    d.fields = dict(image="", caption="", label="")  # TFDS feature paths; '' = defaults
    d.caption_template = "a photo of a {}."  # class name -> caption (folder, TFDS labels)
    d.shuffle_buffer = 1000  # wds: samples shuffled together
    d.train_transform = "none"  # 'none' | 'resize_center_crop' | 'random_resized_crop'
    d.eval_transform = "none"  # 'none' | 'resize_center_crop'
    d.crop_scale = (0.08, 1.0)
    d.crop_ratio = (3 / 4, 4 / 3)
    d.hflip = False
    d.blur_prob = 0.0  # training: P(Gaussian blur), radius ~ U(blur_sigma) (DINO's)
    d.blur_sigma = (0.1, 2.0)
    d.num_workers = 0  # grain worker processes (0 = threads in this process)
    d.image_processor = ""  # an HF dir: its resize / crop for transform 'none' ('' = off)
    return d


def video_data(c: ml_collections.ConfigDict, num_frames: int) -> None:
    """Adds the video keys to ``c.data`` (``mmjax/data/media.py``)."""
    c.data.num_frames = num_frames  # frames per clip, as the model's num_frames
    c.data.video_frames = "all"  # 'all' | 'middle_frame' (the no-motion control)


def audio_data(c: ml_collections.ConfigDict, max_frames: int, **extra: object) -> None:
    """Adds the log-mel front end (``mmjax/data/audio.py``) to ``c.data``; num_mels and
    max_frames as the model's; ``extra`` e.g. ``spec_augment=dict(time_masks=2, ...)``."""
    c.data.audio = dict(
        sample_rate=8000, n_fft=256, hop=128, num_mels=32, max_frames=max_frames, **extra
    )


def optim() -> ml_collections.ConfigDict:
    """``config.optim``: optimizer, schedule, parameter rules (``mmjax/optim``)."""
    o = ml_collections.ConfigDict()
    o.name = "adamw"  # 'adamw' | 'lion' | 'adafactor'
    o.lr = 2e-3
    o.schedule = "cosine"  # 'cosine' | 'linear' | 'constant' | 'rsqrt'; linear warmup from 0
    o.warmup_steps = 50
    o.end_lr_fraction = 0.0
    o.b1 = 0.9
    o.b2 = 0.98
    o.eps = 1e-6
    o.weight_decay = 0.05
    o.grad_clip_norm = 1.0
    o.cooldown_steps = 0  # 'constant' / 'rsqrt': final linear decay
    o.timescale = 0  # 'rsqrt': lr * sqrt(timescale / (timescale + t)); 0 = warmup_steps
    # (regex, rule) over '/'-joined param paths, first match wins; None = frozen, else
    # dict(lr_mult=, wd_mult=, decay=None|True|False, schedule=dict(...)).
    # See mmjax/optim/param_rules.py
    o.rules = [(".*", {})]
    o.llrd = 1.0  # layer-wise lr decay per tower (1 = off)
    o.accum_steps = 1  # micro-batches per step (same update as one big batch)
    o.ema_decay = 0.0  # EMA of trainable params, used for eval (0 = off)
    return o


def train() -> ml_collections.ConfigDict:
    """``config.train``: steps, batch, intervals, retention, writers, failure handling."""
    t = ml_collections.ConfigDict()
    t.steps = 1000
    t.batch_size = 128
    t.eval_batch_size = 128
    t.seed = 0  # init, dropout and data order
    t.log_every = 50
    t.eval_every = 500  # 0 = only at the end
    t.checkpoint_every = 100
    t.max_checkpoints = 2
    t.keep_period = 0  # also keep every k-th step's checkpoint forever (0 = off)
    t.best_metric = ""  # e.g. 'eval/i2t_r1': keep the best params in WORKDIR/best/
    t.best_mode = "max"  # 'max' | 'min'
    t.keep_best = 1  # how many best checkpoints to keep
    t.writers = ["jsonl", "tensorboard"]  # + 'wandb' (pip install 'mmjax[wandb]')
    t.wandb_project = ""  # '' = $WANDB_PROJECT or W&B's default
    t.dump_predictions = True  # eval predictions to WORKDIR/predictions/<step>/<eval>.jsonl
    t.nonfinite = "stop"  # non-finite loss/grads: 'stop' (at that step) | 'skip_step'
    t.preemption_sync_every = 10  # multi-process: steps between stop-flag exchanges
    t.debug_nan_step = 0  # fault injection: make step k's loss and grads NaN (0 = off)
    t.allow_config_change = False  # resume a checkpoint saved with another lr/batch/data
    return t


def run(task: dict, model: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A whole config: ``task`` and ``model`` around the shared sections above."""
    c = ml_collections.ConfigDict()
    c.task = task
    c.model = model
    c.data = data()
    if model.get("image"):
        c.data.image_size = model.image.image_size
    c.optim = optim()
    # Several evaluators per run (mmjax/evaluation/evaluators.py): [dict(name=, data=dict(...),
    # task=dict(...), metrics=[...])], each writing eval/<name>/<metric>; [] = the task's eval
    # only.
    c.evals = []
    c.init_from = ""  # '' | another run's workdir / checkpoints dir | 'hf:<path or id>'
    c.init_from_dont_load = []  # regexes of param paths to keep freshly initialized
    # -1 fills the devices; rules: (logical name, mesh axes) entries that replace those of
    # mmjax.parallel.sharding.DEFAULT_RULES by name, e.g. [("activation_length", "tensor")]
    c.mesh = dict(data=-1, fsdp=1, tensor=1, rules=[])
    c.train = train()
    return c


def compute() -> ml_collections.ConfigDict:
    """The ``config.model`` keys every family shares: how it computes, not what it is."""
    m = ml_collections.ConfigDict()
    m.dtype = "float32"  # compute dtype; params are always fp32
    m.attention_impl = ""  # '' (XLA default), 'xla' or 'cudnn'
    m.remat = "none"  # per block: 'none' | 'full' | 'dots_saveable' (less memory)
    m.scan_layers = False  # nn.scan over blocks: compile time flat in depth
    return m


def vit(**overrides: object) -> dict:
    """``config.model.image``: a small ViT for 64 px synthetic images."""
    image = dict(
        image_size=64,
        patch_size=16,
        **SMALL,
        depth=3,
        pool="cls",
        posemb="sincos2d",
        act="gelu",
        pre_norm_embeddings=True,
        dropout_rate=0.0,
    )
    return dict(image, **overrides)


def clip_text(**overrides: object) -> dict:
    """``config.model.text``: a small causal CLIP text tower for the synthetic tokenizer."""
    text = dict(
        kind="clip",
        vocab_size=VOCAB,
        context_length=CONTEXT,
        eos_id=3,
        **SMALL,
        depth=2,
        act="quick_gelu",
        dropout_rate=0.0,
    )
    return dict(text, **overrides)


def two_tower() -> ml_collections.ConfigDict:
    """A small CLIP from scratch on the synthetic shapes (``configs/clip_synthetic.py``)."""
    m = compute()
    m.embed_dim = 128  # shared embedding size after the projections
    m.logit_scale_init = math.log(10.0)
    m.logit_bias_init = None  # SigLIP's bias (siglip: -10)
    # 96 px in 16 px patches: each cell of the shapes' 3x3 position grid is exactly 2x2
    # patches, so a shape always falls on the same patch corner. With patches that cut the
    # cells anywhere (64 px / 16) the model learns colour, size and position but not shape
    # (zero-shot shape 0.27); mean pooling over the patches, no class token.
    m.image = vit(image_size=96, patch_size=16, **MEDIUM, depth=2, pool="mean")
    m.text = clip_text()
    # zeroshot (mmjax/tasks/zeroshot.py): classify held-out images from class prompts: the
    # synthetic shapes, or class_names + templates ('a photo of a {}.') for labelled real data
    task = dict(
        name="contrastive",
        loss="softmax",  # 'softmax' (CLIP InfoNCE) | 'sigmoid' (SigLIP)
        zeroshot=dict(synthetic_attribute="shape", class_names=[], templates=[]),
    )
    return run(task, m)


def siglip(c: ml_collections.ConfigDict) -> None:
    """Variant: the sigmoid loss with big_vision's bias init."""
    c.task.loss = "sigmoid"
    c.model.logit_bias_init = -10.0


def tiny_run(c: ml_collections.ConfigDict) -> None:
    """The seconds-long data, schedule and intervals of every ``*_tiny`` variant."""
    c.data.update(image_size=32, train_records=2_000, eval_records=32)
    c.optim.update(warmup_steps=2, lr=5e-3)
    c.train.update(
        steps=20, batch_size=16, eval_batch_size=16, log_every=5, eval_every=10, checkpoint_every=10
    )


def two_tower_tiny(c: ml_collections.ConfigDict) -> None:
    """Variant ``tiny`` of ``two_tower``: towers of width 32 and one layer; 20 steps."""
    c.model.embed_dim = 32
    # A class token, as before the default moved to mean pooling: a one-layer width-32
    # tower that averages its 16 patches does not move off the chance loss in 20 steps.
    c.model.image.update(TINY_IMAGE, pool="cls")
    c.model.text.update(TINY)
    tiny_run(c)


def fused() -> ml_collections.ConfigDict:
    """VQA on the synthetic shapes: the question cross-attends to the image patches, an MLP
    head scores the answers (``configs/vqa_cross_attention.py``)."""
    m = compute()
    m.image = vit(image_size=48, patch_size=8, **MEDIUM, depth=2)
    m.image.pool = "mean"  # no class token: the fusion reads every patch
    # A bidirectional (non-causal) pre-LN text encoder: the question reads both ways.
    m.text = clip_text(**MEDIUM, depth=1, act="gelu", causal=False)
    m.fusion = dict(kind="cross_attention", **MEDIUM, depth=2)
    task = dict(
        name="classify",
        target="vqa",  # 'vqa' | 'match' | 'label'
        vqa_loss="bce",  # 'bce' (sigmoid BCE vs the soft scores) | 'softmax'
        answers="",  # '' = the synthetic answers; else a list or a file, one per line
        head_hidden=256,  # 0 = linear head
        negative_rate=0.5,  # 'match': fraction of captions replaced by a negative
        negatives="one_attribute",  # 'match': 'one_attribute' (hard) | 'random' combination
        label_field="shape",  # 'label': synthetic attribute, or a record's int field
        num_classes=0,  # 'label': 0 = the synthetic attribute's count
    )
    c = run(task, m)
    c.data.eval_records = 576  # every attribute combination once
    c.optim.weight_decay = 0.01
    c.train.update(steps=1000, batch_size=64, eval_batch_size=192, eval_every=250)
    c.train.checkpoint_every = 500
    return c


def match(c: ml_collections.ConfigDict) -> None:
    """Variant ``match`` of ``fused``: image-caption matching instead of VQA."""
    # Random negatives: from scratch, one-attribute-off negatives leave a pooled-vector
    # fusion at chance in this budget (measured: eval/acc 0.49-0.51 over 1000 steps).
    c.task.update(target="match", negatives="random")
    c.train.update(steps=500, eval_every=250)


def shrink(section: ml_collections.ConfigDict | None) -> None:
    """Sets the keys of ``TINY`` that ``section`` (a tower or fusion, or None) has."""
    if section is not None:
        section.update({k: v for k, v in TINY.items() if k in section})


def fused_tiny(c: ml_collections.ConfigDict) -> None:
    """Variant ``tiny`` of ``fused``: the ViT, text tower, fusion and head shrunk; 20 steps."""
    c.task.head_hidden = 32
    if c.model.get("image") is not None:
        c.model.image.update(TINY_IMAGE)
    shrink(c.model.get("text"))
    shrink(c.model.get("fusion"))
    tiny_run(c)


def caption() -> ml_collections.ConfigDict:
    """A small CoCa from scratch on the synthetic shapes (``configs/caption_coca.py``)."""
    m = compute()
    m.scan_layers = False  # nn.scan over blocks (the decode cache is scanned too)
    m.embed_dim = 128  # contrastive projection size
    m.logit_scale_init = math.log(10.0)
    m.caption_queries = 0  # 0: decoder attends to all ViT tokens; N: attentional pooler
    m.image = vit()
    m.text = dict(
        kind="coca",
        vocab_size=VOCAB,
        context_length=CONTEXT,
        bos_id=2,
        eos_id=3,
        pad_id=0,
        **SMALL,
        unimodal_depth=1,  # text-only causal layers (the contrastive text embedding)
        depth=2,  # multimodal layers: causal self-attention + cross-attention to the image
        act="gelu",
        tie_embeddings=True,  # logits = hidden @ token_embed.T
        dropout_rate=0.0,
    )
    task = dict(
        name="caption",
        caption_weight=2.0,  # CoCa's weights: 2 x captioning + 1 x contrastive
        contrastive_weight=1.0,  # 0 = captioning only (no projections, no retrieval eval)
        beam_size=4,
        length_penalty=0.0,  # GNMT alpha for choosing among final beams (0 = raw log-prob)
        max_decode_len=CONTEXT,  # generated length incl. BOS (<= model.text.context_length)
        print_examples=2,  # greedy captions printed at each eval
    )
    c = run(task, m)
    c.train.steps = 800  # 4 min 42 s on an idle 2-core Xeon (1000 steps: 5 min 51 s)
    c.train.eval_every = 0  # only at the end: generation is a sizeable share of a run
    c.train.checkpoint_every = 400
    return c


def caption_tiny(c: ml_collections.ConfigDict) -> None:
    """Variant ``tiny`` of ``caption``."""
    c.task.update(beam_size=2, print_examples=0)
    c.model.embed_dim = 32
    c.model.image.update(TINY_IMAGE)
    c.model.text.update(TINY, unimodal_depth=1)
    tiny_run(c)


def vivit(**overrides: object) -> dict:
    """A ViViT tower for the 8-frame 32 px moving shapes (``mmjax/data/moving_shapes.py``)."""
    video = dict(
        kind="video",
        num_frames=8,
        image_size=32,
        patch_size=8,
        tubelet=2,
        **MEDIUM,
        depth=2,
        attention="joint",  # 'joint' | 'factorised' (spatial encoder, then temporal)
        temporal_depth=1,
        pool="mean",
        posemb="sincos",  # 'sincos' (fixed) | 'learn' (spatial + temporal tables)
        pre_norm_embeddings=True,
    )
    return dict(video, **overrides)


def moving_shapes(c: ml_collections.ConfigDict) -> None:
    """``c.data`` reads the generated moving shapes: 8 frames of 32 px, 256 eval clips."""
    c.data.source = "generated:moving_shapes"
    c.data.tokenizer = "generated"
    c.data.image_size = 32
    video_data(c, num_frames=8)
    c.data.eval_records = 256


def video_tiny(c: ml_collections.ConfigDict, video: ml_collections.ConfigDict) -> None:
    """The ``tiny`` of a config with a ViViT tower ``video``: 4 frames of 16 px, 6 steps."""
    video.update(TINY, num_frames=4, image_size=16)
    c.model.text.update(TINY)
    c.data.update(image_size=16, num_frames=4, train_records=2_000, eval_records=32)
    c.optim.update(lr=5e-3, warmup_steps=2)
    c.train.update(steps=6, batch_size=8, eval_batch_size=16, log_every=3, eval_every=6)
    c.train.checkpoint_every = 6


# Keys some shipped configs lacked before they were built on these bases; the code read each
# missing one as the value the base now gives it. A checkpoint saved without them resumes
# without a config change (mmjax/train/resume_check.py) when they hold that value.
ADDED_KEYS = (
    *(f"data.{k}" for k in ("image_processor", "max_image_pixels", "allow_outside_root")),
    *(f"data.{k}" for k in ("eval_source", "train_split", "eval_split", "tfds_data_dir")),
    *(f"data.{k}" for k in ("tfds_download", "caption_template", "shuffle_buffer", "hflip")),
    *(f"data.{k}" for k in ("train_transform", "eval_transform", "crop_scale", "crop_ratio")),
    *(f"data.fields.{k}" for k in ("image", "caption", "label")),
    "data.num_workers",
    "data.blur_prob",
    "data.blur_sigma",
    "evals",
    *(f"train.{k}" for k in ("writers", "wandb_project", "dump_predictions")),
    *(f"task.{k}" for k in ("vqa_loss", "answers", "negative_rate", "negatives")),
)


def added_key_defaults() -> dict[str, Any]:
    """``{key: base value}`` of ``ADDED_KEYS``, as a config's JSON holds them."""
    flat: dict[str, Any] = {}

    def walk(tree: Any, prefix: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[prefix + key] = value

    for config in (fused(), two_tower()):  # the data / train keys: two_tower's
        walk(json.loads(json.dumps(config.to_dict(), default=str)), "")
    return {key: flat[key] for key in ADDED_KEYS}
