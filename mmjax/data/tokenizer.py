"""Text tokenization: a thin wrapper over a ``tokenizers.Tokenizer``.

The built-in tokenizer is word-level over the synthetic caption grammar and
ships with the package (``assets/synthetic_tokenizer.json``), so the default
run needs no network. Any ``tokenizer.json`` (for example from a Hugging Face
model directory) loads through the same class.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

PAD, UNK, BOS, EOS, MASK = "[PAD]", "[UNK]", "[BOS]", "[EOS]", "[MASK]"
SYNTHETIC_TOKENIZER = "synthetic_tokenizer.json"


def build_synthetic_tokenizer() -> Tokenizer:
    """Word-level tokenizer for the synthetic captions and questions: ``[BOS] words [EOS]``;
    ids 0..3 special, then the caption words, ``[MASK]`` (masked LM) and the question words
    (appended, so caption ids never change)."""
    from mmjax.data.synthetic import caption_words, question_words

    return word_tokenizer([*caption_words(), MASK, *question_words()])


def word_tokenizer(words: list[str]) -> Tokenizer:
    """Word-level ``[BOS] words [EOS]`` tokenizer: ids 0..3 special, then ``words``."""
    vocab = {tok: i for i, tok in enumerate([PAD, UNK, BOS, EOS])}
    for word in words:
        vocab[word] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    return tok


class TextTokenizer:
    """Batch tokenization to fixed-length ``[batch, length]`` int32 ids and bool padding masks.

    Sequences are right-padded with ``pad_id`` and truncated to ``length``;
    truncation keeps the end-of-text token (the post-processor adds it after
    truncating), so EOT pooling always finds it.
    """

    def __init__(
        self, tokenizer: Tokenizer, length: int, eos_token: str = EOS, pad_token: str = PAD
    ):
        self.tokenizer = tokenizer
        self.length = length
        self.pad_id = self._token_id(pad_token)
        self.eos_id = self._token_id(eos_token)
        tokenizer.enable_truncation(max_length=length)
        tokenizer.enable_padding(length=length, pad_id=self.pad_id, pad_token=pad_token)

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise ValueError(f"tokenizer has no {token!r} token")
        return token_id

    @classmethod
    def from_file(cls, path: str | Path, length: int, **kwargs: str) -> TextTokenizer:
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path}")
        return cls(Tokenizer.from_file(str(path)), length, **kwargs)

    @classmethod
    def from_pretrained(cls, directory: str | Path, length: int) -> TextTokenizer:
        """A Hugging Face model directory's ``tokenizer.json``, with the end-of-text and
        padding tokens named by its ``special_tokens_map.json`` / ``tokenizer_config.json``
        (``eos_token``, else BERT's ``sep_token``; ``pad_token``, else the end token)."""
        directory = Path(directory)
        special: dict = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if (directory / name).is_file():
                special.update(json.loads((directory / name).read_text()))

        def token(key: str) -> str | None:
            value = special.get(key)
            return value.get("content") if isinstance(value, dict) else value

        eos = token("eos_token") or token("sep_token") or EOS
        return cls.from_file(directory, length, eos_token=eos, pad_token=token("pad_token") or eos)

    @classmethod
    def synthetic(cls, length: int) -> TextTokenizer:
        """The shipped word-level tokenizer for the built-in data."""
        ref = resources.files("mmjax.data") / "assets" / SYNTHETIC_TOKENIZER
        return cls(Tokenizer.from_str(ref.read_text()), length)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``texts`` -> ``(ids [batch, length] int32, padding_mask [batch, length] bool)``."""
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int32)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=bool)
        return ids, mask

    def decode(self, ids: np.ndarray) -> list[str]:
        """ids ``[batch, length]`` (or one ``[length]`` row) -> one string per row: each row
        is cut at its first end-of-text token, and padding and the special tokens
        (``[BOS]``/``[PAD]``/``[MASK]``, or the tokenizer's own) are dropped."""
        ids = np.asarray(ids)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2:
            raise ValueError(f"decode takes ids [batch, length], got shape {ids.shape}")
        drop = {self.pad_id} | {
            i for t in (BOS, PAD, MASK) if (i := self.tokenizer.token_to_id(t)) is not None
        }
        rows = []
        for row in ids.tolist():
            if self.eos_id in row:
                row = row[: row.index(self.eos_id)]
            rows.append([i for i in row if i not in drop])
        return self.tokenizer.decode_batch(rows, skip_special_tokens=True)


def load_tokenizer(name: str, length: int) -> TextTokenizer:
    """``'synthetic'`` (shipped), a path to a ``tokenizer.json``, or a directory holding one
    (a Hugging Face model directory: its special-token files name the end and pad tokens)."""
    if name == "synthetic":
        return TextTokenizer.synthetic(length)
    if name == "generated":  # the generated video / audio / sentiment sets' words
        from mmjax.data.generated import generated_words

        return TextTokenizer(word_tokenizer([*generated_words(), MASK]), length)
    if Path(name).is_dir():
        return TextTokenizer.from_pretrained(name, length)
    return TextTokenizer.from_file(name, length)


if __name__ == "__main__":  # regenerate the shipped file: python -m mmjax.data.tokenizer
    out = Path(__file__).parent / "assets" / SYNTHETIC_TOKENIZER
    out.write_text(build_synthetic_tokenizer().to_str(pretty=True) + "\n")
    print(f"wrote {out}")
