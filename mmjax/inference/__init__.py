"""Using a trained model: ``load(path) -> Pipeline`` (embeddings, zero-shot, retrieval) or,
for a ``text_to_image`` run, ``-> ImageGenerator`` (``generate(texts)``)."""

from mmjax.inference.generation import GeneratedImages, ImageGenerator
from mmjax.inference.load import load
from mmjax.inference.pipeline import Pipeline

__all__ = ["GeneratedImages", "ImageGenerator", "Pipeline", "load"]
