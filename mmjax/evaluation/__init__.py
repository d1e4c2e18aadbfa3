"""Evaluation: ``evaluators`` (several eval sets per run), ``evaluate`` / ``retrieval``
(embedding metrics, chunked recall@K), ``caption_metrics`` (BLEU-4, CIDEr-D as COCO
computes them) and ``vqa_metrics`` (VQA accuracy)."""
