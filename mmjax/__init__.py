"""mmjax: a JAX/Flax training stack for multimodal models."""

__version__ = "0.1.0"
