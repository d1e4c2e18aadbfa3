"""``mmjax export --stablehlo DIR``: serving artifacts that run without mmjax.

Writes ``jax.export`` serialisations (the bytes of ``Exported.serialize()``) of the two
towers with the params baked in and a symbolic batch size:

    encode_image.jax_export   float32 [batch, S, S, 3] normalized pixels -> float32 [batch, dim]
    encode_text.jax_export    int32 ids [batch, L], bool padding mask [batch, L] -> [batch, dim]

(embeddings L2-normalized, as ``Pipeline.embed_images`` / ``embed_texts`` return them), the
tokenizer (``tokenizer.json``, padding and truncation to ``L`` built in) and
``manifest.json`` with the input shapes, dtypes and preprocessing. A serving process runs

    exp = jax.export.deserialize(open("encode_image.jax_export", "rb").read())
    emb = exp.call(pixels)                  # any batch size
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from mmjax.models.towers import TwoTower, l2_normalize

IMAGE_FILE, TEXT_FILE = "encode_image.jax_export", "encode_text.jax_export"
MANIFEST = "manifest.json"


def _exported(fn: Any, args: Sequence[jax.ShapeDtypeStruct], platforms: Sequence[str]) -> bytes:
    return export.export(jax.jit(fn), platforms=tuple(platforms))(*args).serialize()


def export_pipeline(
    pipe: Any, out: str | Path, platforms: Sequence[str] | None = None
) -> dict[str, Any]:
    """Writes the artifacts of ``pipe`` (a two-tower ``Pipeline``) to ``out``; returns the
    manifest. ``platforms``: lowering targets (default: this machine's backend), e.g.
    ``('cpu', 'cuda', 'tpu')`` for one file that runs on each."""
    if pipe.media is not None:  # its image slot takes no pixel_values
        raise NotImplementedError(
            f"export --stablehlo: the image slot of {pipe.source} holds a tower of kind "
            f"{pipe.media.kind!r} (config.model.image.kind); the StableHLO export writes "
            "image (pixel_values) and text encoders only"
        )
    platforms = list(platforms or [jax.default_backend()])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, params = pipe.model, pipe.params
    size, length = pipe.image_size, pipe.context_length
    (batch,) = export.symbolic_shape("batch")

    def encode_image(pixels: jax.Array) -> jax.Array:
        return l2_normalize(model.apply({"params": params}, pixels, method=TwoTower.encode_image))

    def encode_text(ids: jax.Array, mask: jax.Array) -> jax.Array:
        return l2_normalize(model.apply({"params": params}, ids, mask, method=TwoTower.encode_text))

    pixels = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    ids = jax.ShapeDtypeStruct((batch, length), jnp.int32)
    mask = jax.ShapeDtypeStruct((batch, length), jnp.bool_)
    (out / IMAGE_FILE).write_bytes(_exported(encode_image, [pixels], platforms))
    (out / TEXT_FILE).write_bytes(_exported(encode_text, [ids, mask], platforms))
    pipe.tokenizer.tokenizer.save(str(out / "tokenizer.json"))  # pads / truncates to L
    prep = pipe.preprocessing
    dim = int(model.embed_dim if model.image_projection else model.image.width)
    manifest = {
        "format": "jax.export (Exported.serialize)",
        "jax_version": jax.__version__,
        "platforms": platforms,
        "kind": pipe.kind,
        "functions": {
            "encode_image": {
                "file": IMAGE_FILE,
                "inputs": [_spec("pixel_values", ["batch", size, size, 3], "float32")],
                "outputs": [_spec("image_embeds", ["batch", dim], "float32")],
            },
            "encode_text": {
                "file": TEXT_FILE,
                "inputs": [
                    _spec("input_ids", ["batch", length], "int32"),
                    _spec("padding_mask", ["batch", length], "bool"),
                ],
                "outputs": [_spec("text_embeds", ["batch", dim], "float32")],
            },
        },
        "outputs_l2_normalized": True,
        "logit_scale": float(np.exp(np.asarray(params["logit_scale"]))),
        "logit_bias": float(np.asarray(params["logit_bias"])) if "logit_bias" in params else 0.0,
        "preprocessing": {
            "image_size": size,
            "resize": "shorter side to image_size (PIL bicubic), then the central crop",
            "rescale_factor": prep.get("rescale_factor", 1 / 255),
            "image_mean": prep.get("image_mean"),
            "image_std": prep.get("image_std"),
            "normalize": "(uint8 * rescale_factor - mean) / std, channels last",
            "tokenizer": "tokenizer.json",
            "context_length": length,
            "pad_id": int(pipe.tokenizer.pad_id),
            "padding_mask": "True at real tokens (the tokenizer's attention_mask)",
        },
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _spec(name: str, shape: list, dtype: str) -> dict[str, Any]:
    return {"name": name, "shape": shape, "dtype": dtype}
