"""BertModel / BertForMaskedLM <-> ``HFBert`` (``text/``, ``mlm/``)."""

from __future__ import annotations

from mmjax.hf.keymap import KeyTable, Rule
from mmjax.hf.tables.common import BERT_LAYER, encoder_layers, linear, norm, params

E = "embeddings"


def bert_table() -> KeyTable:
    """Base keys carry ``bert.`` in head checkpoints. The MLM decoder is tied to the word
    embeddings: its weight is never read, its bias is ``cls.predictions.bias`` (or the
    tied copy ``cls.predictions.decoder.bias``)."""
    mlm = "cls.predictions"
    rules = [
        Rule(f"{E}.word_embeddings.weight", params("text/word_embed/embedding")),
        Rule(f"{E}.position_embeddings.weight", params("text/pos_embed")),
        Rule(f"{E}.token_type_embeddings.weight", params("text/type_embed/embedding")),
        *norm(f"{E}.LayerNorm", "text/ln_embed"),
        *encoder_layers("encoder.layer", "text/encoder", BERT_LAYER),
        *linear("pooler.dense", "text/pooler"),
        *linear(f"{mlm}.transform.dense", "mlm/transform", base=False),
        *norm(f"{mlm}.transform.LayerNorm", "mlm/ln", base=False),
        Rule(f"{mlm}.bias", params("mlm/bias"), base=False),
        Rule(f"{mlm}.decoder.bias", params("mlm/bias"), base=False, read_only=True),
    ]
    ignore = (r".*position_ids", rf"{mlm}\.decoder\.weight")
    return KeyTable("BERT", rules, prefix="bert", ignore=ignore)
