"""A training run -> a complete Hugging Face directory (``mmjax export --to-hf``).

Writes what ``transformers.AutoModel``, ``AutoProcessor`` and
``pipeline('zero-shot-image-classification', model=DIR)`` need: ``config.json`` +
``model.safetensors`` (``api.save``), the run's tokenizer (``tokenizer.json``,
``tokenizer_config.json``, ``special_tokens_map.json``) and ``preprocessor_config.json``
(a ``CLIPImageProcessor``: shorter side resized to the model's size, centre crop, PIL
bicubic, the run's mean/std; the run's own ``data.image_processor`` file when it has one).
Anything transformers would compute differently is an error naming it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from mmjax.data.tokenizer import BOS, PAD, UNK, TextTokenizer, load_tokenizer
from mmjax.hf import api
from mmjax.hf.config_map import ConfigMapError
from mmjax.inference.load import eval_preprocessing
from mmjax.inference.run_loading import load_run
from mmjax.models.towers import build_two_tower

LEGACY_CLIP_EOS = 2  # transformers' CLIP pools at the largest id when eos_token_id == 2


def _text_eos(model: Any, tokenizer: TextTokenizer) -> int:
    """The ``eos_token_id`` at which transformers' CLIP text model must pool to match mmjax.

    mmjax pools at the first ``eos_id`` token, else at the last real token; transformers
    at the first ``eos_token_id`` token, else at position 0. They agree when the model's
    ``eos_id`` is the tokenizer's end token, and also when the tokenizer can never emit the
    model's ``eos_id`` (then mmjax pools at the last real token, which is the end token the
    tokenizer appends to every text: export that id).
    """
    t = model.text
    if t.eos_id == tokenizer.eos_id:
        eos = t.eos_id
    elif t.eos_id >= tokenizer.vocab_size:
        ids, mask = tokenizer(["a"])
        if ids[0, int(mask[0].sum()) - 1] != tokenizer.eos_id:
            raise ConfigMapError(
                "text tower pools at the last real token, but the tokenizer does not end "
                "texts with its end token; transformers' CLIP cannot pool there"
            )
        eos = tokenizer.eos_id
    else:
        raise ConfigMapError(
            f"text tower pools at token id {t.eos_id} (config.model.text.eos_id) but the "
            f"tokenizer's end token is id {tokenizer.eos_id}; transformers' CLIP pools at the "
            "first eos_token_id and would differ for texts without it"
        )
    if eos == LEGACY_CLIP_EOS:
        raise ConfigMapError(
            "end-of-text id 2: transformers' CLIP reads eos_token_id=2 as the legacy rule "
            "(pool at the largest id), which differs from mmjax's pooling"
        )
    return eos


def write_tokenizer(tokenizer: TextTokenizer, out: Path, siglip: bool) -> None:
    """``tokenizer.json`` (no padding/truncation baked in: transformers sets them per call),
    ``tokenizer_config.json`` (a ``PreTrainedTokenizerFast``; SigLIP takes only
    ``input_ids``, as ``SiglipTokenizer`` does) and ``special_tokens_map.json``."""
    base = Tokenizer.from_str(tokenizer.tokenizer.to_str())
    base.no_padding()
    base.no_truncation()
    base.save(str(out / "tokenizer.json"))
    id_to_token = base.id_to_token
    special = {
        "eos_token": id_to_token(tokenizer.eos_id),
        "pad_token": id_to_token(tokenizer.pad_id),
    }
    for key, token in (("bos_token", BOS), ("unk_token", UNK)):
        if base.token_to_id(token) is not None:
            special[key] = token
    if special["pad_token"] is None:
        special["pad_token"] = PAD
    names = ["input_ids"] if siglip else ["input_ids", "attention_mask"]
    cfg = dict(
        special,
        tokenizer_class="PreTrainedTokenizerFast",
        model_input_names=names,
        model_max_length=tokenizer.length,
        padding_side="right",
        truncation_side="right",
        clean_up_tokenization_spaces=False,
    )
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def preprocessor_config(config: Any) -> dict[str, Any]:
    """A ``CLIPImageProcessor`` config for the run's eval preprocessing."""
    p = eval_preprocessing(config)
    size = p["image_size"]
    return {
        "image_processor_type": "CLIPImageProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"shortest_edge": size},
        "resample": 3,  # PIL bicubic
        "do_center_crop": True,
        "crop_size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": p["rescale_factor"],
        "do_normalize": True,
        "image_mean": p["image_mean"],
        "image_std": p["image_std"],
    }


def export_run(path: str | Path, out: str | Path) -> Path:
    """Writes the complete HF directory for the two-tower run (or step directory) ``path``."""
    run = load_run(path)
    config = run.config
    if config.task.name != "contrastive":
        raise ConfigMapError(
            f"export --to-hf: task {config.task.name!r} has no transformers class here "
            "(two-tower 'contrastive' runs export as CLIPModel / SiglipModel)"
        )
    model = build_two_tower(config.model)
    siglip = model.logit_bias_init is not None
    if siglip != (config.task.loss == "sigmoid"):
        raise ConfigMapError(
            f"task.loss={config.task.loss!r} with logit_bias_init={model.logit_bias_init}: "
            "transformers' CLIPModel is softmax without a bias, SiglipModel sigmoid with one"
        )
    tokenizer = load_tokenizer(config.data.tokenizer, config.model.text.context_length)
    eos = None if siglip else _text_eos(model, tokenizer)
    out = Path(out)
    api.save(out, model, {"params": run.params})
    cfg = json.loads((out / "config.json").read_text())
    text_cfg = cfg["text_config"]
    text_cfg.update(pad_token_id=tokenizer.pad_id)
    if eos is not None:
        text_cfg["eos_token_id"] = eos
    bos = tokenizer.tokenizer.token_to_id(BOS)
    if bos is not None:
        text_cfg["bos_token_id"] = bos
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    write_tokenizer(tokenizer, out, siglip)
    own = config.data.get("image_processor") or ""
    if own:
        shutil.copy(Path(own) / "preprocessor_config.json", out / "preprocessor_config.json")
    else:
        (out / "preprocessor_config.json").write_text(
            json.dumps(preprocessor_config(config), indent=2) + "\n"
        )
    return out
