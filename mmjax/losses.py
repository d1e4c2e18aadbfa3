"""Contrastive losses on the global batch.

Both take L2-normalized embeddings ``[batch, dim]``. Under ``jax.jit`` with a
data-parallel batch sharding the arrays are global, so the ``[batch, batch]``
similarity matrix covers every pair across devices (XLA inserts the
all-gather): each example sees the whole global batch as negatives, as in
CLIP's and SigLIP's multi-device training. All math is fp32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def softmax_contrastive_loss(
    image: jax.Array,
    text: jax.Array,
    logit_scale: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """CLIP's symmetric InfoNCE.

    ``logit_scale`` is the log temperature, used as it is: CLIP's cap at log 100 is
    applied to the parameter after each update (``mmjax.train.temperature``), not here, so
    the gradient w.r.t. ``logit_scale`` never vanishes. Returns ``(loss, metrics)``.
    """
    image = image.astype(jnp.float32)
    text = text.astype(jnp.float32)
    scale = jnp.exp(logit_scale)
    logits = scale * image @ text.T  # [batch_img, batch_txt]
    labels = jnp.arange(logits.shape[0])
    i2t = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    t2i = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels)
    loss = 0.5 * (jnp.mean(i2t) + jnp.mean(t2i))
    metrics = {
        "temperature": 1.0 / scale,
        "train_i2t_acc": jnp.mean(jnp.argmax(logits, axis=1) == labels),
        "train_t2i_acc": jnp.mean(jnp.argmax(logits, axis=0) == labels),
    }
    return loss, metrics


def sigmoid_contrastive_loss(
    image: jax.Array, text: jax.Array, logit_scale: jax.Array, logit_bias: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """SigLIP's pairwise sigmoid loss: ``-sum log sigmoid(z_ij * (t x_i.y_j + b)) / batch``.

    ``z_ij`` is +1 on the diagonal (matching pairs) and -1 elsewhere.
    """
    image = image.astype(jnp.float32)
    text = text.astype(jnp.float32)
    logits = jnp.exp(logit_scale) * image @ text.T + logit_bias
    n = logits.shape[0]
    signs = 2.0 * jnp.eye(n, dtype=jnp.float32) - 1.0
    loss = -jnp.sum(jax.nn.log_sigmoid(signs * logits)) / n
    labels = jnp.arange(n)
    metrics = {
        "temperature": jnp.exp(-logit_scale),
        "bias": logit_bias,
        "train_i2t_acc": jnp.mean(jnp.argmax(logits, axis=1) == labels),
        "train_t2i_acc": jnp.mean(jnp.argmax(logits, axis=0) == labels),
    }
    return loss, metrics


def token_cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-position softmax cross-entropy and top-1 correctness (0/1), both fp32 ``[...]``,
    of ``logits`` ``[..., classes]`` against integer ``labels`` ``[...]``."""
    logits = logits.astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return ce, correct


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    """``sum(w * v) / sum(w)`` over every position (0 when every weight is 0). A sum over
    all tokens of the batch, so it is the same whether computed on the batch or on the
    concatenation of its micro-batches' values (exact gradient accumulation)."""
    weights = weights.astype(jnp.float32)
    return jnp.sum(weights * values) / jnp.maximum(jnp.sum(weights), 1e-9)


def weighted_cross_entropy(
    logits: jax.Array, labels: jax.Array, weights: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Softmax cross-entropy averaged over the positions ``weights`` selects, and the
    top-1 accuracy there: ``(sum w * ce / sum w, sum w * [argmax == label] / sum w)``.

    ``logits`` ``[..., classes]``, integer ``labels`` and float ``weights`` ``[...]``
    (e.g. ``[batch, seq]`` masked-LM targets weighted 1 at masked tokens, or ``[pairs]``
    ITM labels weighted 1 on valid pairs). Both are 0 when every weight is 0. fp32.
    """
    ce, correct = token_cross_entropy(logits, labels)
    return weighted_mean(ce, weights), weighted_mean(correct, weights)


LOSSES = ("softmax", "sigmoid")
