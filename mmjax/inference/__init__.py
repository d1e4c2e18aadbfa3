"""Using a trained model: ``load(path) -> Pipeline`` (embeddings, zero-shot, retrieval)."""

from mmjax.inference.load import load
from mmjax.inference.pipeline import Pipeline

__all__ = ["Pipeline", "load"]
