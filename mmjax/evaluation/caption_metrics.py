"""Caption metrics as COCO computes them: PTB-style tokenization, then BLEU-4 and CIDEr-D.

COCO's evaluation (``pycocoevalcap``) first runs Stanford's PTBTokenizer (Java) with
``-lowerCase`` and drops the punctuation tokens in its ``PUNCTUATIONS`` list, then scores
the space-separated tokens. ``coco_tokenize`` does that in Python (no Java): lowercase,
split off the clitics (``'s``, ``n't``, ...) and punctuation as PTB does, drop the same
punctuation tokens. ``bleu4`` is pycocoevalcap's ``Bleu`` (corpus BLEU-4: n-gram counts
clipped by the most frequent occurrence in any one reference, the brevity penalty from the
closest reference length, no smoothing), ``cider`` calls pycocoevalcap's ``Cider``, both
on tokenized captions, so the figures are comparable with published COCO numbers.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections import Counter

# pycocoevalcap's tokenizer/ptbtokenizer.py PUNCTUATIONS: the tokens COCO removes (the
# -LRB- forms are how PTB writes brackets).
PTB_PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-"]
    + [".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
_CLITICS = re.compile(r"(?<=\w)(n't|'s|'re|'ve|'ll|'d|'m)\b")
# Punctuation PTB splits off: . and , except inside numbers (3.5, 1,000), runs of hyphens,
# quotes, brackets and ?!:; (hyphens inside words, "black-and-white", stay).
_SPLIT = re.compile(r"""(\.{2,}|(?<!\d)[.,]|[.,](?!\d)|-{2,}|[?!:;"`()\[\]{}])""")
_QUOTE = re.compile(r"(?<!\w)'|'(?!\w)")  # a quote mark, not an apostrophe inside a word
# PTB writes these as -LRB- ... and ``/'' (in PTB_PUNCTUATIONS): COCO drops them.
_ESCAPED = frozenset('()[]{}"')


def coco_tokenize(caption: str) -> str:
    """``caption`` as COCO's PTBTokenizer + punctuation removal gives it: lowercased tokens
    joined by single spaces, e.g. ``"A dog's bone, on the grass."`` -> ``"a dog 's bone on
    the grass"``. Not ported from PTB: abbreviations with periods (``"st."`` loses its
    period here) and currency splitting; captions rarely have them."""
    text = _QUOTE.sub(" ' ", _SPLIT.sub(r" \1 ", caption.lower().replace("\n", " ")))
    text = _CLITICS.sub(r" \1", text)  # after the quotes: the ' of 's is no quote
    return " ".join(t for t in text.split() if t not in PTB_PUNCTUATIONS and t not in _ESCAPED)


def _check_captions(hypotheses: list[str], references: list[list[str]]) -> list[list[str]]:
    """Non-empty reference lists, one per hypothesis (else a ``ValueError`` naming the row)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    refs = [[r for r in rs if r] for rs in references]
    for i, rs in enumerate(refs):
        if not rs:
            raise ValueError(f"caption {i} has no (non-empty) reference")
    return refs


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def bleu4(hypotheses: list[str], references: list[list[str]]) -> float:
    """COCO's corpus BLEU-4 in [0, 1] (pycocoevalcap's ``Bleu(4)``, ``option='closest'``) of
    ``coco_tokenize``d captions. ``references[i]`` holds any number (>= 1) of references for
    ``hypotheses[i]``: n-gram matches are clipped by the most frequent occurrence in any
    one reference, and the corpus brevity penalty sums, per caption, the reference length
    closest to the hypothesis's (the shorter on a tie). No smoothing (pycocoevalcap adds
    1e-15 / 1e-9 against division by zero, as here)."""
    refs = _check_captions(hypotheses, references)
    correct, guess = [0] * 4, [0] * 4
    test_len = ref_len = 0
    for hyp, rs in zip(hypotheses, refs, strict=True):
        words = coco_tokenize(hyp).split()
        ref_words = [coco_tokenize(r).split() for r in rs]
        test_len += len(words)
        ref_len += min((abs(len(r) - len(words)), len(r)) for r in ref_words)[1]
        for n in range(1, 5):
            counts = _ngrams(words, n)
            most: Counter = Counter()
            for r in ref_words:
                most |= _ngrams(r, n)  # element-wise max over references
            correct[n - 1] += sum(min(c, most[g]) for g, c in counts.items())
            guess[n - 1] += max(0, len(words) - n + 1)
    tiny, small = 1e-15, 1e-9
    log_p = sum(math.log((c + tiny) / (g + small)) for c, g in zip(correct, guess, strict=True))
    ratio = (test_len + tiny) / (ref_len + small)
    brevity = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    return float(brevity * math.exp(log_p / 4))


def cider_available() -> bool:
    """Whether ``pycocoevalcap`` (CIDEr) is installed: the ``[eval]`` extra, a 100 MB wheel
    that also ships COCO's Java tools, so the core install leaves it out."""
    return importlib.util.find_spec("pycocoevalcap") is not None


def cider(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus CIDEr-D (``pycocoevalcap``'s ``Cider``: tf-idf n-gram cosine with clipping and
    a length penalty, x10; COCO results are usually quoted x100) of ``coco_tokenize``d
    captions. The document frequencies come from these references, so it needs more than
    one image to be meaningful (with one every idf is 0)."""
    from pycocoevalcap.cider.cider import Cider  # optional: pip install 'mmjax[eval]'

    refs = _check_captions(hypotheses, references)
    gts = {i: [coco_tokenize(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [coco_tokenize(h)] for i, h in enumerate(hypotheses)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)
