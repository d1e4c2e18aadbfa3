"""mmjax: a JAX/Flax training stack for multimodal models."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``mmjax.load`` / ``mmjax.Pipeline`` / ``mmjax.ImageGenerator`` import jax and the
    # models on first use, so that ``import mmjax`` stays light.
    if name in ("load", "Pipeline", "ImageGenerator"):
        from mmjax import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'mmjax' has no attribute {name!r}")
