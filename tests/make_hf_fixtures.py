"""Writes the tiny Hugging Face checkpoints under ``tests/fixtures/hf/`` (run from the repo root).

    python tests/make_hf_fixtures.py

Each directory is what ``save_pretrained`` writes for a randomly initialized tiny model:
``<arch>-pt/`` by transformers' PyTorch classes (``model.safetensors``) and ``<arch>-flax/``
by its Flax classes (``flax_model.msgpack``); ``clip-pt/`` also has the
``preprocessor_config.json`` of a ``CLIPImageProcessor`` for 24 px images. Needs
``torch`` and ``transformers`` 4.57 (the last release with Flax classes); the tests
compare mmjax against the same classes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

OUT = Path(__file__).resolve().parent / "fixtures" / "hf"
TEXT = dict(
    vocab_size=64,
    hidden_size=16,
    intermediate_size=24,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=16,
)
VISION = dict(
    image_size=24,
    patch_size=8,
    hidden_size=16,
    intermediate_size=24,
    num_hidden_layers=2,
    num_attention_heads=4,
)


def configs() -> dict:
    import transformers as tf

    clip_text = dict(TEXT, bos_token_id=62, eos_token_id=63, pad_token_id=0)
    return {
        "clip": tf.CLIPConfig(
            text_config=clip_text,
            vision_config=VISION,
            projection_dim=12,
            logit_scale_init_value=2.0,
        ),
        "siglip": tf.SiglipConfig(text_config=dict(TEXT, projection_size=16), vision_config=VISION),
        "vit": tf.ViTConfig(**VISION, qkv_bias=True, hidden_act="gelu"),
        "vit-cls": tf.ViTConfig(**VISION, num_labels=3, qkv_bias=False),
        "bert": tf.BertConfig(**dict(TEXT, max_position_embeddings=32), type_vocab_size=2),
        "bert-mlm": tf.BertConfig(**dict(TEXT, max_position_embeddings=32), hidden_act="gelu"),
        "resnet": tf.ResNetConfig(
            embedding_size=8, hidden_sizes=[16, 24], depths=[1, 2], layer_type="bottleneck"
        ),
        "resnet-basic": tf.ResNetConfig(
            embedding_size=8,
            hidden_sizes=[8, 16],
            depths=[2, 1],
            layer_type="basic",
            downsample_in_first_stage=True,
        ),
    }


PT_CLASSES = {
    "clip": "CLIPModel",
    "siglip": "SiglipModel",
    "vit": "ViTModel",
    "vit-cls": "ViTForImageClassification",
    "bert": "BertModel",
    "bert-mlm": "BertForMaskedLM",
    "resnet": "ResNetModel",
    "resnet-basic": "ResNetModel",
}
FLAX_CLASSES = {
    "clip": "FlaxCLIPModel",
    "vit-cls": "FlaxViTForImageClassification",
    "bert-mlm": "FlaxBertForMaskedLM",
}


def main() -> None:
    import torch
    import transformers as tf

    if OUT.exists():
        shutil.rmtree(OUT)
    for name, config in configs().items():
        torch.manual_seed(0)
        model = getattr(tf, PT_CLASSES[name])(config).eval()
        with torch.no_grad():  # BatchNorm stats are 0/1 at init; make them count
            for key, buf in model.named_buffers():
                if key.endswith(("running_mean", "running_var")):
                    buf.copy_(torch.rand_like(buf) + (0.5 if "var" in key else -0.5))
        model.save_pretrained(OUT / f"{name}-pt")
        if name == "clip":  # so configs/clip_hf_finetune.py resizes / normalizes like HF
            tf.CLIPImageProcessor(size={"shortest_edge": 24}, crop_size=24).save_pretrained(
                OUT / f"{name}-pt"
            )
        if name in FLAX_CLASSES:
            flax_model = getattr(tf, FLAX_CLASSES[name])(config, seed=0)
            flax_model.save_pretrained(OUT / f"{name}-flax")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
