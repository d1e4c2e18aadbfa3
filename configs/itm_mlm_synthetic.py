"""ALBEF-style pretraining on the built-in synthetic shapes: image-text contrastive (ITC)
+ image-text matching with hard negatives (ITM) + masked language modelling (MLM)
through a cross-attention fusion encoder (text queries attend to image patches).

    mmjax train --config configs/itm_mlm_synthetic.py --workdir runs/itm_mlm
    mmjax train --config configs/itm_mlm_synthetic.py:tiny   # seconds; for tests

A ViT image tower, a BERT-style (bidirectional) text tower (masked LM needs to read both
ways; a causal CLIP text tower cannot), and a pre-LN fusion encoder as wide as the text
tower (the MLM decoder is tied to the text word embeddings). Sized to train in a few
minutes on a 2-core CPU. Eval on the 256 held-out pairs (distinct captions): ITC
recall@1/5/10 both ways (chance recall@1 = 1/256), ``itm_acc`` (each pair vs. the image
with the next record's caption; chance 0.5), ``mlm_acc`` on captions masked with a fixed
seed, next to ``mlm_majority_acc`` (always answering the most frequent masked word).
"""

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants


def tiny(c: ml_collections.ConfigDict) -> None:
    """The two-tower tiny, and a fusion of width 32."""
    base.two_tower_tiny(c)
    c.model.fusion.update(base.TINY)


VARIANTS = {"tiny": tiny}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.two_tower()
    c.task = dict(
        name="itm_mlm",
        weights=dict(itc=1.0, itm=1.0, mlm=1.0),  # total = sum of weight * loss
        mlm_ratio=0.15,  # Bernoulli selection of real, non-special tokens; then 80/10/10
        mask_token="[MASK]",  # must be in the tokenizer's vocabulary
        special_tokens=("[PAD]", "[UNK]", "[BOS]", "[EOS]"),  # never masked
        eval_mask_seed=0,  # fixed masks for eval/mlm_acc
    )
    c.model.image.norm_tokens = True  # the fusion attends to normalized patch tokens
    c.model.text = dict(
        kind="bert",
        vocab_size=base.VOCAB,
        context_length=base.CONTEXT,
        width=128,
        depth=2,
        num_heads=4,
        mlp_dim=512,
        act="gelu",
        pool="cls",
        dropout_rate=0.0,
    )
    c.model.fusion = dict(kind="cross_attention", width=128, depth=2, num_heads=4, mlp_dim=512)
    c.train.update(steps=800, batch_size=64, eval_batch_size=128, eval_every=400)
    c.train.checkpoint_every = 400
    return Variants(arg, __file__, VARIANTS).apply(c)
