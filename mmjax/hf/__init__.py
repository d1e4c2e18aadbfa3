"""Hugging Face interop: ``load`` / ``save`` CLIP, SigLIP, ViT, BERT and ResNet checkpoints.

module, variables = mmjax.hf.load("path/to/clip")       # or a cached hub id
emb = module.apply(variables, pixel_values, method="encode_image")
mmjax.hf.save("out/", module, variables)                 # transformers loads it
"""

from mmjax.hf.api import load, read_config, save
from mmjax.hf.config_map import model_config
from mmjax.hf.keymap import HFLoadError

__all__ = ["HFLoadError", "load", "model_config", "read_config", "save"]
