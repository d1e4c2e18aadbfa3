"""VQA accuracy as the official VQA evaluation computes it (``vqaEval.py`` of
GT-Vision-Lab/VQA), with its answer normalization.

Official accuracy of a predicted answer ``a`` on a question with 10 annotator answers: the
mean, over the 10 subsets that leave one annotator out, of ``min(#matches in the subset /
3, 1)``. It depends only on ``c``, the number of annotators who gave ``a``:
``((10 - c) * min(c / 3, 1) + c * min((c - 1) / 3, 1)) / 10``, i.e. 0, 0.3, 0.6, 0.9, 1
for c = 0, 1, 2, 3, >= 4. With another number ``n`` of answers the score falls back to
``min(c / min(n, 3), 1)``: the common approximation ``min(c / 3, 1)`` from 3 answers on,
and an answer every annotator gave scores 1 below that (exact match for a single answer,
as a dataset with one answer per question means it; ``c / 3`` would score it 1/3).
"""

from __future__ import annotations

import re

import numpy as np

# vqaEval.py's processPunctuation characters ('!' and '.' are not among them; '.' has its
# own rule) and its number words and articles (processDigitArticle).
_PUNCT = (";", ":", "/", "'", "[", "]", '"', "(", ")", "=", "+", "\\", "_", ">", "<", "@", "`")
_PUNCT += (",", "?")
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
# vqaEval.py's pattern as written: its "(?!<=\d)" is a lookahead, so this removes every '.'
# not followed by a digit (3.5 keeps its point).
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_NUMBERS = dict(
    none="0", zero="0", one="1", two="2", three="3", four="4", five="5", six="6", seven="7"
)
_NUMBERS.update(eight="8", nine="9", ten="10")
_ARTICLES = frozenset({"a", "an", "the"})
# vqaEval.py's contractions: an answer word written without its apostrophe (as punctuation
# removal leaves it) becomes the contracted form; the table's single-apostrophe entries.
_CONTRACTED = """ain't aren't can't could've couldn't didn't doesn't don't hadn't hasn't haven't
he'd he's how'd how'll how's isn't it'd it'll ma'am mightn't might've mustn't must've needn't
not've o'clock oughtn't shan't should've shouldn't somebody'll somebody's someone'd
someone'll someone's something'd something'll that's there'd there're there's they'd they'll
they're they've 'twas wasn't we've weren't what'll what're what's what've when's where'd
where's where've who'd who'll who's who've why'll why're why's won't would've wouldn't y'all
you'd you'll you're you've""".split()
_CONTRACTIONS = {word.replace("'", ""): word for word in _CONTRACTED}


def normalize_answer(answer: str) -> str:
    """A VQA answer as the official evaluation compares it: newlines and tabs to spaces,
    punctuation removed (next to a space, or anywhere when the answer has a digit-comma-
    digit, the mark is deleted; otherwise it becomes a space), periods not followed by a
    digit deleted, lowercased, number words to digits, articles dropped, contractions
    restored (``dont`` -> ``don't``), whitespace collapsed: ``"Two dogs."`` -> ``"2 dogs"``.
    (The official script applies the digit/article step to predictions only, relying on
    VQA's annotations being stored normalized; mmjax normalizes both sides the same way.)"""
    text = str(answer).replace("\n", " ").replace("\t", " ").strip()
    out = text
    delete = _COMMA_IN_NUMBER.search(text) is not None
    for p in _PUNCT:
        if delete or p + " " in text or " " + p in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD.sub("", out)
    words = [_NUMBERS.get(w, w) for w in out.lower().split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words)


def official_score(count: int) -> float:
    """Official accuracy of an answer ``count`` of 10 annotators gave (leave-one-out mean)."""
    return ((10 - count) * min(count / 3, 1.0) + count * min((count - 1) / 3, 1.0)) / 10


def vqa_answer_scores(answers: list[str], vocab: dict[str, int]) -> np.ndarray:
    """Per-answer VQA scores float32 ``[len(vocab)]`` from the annotators' ``answers``
    (normalized with ``normalize_answer``; ``vocab`` maps normalized answers to indices):
    the official accuracy of predicting each answer when there are 10 annotator answers
    (``official_score`` of its count), else ``min(count / min(len(answers), 3), 1)``
    (exact match for one answer). Answers outside
    ``vocab`` cannot be predicted and are dropped (they still count as annotators)."""
    counts = np.zeros(len(vocab), np.int64)
    for answer in answers:
        index = vocab.get(normalize_answer(answer))
        if index is not None:
            counts[index] += 1
    if len(answers) == 10:
        return np.asarray([official_score(int(c)) for c in counts], np.float32)
    return np.minimum(counts / min(len(answers), 3), 1.0).astype(np.float32)


def vqa_accuracy(predicted: np.ndarray, answer_scores: np.ndarray) -> float:
    """VQA accuracy: mean over questions of ``answer_scores[i, predicted[i]]``
    (``predicted`` ``[n]`` answer indices, ``answer_scores`` ``[n, answers]`` from
    ``vqa_answer_scores``): the official accuracy for 10-annotator questions, the
    ``min(c / min(n, 3), 1)`` fallback otherwise, exact-match for one certain answer (one-hot
    scores, as for the synthetic set)."""
    scores = np.asarray(answer_scores, np.float64)
    predicted = np.asarray(predicted)
    return float(np.mean(scores[np.arange(len(predicted)), predicted]))
