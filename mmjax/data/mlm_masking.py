"""BERT-style masking for masked language modelling, on device.

``mask_tokens`` runs inside the jitted loss with a key split from the step's RNG, so
the masks of a resumed run are the same as those of an uninterrupted one, and the
host pipeline stays task-independent (the same batches feed ITC, ITM and MLM).

Selection is Bernoulli: each eligible token (a real, non-special token) is selected
independently with probability ``ratio`` (as BERT's and Hugging Face's
``DataCollatorForLanguageModeling`` and ALBEF do), so the expected fraction is exactly
``ratio`` and a short caption may have no selected token (it then adds nothing to the
loss). Of the selected tokens 80% become ``mask_id``, 10% a random token drawn
uniformly from the non-special vocabulary, and 10% stay unchanged; the loss is taken
at every selected position.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Fractions of the selected tokens replaced by [MASK] / a random token; the rest stay.
MASK_FRACTION = 0.8
RANDOM_FRACTION = 0.1


def replacement_ids(vocab_size: int, special_ids: Iterable[int]) -> np.ndarray:
    """Ids a selected token may be replaced with at random: ``[0, vocab_size)`` without
    ``special_ids``; an error when nothing is left."""
    special = {int(i) for i in special_ids}
    ids = np.asarray([i for i in range(vocab_size) if i not in special], np.int32)
    if ids.size == 0:
        raise ValueError(f"every id of the vocabulary ({vocab_size}) is special")
    return ids


def mask_tokens(
    rng: jax.Array,
    tokens: jax.Array,
    padding_mask: jax.Array,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int],
    ratio: float = 0.15,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Masks ``tokens`` for MLM.

    Args:
      rng: PRNG key.
      tokens: int32 ``[batch, seq]``.
      padding_mask: bool ``[batch, seq]``, True on real tokens.
      mask_id: the ``[MASK]`` id (never selected itself, never a random replacement).
      vocab_size: the tokenizer's vocabulary size; random replacements are drawn
        uniformly from ``[0, vocab_size)`` without ``special_ids`` and ``mask_id``.
      special_ids: ids never selected (padding, BOS/CLS, EOS/SEP, UNK, ...).
      ratio: probability that an eligible token is selected.

    Returns:
      ``(masked_tokens [batch, seq] int32, targets [batch, seq] int32,
      weights [batch, seq] float32)``: the model input, the original id at every selected
      position (0 elsewhere), and 1.0 at the selected positions (0 elsewhere).
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"masking ratio must be in (0, 1), got {ratio}")
    special = np.asarray(sorted({int(i) for i in special_ids} | {int(mask_id)}), np.int32)
    pool = jnp.asarray(replacement_ids(vocab_size, special))
    tokens = tokens.astype(jnp.int32)
    eligible = padding_mask.astype(bool) & ~jnp.isin(tokens, jnp.asarray(special))
    k_select, k_kind, k_random = jax.random.split(rng, 3)
    selected = eligible & jax.random.bernoulli(k_select, ratio, tokens.shape)
    u = jax.random.uniform(k_kind, tokens.shape)
    random_tokens = jax.random.choice(k_random, pool, tokens.shape)
    replaced = jnp.where(u < MASK_FRACTION, jnp.int32(mask_id), tokens)
    replaced = jnp.where(
        (u >= MASK_FRACTION) & (u < MASK_FRACTION + RANDOM_FRACTION), random_tokens, replaced
    )
    masked = jnp.where(selected, replaced, tokens)
    targets = jnp.where(selected, tokens, 0)
    return masked, targets, selected.astype(jnp.float32)


def masking_ids(tokenizer: Any, mask_token: str, special_tokens: Iterable[str]) -> dict[str, Any]:
    """``{'mask_id', 'special_ids', 'vocab_size'}`` for ``mask_tokens`` from a ``TextTokenizer``.

    ``mask_token`` (``config.task.mask_token``) must be in the vocabulary. Special ids are
    the tokenizer's padding and end tokens, every added token it flags special (a Hugging
    Face ``tokenizer.json``'s ``[CLS]``/``[SEP]``/...), every token the post-processor adds
    around a text (BOS/CLS, EOS/SEP: the encoding's ``special_tokens_mask``), and those of
    ``special_tokens``
    (``config.task.special_tokens``; each must be in the vocabulary).
    """
    tok = tokenizer.tokenizer
    mask_id = tok.token_to_id(mask_token)
    if mask_id is None:
        raise ValueError(
            f"config.task.mask_token: the tokenizer has no {mask_token!r} token; "
            "masked LM needs one (set config.task.mask_token to its mask token)"
        )
    special = {tokenizer.pad_id, tokenizer.eos_id, mask_id}
    special |= {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    # Whatever the post-processor inserts (BOS/CLS, EOS/SEP), as the tokenizer flags it.
    for encoding in tok.encode_batch(["a", "a b"]):
        special |= {i for i, s in zip(encoding.ids, encoding.special_tokens_mask, strict=True) if s}
    for token in special_tokens:
        token_id = tok.token_to_id(token)
        if token_id is None:
            raise ValueError(f"config.task.special_tokens: the tokenizer has no {token!r} token")
        special.add(token_id)
    return {
        "mask_id": int(mask_id),
        "special_ids": tuple(sorted(int(i) for i in special)),
        "vocab_size": int(tokenizer.vocab_size),
    }
