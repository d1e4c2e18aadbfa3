"""ResNetModel / ResNetForImageClassification <-> ``HFResNet`` (``image/``, ``head/``)."""

from __future__ import annotations

from mmjax.hf.keymap import KeyTable, Rule
from mmjax.hf.tables.common import linear, params
from mmjax.hf.transforms import CONV


def conv_bn(hf: str, mm: str) -> list[Rule]:
    """``ResNetConvLayer`` (conv without bias + BatchNorm) <-> ``models/resnet.ConvBN``."""
    return [
        Rule(f"{hf}.convolution.weight", params(f"{mm}/conv/kernel"), CONV),
        Rule(f"{hf}.normalization.weight", params(f"{mm}/bn/scale")),
        Rule(f"{hf}.normalization.bias", params(f"{mm}/bn/bias")),
        Rule(f"{hf}.normalization.running_mean", f"batch_stats/{mm}/bn/mean"),
        Rule(f"{hf}.normalization.running_var", f"batch_stats/{mm}/bn/var"),
    ]


def resnet_table() -> KeyTable:
    block_hf, block_mm = "encoder.stages.{s}.layers.{b}", "image/stage_{s}_block_{b}"
    rules = [
        *conv_bn("embedder.embedder", "image/stem"),
        *conv_bn(f"{block_hf}.shortcut", f"{block_mm}/shortcut"),
        *conv_bn(f"{block_hf}.layer.{{c}}", f"{block_mm}/conv_{{c}}"),
        *linear("classifier.1", "head/dense", base=False),
    ]
    return KeyTable("ResNet", rules, prefix="resnet", ignore=(r".*num_batches_tracked",))
