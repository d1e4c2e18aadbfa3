"""Fine-tune a Hugging Face CLIP (or SigLIP) directory on the built-in synthetic data.

    mmjax train --config configs/clip_hf_finetune.py:/path/to/hf_clip_dir --workdir runs/ft

``arg`` is the HF model directory (``config.json`` + ``model.safetensors`` or
``flax_model.msgpack``). The model section is derived from its ``config.json``
(``mmjax.hf.model_config``) and every param starts from its weights
(``init_from = 'hf:<dir>'``). When the directory has them, its ``tokenizer.json``
and ``preprocessor_config.json`` tokenize the captions and resize / crop / normalize
the images exactly as transformers would; without them (tiny random test
checkpoints) the shipped synthetic tokenizer is used (its end-of-text id 3 becomes
the pooling token, so ``vocab_size`` must be >= 39 and ``context_length`` >= 12) and
images are drawn at the model's size with CLIP normalization.
"""

from pathlib import Path

import ml_collections

from mmjax import config_base as base
from mmjax.config import Variants

SYNTHETIC_EOS, SYNTHETIC_VOCAB, SYNTHETIC_CONTEXT = 3, 39, 12


VARIANTS: dict = {}  # the argument is the directory alone


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    from mmjax import hf

    variants = Variants(arg, __file__, VARIANTS, first="DIR")  # DIR: the HF model directory
    directory = Path(variants.first).expanduser().absolute()
    hf_config = hf.read_config(directory)
    c = base.two_tower()
    c.model = hf.model_config(hf_config)
    c.task.loss = "sigmoid" if c.model.logit_bias_init is not None else "softmax"
    c.init_from = f"hf:{directory}"
    c.init_from_dont_load = []

    image_size = c.model.image.image_size
    if (directory / "preprocessor_config.json").is_file():
        c.data.image_processor = str(directory)  # host-side resize / crop to image_size
        c.data.normalization = str(directory)
        c.data.image_size = max(64, image_size)  # synthetic images drawn at this size
    else:
        c.data.image_size = image_size
    if (directory / "tokenizer.json").is_file():
        c.data.tokenizer = str(directory)
    else:
        text = c.model.text
        if text.vocab_size < SYNTHETIC_VOCAB or text.context_length < SYNTHETIC_CONTEXT:
            raise ValueError(
                f"{directory} has no tokenizer.json and its text tower (vocab {text.vocab_size}, "
                f"context {text.context_length}) cannot take the synthetic tokenizer "
                f"(needs vocab >= {SYNTHETIC_VOCAB}, context >= {SYNTHETIC_CONTEXT})"
            )
        c.data.tokenizer = "synthetic"
        text.eos_id = SYNTHETIC_EOS

    # Fine-tuning: a lower peak lr and a short schedule; synthetic data is small and easy.
    c.optim.lr = 1e-4
    c.optim.warmup_steps = 20
    c.train.steps = 300
    c.train.batch_size = 64
    c.train.eval_batch_size = 64
    c.train.eval_every = 100
    c.train.checkpoint_every = 100
    return c
