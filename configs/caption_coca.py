"""Captioning: a small CoCa (contrastive captioner) trained from scratch on the synthetic shapes.

    mmjax train --config configs/caption_coca.py --workdir runs/coca
    mmjax train --config configs/caption_coca.py:captioning_only   # contrastive_weight=0
    mmjax train --config configs/caption_coca.py:tiny              # seconds; for tests

A ViT encodes the image; a causal text decoder (1 unimodal + 2 multimodal layers that
cross-attend to the ViT tokens) is trained with teacher forcing, plus CLIP's contrastive
loss between the ViT class token and the unimodal text output at EOS. Eval generates
captions for held-out images (greedy and beam search, both under jit with a KV cache)
and scores them against every caption the grammar gives the image: BLEU-4, CIDEr-D,
and retrieval recall from the contrastive embeddings. Sized for a few minutes on a
2-core CPU.
"""

import math

import ml_collections

from mmjax.parallel.sharding import DEFAULT_RULES

CONTEXT = 12  # the longest synthetic caption is 10 words + BOS/EOS
VOCAB = 40  # the shipped synthetic tokenizer has 39 tokens


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = dict(
        name="caption",
        caption_weight=2.0,  # CoCa's weights: 2 x captioning + 1 x contrastive
        contrastive_weight=1.0,  # 0 = captioning only (no projections, no retrieval eval)
        beam_size=4,
        length_penalty=0.0,  # GNMT alpha for choosing among final beams (0 = raw log-prob)
        max_decode_len=CONTEXT,  # generated length incl. BOS (<= model.text.context_length)
        print_examples=2,  # greedy captions printed at each eval
    )

    c.model = ml_collections.ConfigDict()
    c.model.dtype = "float32"  # compute dtype; params are always fp32
    c.model.attention_impl = ""  # '' (XLA default), 'xla' or 'cudnn'
    c.model.remat = "none"  # per block: 'none' | 'full' | 'dots_saveable'
    c.model.scan_layers = False  # nn.scan over blocks (the decode cache is scanned too)
    c.model.embed_dim = 128  # contrastive projection size
    c.model.logit_scale_init = math.log(10.0)
    c.model.caption_queries = 0  # 0: decoder attends to all ViT tokens; N: attentional pooler
    c.model.image = dict(
        image_size=64,
        patch_size=16,
        width=128,
        depth=3,
        num_heads=4,
        mlp_dim=512,
        pool="cls",
        posemb="sincos2d",
        act="gelu",
        pre_norm_embeddings=True,
        dropout_rate=0.0,
    )
    c.model.text = dict(
        kind="coca",
        vocab_size=VOCAB,
        context_length=CONTEXT,
        bos_id=2,
        eos_id=3,
        pad_id=0,
        width=128,
        unimodal_depth=1,  # text-only causal layers (the contrastive text embedding)
        depth=2,  # multimodal layers: causal self-attention + cross-attention to the image
        num_heads=4,
        mlp_dim=512,
        act="gelu",
        tie_embeddings=True,  # logits = hidden @ token_embed.T
        dropout_rate=0.0,
    )

    c.data = ml_collections.ConfigDict()
    c.data.source = "synthetic"
    c.data.image_size = c.model.image.image_size
    c.data.train_records = 100_000
    c.data.eval_records = 256
    c.data.synthetic_seed = 0
    c.data.tokenizer = "synthetic"
    c.data.normalization = "clip"
    c.data.num_threads = 2
    c.data.prefetch = 4
    c.data.bad_records = "skip"
    c.data.max_bad_fraction = 0.1
    c.data.synthetic_corrupt_fraction = 0.0

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adamw"
    c.optim.lr = 2e-3
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 50
    c.optim.end_lr_fraction = 0.0
    c.optim.b1 = 0.9
    c.optim.b2 = 0.98
    c.optim.eps = 1e-6
    c.optim.weight_decay = 0.05
    c.optim.grad_clip_norm = 1.0
    c.optim.cooldown_steps = 0
    c.optim.timescale = 0
    c.optim.rules = [(".*", {})]
    c.optim.llrd = 1.0
    c.optim.accum_steps = 1
    c.optim.ema_decay = 0.0

    c.init_from = ""
    c.init_from_dont_load = []

    c.mesh = dict(data=-1, fsdp=1, tensor=1, rules=DEFAULT_RULES)

    c.train = ml_collections.ConfigDict()
    c.train.steps = 800  # 4 min 42 s on an idle 2-core Xeon (1000 steps: 5 min 51 s)
    c.train.batch_size = 128
    c.train.eval_batch_size = 128
    c.train.seed = 0
    c.train.log_every = 50
    c.train.eval_every = 0  # only at the end: generation is a sizeable share of a run
    c.train.checkpoint_every = 400
    c.train.max_checkpoints = 2
    c.train.keep_period = 0
    c.train.best_metric = ""  # e.g. 'eval/bleu4'
    c.train.best_mode = "max"
    c.train.keep_best = 1
    c.train.nonfinite = "stop"
    c.train.preemption_sync_every = 10
    c.train.debug_nan_step = 0
    c.train.allow_config_change = False

    variants = set((arg or "").split(",")) - {""}
    known = {"captioning_only", "tiny"}
    if variants - known:
        raise ValueError(
            f"caption_coca: unknown variants {sorted(variants - known)}; known: {sorted(known)}"
        )
    if "captioning_only" in variants:
        c.task.contrastive_weight = 0.0
    if "tiny" in variants:  # seconds-long runs for tests and smoke checks
        c.task.update(beam_size=2, print_examples=0)
        c.model.embed_dim = 32
        c.model.image.update(
            image_size=32, patch_size=8, width=32, depth=1, num_heads=2, mlp_dim=64
        )
        c.model.text.update(width=32, unimodal_depth=1, depth=1, num_heads=2, mlp_dim=64)
        c.data.image_size = 32
        c.data.train_records = 2_000
        c.data.eval_records = 32
        c.optim.warmup_steps = 2
        c.optim.lr = 5e-3
        c.train.update(
            steps=20,
            batch_size=16,
            eval_batch_size=16,
            log_every=5,
            eval_every=10,
            checkpoint_every=10,
        )
    return c
