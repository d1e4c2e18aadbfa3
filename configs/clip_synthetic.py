"""Default run: a small CLIP trained from scratch on the built-in synthetic shapes.

    mmjax train --config configs/clip_synthetic.py --workdir runs/clip
    mmjax train --config configs/clip_synthetic.py:siglip   # sigmoid loss variant
    mmjax train --config configs/clip_synthetic.py:tiny     # seconds; for tests

Sized to finish in a few minutes on a 2-core CPU and to reach high held-out
retrieval on 256 eval pairs with distinct captions.
"""

import math

import ml_collections

from mmjax.parallel.sharding import DEFAULT_RULES

CONTEXT = 12  # the longest synthetic caption is 10 words + BOS/EOS
VOCAB = 40  # the shipped synthetic tokenizer has 39 tokens


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # zeroshot (mmjax/tasks/zeroshot.py): classify held-out images from class prompts: the
    # synthetic shapes, or class_names + templates ('a photo of a {}.') for labelled real data
    c.task = dict(
        name="contrastive",
        loss="softmax",
        zeroshot=dict(synthetic_attribute="shape", class_names=[], templates=[]),
    )

    c.model = ml_collections.ConfigDict()
    c.model.dtype = "float32"  # compute dtype; params are always fp32
    c.model.attention_impl = ""  # '' (XLA default), 'xla' or 'cudnn'
    c.model.remat = "none"  # per block: 'none' | 'full' | 'dots_saveable' (less memory)
    c.model.scan_layers = False  # nn.scan over blocks: compile time flat in depth
    c.model.embed_dim = 128
    c.model.logit_scale_init = math.log(10.0)
    c.model.logit_bias_init = None
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
        kind="clip",
        vocab_size=VOCAB,
        context_length=CONTEXT,
        eos_id=3,
        width=128,
        depth=2,
        num_heads=4,
        mlp_dim=512,
        act="quick_gelu",
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
    c.data.bad_records = "skip"  # unreadable image / empty caption: 'skip' (counted) | 'fail'
    c.data.max_bad_fraction = 0.1  # stop when more of the records read so far were bad
    c.data.max_image_pixels = 89_478_485  # a larger image is a bad record (decompression bomb)
    c.data.allow_outside_root = False  # files: image paths may leave the captions file's dir
    c.data.synthetic_corrupt_fraction = 0.0  # fault injection: this fraction of records is bad
    # Real data (mmjax/data/sources): source 'synthetic' | 'tfds:NAME[:SPLIT]' | 'files:X.jsonl'
    # | 'folder:ROOT' | 'wds:shards-{000..127}.tar' | 'arrayrecord:DIR'
    c.data.eval_source = ""  # '' = the synthetic / TFDS source's own eval split
    c.data.train_split = "train"  # TFDS split names
    c.data.eval_split = ""  # '' = the data set's validation / val / test split
    c.data.tfds_data_dir = ""  # '' = TFDS's default (~/tensorflow_datasets)
    c.data.tfds_download = False  # let tfds download + prepare a missing data set
    c.data.fields = dict(image="", caption="", label="")  # TFDS feature paths; '' = defaults
    c.data.caption_template = "a photo of a {}."  # class name -> caption (folder, TFDS labels)
    c.data.shuffle_buffer = 1000  # wds: samples shuffled together
    c.data.train_transform = "none"  # 'none' | 'resize_center_crop' | 'random_resized_crop'
    c.data.eval_transform = "none"  # 'none' | 'resize_center_crop'
    c.data.crop_scale = (0.08, 1.0)
    c.data.crop_ratio = (3 / 4, 4 / 3)
    c.data.hflip = False
    c.data.num_workers = 0  # grain worker processes (0 = threads in this process)

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
    c.optim.cooldown_steps = 0  # 'constant' / 'rsqrt': final linear decay
    c.optim.timescale = 0  # 'rsqrt': lr * sqrt(timescale / (timescale + t)); 0 = warmup_steps
    # (regex, rule) over '/'-joined param paths, first match wins; None = frozen, else
    # dict(lr_mult=, wd_mult=, decay=None|True|False, schedule=dict(...)).
    # See mmjax/optim/param_rules.py
    c.optim.rules = [(".*", {})]
    c.optim.llrd = 1.0  # layer-wise lr decay per tower (1 = off)
    c.optim.accum_steps = 1  # micro-batches per step (same update as one big batch)
    c.optim.ema_decay = 0.0  # EMA of trainable params, used for eval (0 = off)

    # Several evaluators per run (mmjax/evaluation/evaluators.py): [dict(name=, data=dict(...),
    # task=dict(...), metrics=[...])], each writing eval/<name>/<metric>; [] = the task's eval
    # only.
    c.evals = []

    c.init_from = ""  # '' | another run's workdir / checkpoints dir | 'hf:<path or id>'
    c.init_from_dont_load = []  # regexes of param paths to keep freshly initialized

    c.mesh = dict(data=-1, fsdp=1, tensor=1, rules=DEFAULT_RULES)

    c.train = ml_collections.ConfigDict()
    c.train.steps = 1000
    c.train.batch_size = 128
    c.train.eval_batch_size = 128
    c.train.seed = 0
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.checkpoint_every = 100
    c.train.max_checkpoints = 2
    c.train.keep_period = 0  # also keep every k-th step's checkpoint forever (0 = off)
    c.train.best_metric = ""  # e.g. 'eval/i2t_r1': keep the best params in WORKDIR/best/
    c.train.best_mode = "max"  # 'max' | 'min'
    c.train.keep_best = 1  # how many best checkpoints to keep
    c.train.writers = ["jsonl", "tensorboard"]  # + 'wandb' (pip install 'mmjax[wandb]')
    c.train.wandb_project = ""  # '' = $WANDB_PROJECT or W&B's default
    c.train.dump_predictions = True  # eval predictions to WORKDIR/predictions/<step>/<eval>.jsonl
    c.train.nonfinite = "stop"  # non-finite loss/grads: 'stop' (at that step) | 'skip_step'
    c.train.preemption_sync_every = 10  # multi-process: steps between stop-flag exchanges
    c.train.debug_nan_step = 0  # fault injection: make step k's loss and grads NaN (0 = off)
    c.train.allow_config_change = False  # resume a checkpoint saved with another lr/batch/data

    variants = set((arg or "").split(",")) - {""}
    unknown = variants - {"siglip", "tiny"}
    if unknown:
        raise ValueError(f"clip_synthetic: unknown variants {sorted(unknown)}; known: siglip, tiny")
    if "siglip" in variants:
        c.task.loss = "sigmoid"
        c.model.logit_bias_init = -10.0
    if "tiny" in variants:  # seconds-long runs for tests and smoke checks
        c.model.embed_dim = 32
        c.model.image.update(
            image_size=32, patch_size=8, width=32, depth=1, num_heads=2, mlp_dim=64
        )
        c.model.text.update(width=32, depth=1, num_heads=2, mlp_dim=64)
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
