"""CoCa's attentional pooler against a NumPy re-implementation of open_clip's
``ln_post(AttentionalPooler(x))``: ``ln_k`` on the image tokens, ``ln_q`` on the learned
queries, ``nn.MultiheadAttention`` (q/k/v in-projections with biases, heads split from
contiguous slices of the width, softmax(q k^T / sqrt(head_dim)) v, out-projection)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.models.decoder import AttentionalPooler


def _layer_norm(x, scale, bias, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def _open_clip_pooler(p, x, heads):
    """open_clip: ``x = ln_k(x); q = ln_q(query); attn(q, x, x)``, then ``ln_post``."""
    width = x.shape[-1]
    hd = width // heads
    x = _layer_norm(x, p["ln_k"]["scale"], p["ln_k"]["bias"])
    q = _layer_norm(p["queries"], p["ln_q"]["scale"], p["ln_q"]["bias"])
    attn = p["attn"]
    w = {n: attn[n]["kernel"].reshape(width, width) for n in ("query", "key", "value")}
    b = {n: attn[n]["bias"].reshape(width) for n in ("query", "key", "value")}
    qp = q @ w["query"] + b["query"]  # [queries, width]
    kp = x @ w["key"] + b["key"]  # [batch, seq, width]
    vp = x @ w["value"] + b["value"]
    out = np.zeros((x.shape[0], q.shape[0], width))
    for h in range(heads):
        s = slice(h * hd, (h + 1) * hd)
        logits = np.einsum("qd,bkd->bqk", qp[:, s], kp[..., s]) / np.sqrt(hd)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        out[..., s] = np.einsum("bqk,bkd->bqd", probs, vp[..., s])
    out = out @ attn["out"]["kernel"].reshape(width, width) + attn["out"]["bias"]
    return _layer_norm(out, p["ln"]["scale"], p["ln"]["bias"])


def test_attentional_pooler_matches_open_clip_formula():
    heads, width = 4, 16
    pooler = AttentionalPooler(num_queries=3, num_heads=heads)
    rng = np.random.default_rng(0)
    # Tokens far from zero mean / unit scale, so that ln_k matters.
    x = 3.0 + 5.0 * rng.standard_normal((2, 7, width))
    shapes = jax.eval_shape(pooler.init, jax.random.PRNGKey(0), jnp.asarray(x, jnp.float32))
    params = jax.tree.map(
        lambda s: rng.standard_normal(s.shape) * (0.5 if len(s.shape) < 2 else 0.3),
        jax.tree.map(
            lambda b: b.value if hasattr(b, "value") else b,
            shapes["params"],
            is_leaf=lambda b: hasattr(b, "value"),
        ),
    )
    assert {"ln_q", "ln_k", "ln", "attn", "queries"} <= set(params)
    params["queries"] = 2.0 + 4.0 * params["queries"]  # and ln_q
    got = pooler.apply(
        {"params": jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)},
        jnp.asarray(x, jnp.float32),
    )
    want = _open_clip_pooler(params, x, heads)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)
