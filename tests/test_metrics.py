"""Caption metrics against pycocoevalcap's own scorers (after COCO's PTB-style tokenization,
written out by hand here) and VQA accuracy against the official leave-one-out definition."""

from __future__ import annotations

import itertools

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

from mmjax.evaluation.caption_metrics import PTB_PUNCTUATIONS, bleu4, cider, coco_tokenize
from mmjax.evaluation.vqa_metrics import normalize_answer, official_score, vqa_answer_scores

# (raw caption, what COCO's PTBTokenizer -lowerCase + punctuation removal gives), by hand.
TOKENIZED = [
    ("A dog's bone, on the grass.", "a dog 's bone on the grass"),
    ("Two men don't see the (red) bus!", "two men do n't see the red bus"),
    ('The "big" cat... sits; waits: 3.5 hours', "the big cat sits waits 3.5 hours"),
    ("A black-and-white photo -- of 1,000 birds?", "a black-and-white photo of 1,000 birds"),
    ("The players' bags", "the players bags"),
]


def test_coco_tokenize_matches_ptb_rules():
    assert PTB_PUNCTUATIONS == frozenset(PUNCTUATIONS)  # the list COCO removes
    for raw, want in TOKENIZED:
        assert coco_tokenize(raw) == want, raw


# Hand-written caption sets: raw hypotheses and references, as a user's data has them.
SETS = [
    (
        ["A man riding a horse on the beach.", "Two dogs play in the snow."],
        [
            ["A man rides a horse along the beach.", "A person on a horse at the beach."],
            ["Two dogs playing in snow.", "Dogs run in the snow!", "Two puppies in snow."],
        ],
    ),
    (
        ["A red bus.", "A cat sitting on a laptop keyboard", "Kids, playing soccer."],
        [
            ["A red double-decker bus on a street.", "The red bus is parked."],
            ["A cat sits on a laptop's keyboard.", "A cat lying on a keyboard."],
            ["Children playing soccer on a field.", "Kids play football."],
        ],
    ),
    (
        ["There is a small red circle at the top.", "a blue square", "A green cross."],
        [
            ["A small red circle at the top.", "There is a small red circle at the top"],
            ["A large blue square on the left.", "The blue square, on the left."],
            ["A green cross in the center.", "A small green cross."],
        ],
    ),
]


@pytest.mark.parametrize("index", range(len(SETS)))
def test_bleu4_and_cider_match_pycocoevalcap(index):
    hyps, refs = SETS[index]
    gts = {i: [coco_tokenize(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [coco_tokenize(h)] for i, h in enumerate(hyps)}
    assert all("." not in h and h == h.lower() for [h] in res.values())
    want_bleu = Bleu(4).compute_score(gts, res, verbose=0)[0][3]
    want_cider = Cider().compute_score(gts, res)[0]
    assert bleu4(hyps, refs) == pytest.approx(want_bleu, rel=1e-9, abs=1e-12)
    assert cider(hyps, refs) == pytest.approx(want_cider, rel=1e-9)
    assert want_cider > 0


def test_punctuation_and_case_do_not_change_the_scores():
    hyps, refs = SETS[2]
    plain = [h.rstrip(".").lower() for h in hyps]
    assert cider(hyps, refs) == pytest.approx(cider(plain, refs), rel=1e-12)
    assert bleu4(hyps, refs) == pytest.approx(bleu4(plain, refs), rel=1e-12)


def _official_accuracy(predicted: str, answers: list[str]) -> float:
    """vqaEval.py's loop: for each annotator, the other nine; min(matches / 3, 1); mean."""
    accs = []
    for i in range(len(answers)):
        others = answers[:i] + answers[i + 1 :]
        accs.append(min(1.0, sum(a == predicted for a in others) / 3))
    return sum(accs) / len(accs)


def test_official_vqa_score_is_the_leave_one_out_mean():
    # Hand-computed: c = 2 of 10 -> (8 subsets with 2 matches: 2/3; 2 with 1: 1/3) / 10.
    assert official_score(2) == pytest.approx((8 * 2 / 3 + 2 * 1 / 3) / 10)
    for count in range(11):
        answers = ["yes"] * count + ["no"] * (10 - count)
        assert official_score(count) == pytest.approx(_official_accuracy("yes", answers))
    assert [round(official_score(c), 6) for c in range(5)] == [0.0, 0.3, 0.6, 0.9, 1.0]
    vocab = {"2": 0, "dog": 1, "yes": 2}
    answers = ["2", "two", "Two.", "2", "dog", "a dog", "the dog", "dog", "yes", "maybe"]
    got = vqa_answer_scores(answers, vocab)
    normalized = [normalize_answer(a) for a in answers]
    for answer, index in vocab.items():
        assert got[index] == pytest.approx(_official_accuracy(answer, normalized), rel=1e-6)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("Two dogs.", "2 dogs"),  # number word, final period
        ("The cat", "cat"),  # article
        ("an apple and a pear", "apple and pear"),
        ("dont", "don't"),  # contraction restored
        ("don't", "don t"),  # official: a mark with no space beside it becomes a space
        ("yes!", "yes!"),  # '!' is not in the official punctuation list
        ("3.5", "3.5"),  # a decimal point stays
        ("1,000", "1000"),  # digit-comma-digit: punctuation deleted
        ("black/white", "black white"),  # no space next to it: becomes a space
        ("left , right", "left right"),  # next to a space: deleted
        ("  At\tthe TOP\n", "at top"),
    ],
)
def test_vqa_answer_normalization_follows_the_official_rules(raw, want):
    assert normalize_answer(raw) == want


def test_fallback_without_ten_answers_is_min_count_over_three():
    """``min(c / 3, 1)`` from 3 answers on; below that an answer all annotators gave is 1
    (a single answer is exact match: a video QA record's one direction)."""
    vocab = {"red": 0, "blue": 1}
    for n in (1, 2, 3, 5):
        for combo in itertools.combinations_with_replacement(["red", "blue"], n):
            got = vqa_answer_scores(list(combo), vocab)
            assert got[0] == pytest.approx(min(combo.count("red") / min(n, 3), 1.0))
    assert vqa_answer_scores(["red"], vocab).tolist() == [1.0, 0.0]
    assert vqa_answer_scores(["red", "blue"], vocab).tolist() == [0.5, 0.5]
